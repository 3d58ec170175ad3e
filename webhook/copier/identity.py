"""Who the copier is to the MLflow server, as MLflow's client decides it (>= 3.10/3.11;
mlflow/utils/rest_utils.py, mlflow/tracking/request_auth/kubernetes_request_auth_provider.py),
without importing MLflow or the `kubernetes` package:

- the workspace: MLFLOW_WORKSPACE, else with MLFLOW_TRACKING_AUTH=kubernetes-namespaced the
  pod's namespace; sent as X-MLFLOW-WORKSPACE on every call. None: no header, the server's
  default workspace (a server without workspaces refuses the header);
- with MLFLOW_TRACKING_AUTH=kubernetes(-namespaced) the pod's ServiceAccount token as bearer,
  read again for every request (the kubelet replaces the file as it renews the token), unless
  MLFLOW_TRACKING_TOKEN is set (it wins, as in MLflow; a username and password do not).
Both files are where the kubelet puts them in every container that mounts the token (the
webhook mounts it into the copier's container: webhook/inject/identity.py). MLflow's client
falls back to a kubeconfig outside a pod; the copier runs in pods, and says so instead."""

from __future__ import annotations

import base64
import json
import os
from typing import Any

from webhook.kube import SERVICE_ACCOUNT
from webhook.settings.rules import KUBERNETES_AUTH

WORKSPACE_HEADER = "X-MLFLOW-WORKSPACE"


def _auth() -> str:
    return os.environ.get("MLFLOW_TRACKING_AUTH", "")


def kubernetes() -> bool:
    """Whether the pod logs in with its Kubernetes identity."""
    return _auth() in KUBERNETES_AUTH


def uses_file_token() -> bool:
    """Whether the bearer token comes from the ServiceAccount's file (not MLFLOW_TRACKING_TOKEN)."""
    return kubernetes() and not os.environ.get("MLFLOW_TRACKING_TOKEN")


def token() -> str | None:
    """The pod's ServiceAccount token as the kubelet last wrote it."""
    return _read("token")


def _read(name: str) -> str | None:
    try:
        return (SERVICE_ACCOUNT / name).read_text().strip() or None
    except OSError:
        return None


def workspace() -> str | None:
    """The workspace MLflow's client would send, or None."""
    named = os.environ.get("MLFLOW_WORKSPACE", "").strip()
    if named:
        return named
    if _auth() == "kubernetes-namespaced":
        return _read("namespace")
    return None


def named_by() -> str:
    """Where the workspace's name comes from, in words."""
    if os.environ.get("MLFLOW_WORKSPACE", "").strip():
        return "MLFLOW_WORKSPACE"
    return "the pod's namespace, with MLFLOW_TRACKING_AUTH=kubernetes-namespaced"


def identity_problem() -> str | None:
    """Why the pod cannot log in as MLFLOW_TRACKING_AUTH says, if it cannot."""
    if not kubernetes():
        return None
    mode = f"MLFLOW_TRACKING_AUTH={_auth()}"
    if uses_file_token() and _read("token") is None:
        return (
            f"{mode}, but there is no ServiceAccount token at {SERVICE_ACCOUNT / 'token'}: the "
            "copier's container must mount the pod's token (the webhook mounts one when the "
            "MLflowSetting says trackingAuth)"
        )
    if _auth() == "kubernetes-namespaced" and workspace() is None:
        return (
            f"{mode}, but there is no namespace at {SERVICE_ACCOUNT / 'namespace'} to take as "
            "the workspace, and MLFLOW_WORKSPACE is not set"
        )
    return None


class ServiceAccountToken:
    """requests' auth: the token file's current content as bearer, unless the request already
    has an Authorization header (MLflow's KubernetesAuth does the same)."""

    def __call__(self, request: Any) -> Any:
        if "Authorization" not in request.headers:
            found = token()
            if found is None:  # it was there when the copy began (identity_problem)
                raise OSError(f"the ServiceAccount token at {SERVICE_ACCOUNT} went away")
            request.headers["Authorization"] = f"Bearer {found}"
        return request


def service_account() -> str | None:
    """Whose token the copier sends (namespace/name), read from the token's own claims (not
    verified: only to name it in a message), or None."""
    found = token() if uses_file_token() else None
    try:
        payload = (found or "").split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        subject = str(claims["sub"])
    except (IndexError, ValueError, KeyError, TypeError):
        return None
    prefix = "system:serviceaccount:"
    return subject[len(prefix) :].replace(":", "/", 1) if subject.startswith(prefix) else None
