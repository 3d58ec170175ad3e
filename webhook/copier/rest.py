"""The registry calls copy-artifacts makes, over MLflow's REST API as MlflowClient makes them,
without importing MLflow: importing it takes about a second and 80 MB before the first byte, and
a version is found with two GETs. The same credentials, TLS variables, workspace and Kubernetes
identity as MLflow's client (mlflow/utils/rest_utils.py; identity.py), through `requests` as there
(so proxies, REQUESTS_CA_BUNDLE and credentials in the URL behave alike). What this does not speak
(Databricks, an auth plugin other than MLflow's Kubernetes ones) stays with MLflow's own client
(resolve.py)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from webhook.copier import identity
from webhook.settings import rules

if TYPE_CHECKING:
    from requests import Response

API = "/api/2.0/mlflow"


class RestError(Exception):
    """The MLflow server's own answer to a call that failed: its error code and message."""

    def __init__(self, status: int, error_code: str, message: str) -> None:
        super().__init__(f"{error_code}: {message}" if error_code else f"HTTP {status}")
        self.status, self.error_code = status, error_code


def registry_uri() -> str:
    return os.environ.get("MLFLOW_REGISTRY_URI") or os.environ.get("MLFLOW_TRACKING_URI", "")


def speaks(uri: str) -> bool:
    """Whether these calls reach the server as MLflow's client would."""
    auth = os.environ.get("MLFLOW_TRACKING_AUTH")
    return rules.matches(r"^https?://\S+$", uri) and (not auth or identity.kubernetes())


def options() -> dict[str, Any]:
    """The keyword arguments of a request to the MLflow server, as MLflow's client sets them."""
    kwargs: dict[str, Any] = {
        "timeout": float(os.environ.get("MLFLOW_HTTP_REQUEST_TIMEOUT", "120")),
        "headers": {"User-Agent": "mlflow-webhook-copy-artifacts"},
    }
    user, password = (os.environ.get(f"MLFLOW_TRACKING_{k}") for k in ("USERNAME", "PASSWORD"))
    token = os.environ.get("MLFLOW_TRACKING_TOKEN", "").strip()  # a Secret's file ends in \n
    if user and password and not identity.kubernetes():
        kwargs["auth"] = (user, password)
    elif token:
        kwargs["headers"]["Authorization"] = f"Bearer {token}"
    elif identity.kubernetes():
        kwargs["auth"] = identity.ServiceAccountToken()
    workspace = identity.workspace()
    if workspace is not None:
        kwargs["headers"][identity.WORKSPACE_HEADER] = workspace
    if os.environ.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() == "true":
        kwargs["verify"] = False
    elif os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH"):
        kwargs["verify"] = os.environ["MLFLOW_TRACKING_SERVER_CERT_PATH"]
    if os.environ.get("MLFLOW_TRACKING_CLIENT_CERT_PATH"):
        kwargs["cert"] = os.environ["MLFLOW_TRACKING_CLIENT_CERT_PATH"]
    return kwargs


def call(base: str, path: str, params: dict[str, Any], post: bool = False) -> dict[str, Any]:
    import requests

    url = base.rstrip("/") + API + path
    if post:
        response = requests.post(url, json=params, **options())
    else:
        response = requests.get(url, params=params, **options())
    check(response)
    body: dict[str, Any] = response.json()
    return body


def check(response: Response, by_status: bool = True) -> None:
    """Raises the server's own error (RestError) for an answer that is not a success; one with
    no error code is named by its status as MLflow's client names it, or (`by_status` false:
    an artifact download, whose 404 means a missing file) raised as requests' HTTPError."""
    if response.ok:
        return
    try:
        detail = response.json()
        # MLflow's own shape, or the Kubernetes plugin's ({"error": {"code", "message"}}).
        nested = detail.get("error") if isinstance(detail.get("error"), dict) else {}
        code = str(detail.get("error_code") or nested.get("code") or "")
        message = str(detail.get("message") or nested.get("message") or "")
    except (ValueError, AttributeError):
        code, message = "", ""
    code = code or (_BY_STATUS.get(response.status_code, "") if by_status else "")
    if not code:
        response.raise_for_status()  # no MLflow answer (a proxy's 502): classified by status
    raise RestError(response.status_code, code, message)


# What MLflow's client makes of an answer without an error code (its auth app's plain 401).
_BY_STATUS = {401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "ENDPOINT_NOT_FOUND"}
