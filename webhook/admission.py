"""The AdmissionReview wire protocol (admission.k8s.io v1, and v1beta1 answered in kind)."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from webhook import PLURAL
from webhook.patch import Op
from webhook.podshape import ShapeError, check

API_VERSIONS = ("admission.k8s.io/v1", "admission.k8s.io/v1beta1")
# Kubernetes' StatusReason for the HTTP errors this server may answer with.
_REASONS = {
    400: "BadRequest",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    413: "RequestEntityTooLarge",
    500: "InternalError",
    503: "ServiceUnavailable",
}


class BadReview(ValueError):
    """The body is not an AdmissionReview we can answer; the message says why (HTTP 400)."""


@dataclass(frozen=True)
class Request:
    api_version: str
    uid: str
    operation: str
    namespace: str
    resource: str  # "pods", or whatever else was sent
    sub_resource: str
    obj: Any
    dry_run: bool

    @property
    def is_setting_write(self) -> bool:
        return (
            self.operation in ("CREATE", "UPDATE")
            and self.resource == PLURAL
            and not self.sub_resource
        )

    @property
    def is_pod_create(self) -> bool:
        """A pod CREATE, whose object `parse_review` checked has the shape the rules read."""
        return self.operation == "CREATE" and self.resource == "pods" and not self.sub_resource


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def parse_review(body: bytes) -> Request:
    try:
        review = json.loads(body, parse_constant=_no_constant)
    except ValueError as e:  # also: not UTF-8, and integers past Python's digit limit
        raise BadReview(f"body is not JSON: {e}") from None
    except RecursionError:
        raise BadReview("body is nested too deeply") from None
    if not isinstance(review, dict):
        raise BadReview("body is not a JSON object")
    api_version = review.get("apiVersion")
    if api_version not in API_VERSIONS or review.get("kind") != "AdmissionReview":
        raise BadReview(
            f"expected kind AdmissionReview, apiVersion one of {', '.join(API_VERSIONS)}"
        )
    request = review.get("request")
    if not isinstance(request, dict):
        raise BadReview("missing request")
    uid = request.get("uid")
    if not isinstance(uid, str) or not uid:
        raise BadReview("missing request.uid")
    resource = request.get("resource")
    resource = resource if isinstance(resource, dict) else {}
    kind = request.get("kind")
    kind = kind if isinstance(kind, dict) else {}
    # Pods are recognised by resource, or by kind when a caller leaves resource out.
    name = resource.get("resource") or ("pods" if kind.get("kind") == "Pod" else "")
    req = Request(
        api_version=api_version,
        uid=uid,
        operation=str(request.get("operation", "")),
        namespace=str(request.get("namespace") or ""),
        resource=str(name),
        sub_resource=str(request.get("subResource") or ""),
        obj=request.get("object"),
        dry_run=bool(request.get("dryRun")),
    )
    if req.is_pod_create:
        try:
            check(req.obj, path="request.object")
        except ShapeError as e:
            raise BadReview(str(e)) from None
    return req


def response(
    req: Request,
    *,
    allowed: bool = True,
    patch: list[Op] | None = None,
    warnings: list[str] | None = None,
    message: str = "",
) -> dict[str, Any]:
    answer: dict[str, Any] = {"uid": req.uid, "allowed": allowed}
    if patch:
        answer["patchType"] = "JSONPatch"
        answer["patch"] = base64.b64encode(json.dumps(patch, allow_nan=False).encode()).decode()
    if warnings:
        answer["warnings"] = warnings
    if not allowed:
        answer["status"] = {"code": 403, "reason": "Forbidden", "message": message}
    return {"apiVersion": req.api_version, "kind": "AdmissionReview", "response": answer}


def failure(code: int, message: str) -> dict[str, Any]:
    """The body of an HTTP error: a Kubernetes Status, because that is the only body whose message
    the API server passes on when a webhook call fails (to the user, its logs, and the events of
    the pod's controller); of any other body it says only "the server is currently unable to
    handle the request" or "rejected our request for an unknown reason"."""
    status: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "code": code,
    }
    if code in _REASONS:
        status["reason"] = _REASONS[code]
    return status
