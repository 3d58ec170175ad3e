"""AdmissionReviews of pods, as the API server sends them, for the tests and benchmarks."""

from __future__ import annotations

from typing import Any

UID = "705ab4f5-6393-11e8-b7cc-42010a800002"


def pod_review(pod: Any, version: str = "v1", **request: Any) -> dict[str, Any]:
    """A review of a pod CREATE in namespace hub; `request` overrides or adds request fields."""
    req = {
        "uid": UID,
        "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"},
        "namespace": "hub",
        "operation": "CREATE",
        "object": pod,
        "dryRun": False,
        **request,
    }
    return {"apiVersion": f"admission.k8s.io/{version}", "kind": "AdmissionReview", "request": req}


def error_message(answer: Any, code: int) -> str:
    """The message of an HTTP error body, which must be a Kubernetes Status with that code: the
    only error body whose message the API server passes on to the user."""
    assert answer["kind"] == "Status" and answer["apiVersion"] == "v1", answer
    assert (answer["status"], answer["code"]) == ("Failure", code), answer
    assert isinstance(answer["message"], str) and answer["message"], answer
    return answer["message"]
