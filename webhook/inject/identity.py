"""The pod's Kubernetes identity for the copier, when the setting's pods authenticate with it
(trackingAuth): MLflow's client reads the ServiceAccount's token and namespace from fixed files
(/var/run/secrets/kubernetes.io/serviceaccount/), which a pod with
`automountServiceAccountToken: false` does not have, and which the ServiceAccount admission
plugin gives only the containers that exist when it runs: never an init container added by a
webhook after it. So the copier's container gets a projected volume of its own with the pod's
token (for the API server's audience, which the MLflow server's authorization asks about) and
its namespace. No other container gains a token: user containers keep what they had."""

from __future__ import annotations

import copy
from typing import Any

from webhook.inject.errors import Denied
from webhook.inject.volumes import mount_at, mount_in_each
from webhook.kube import SERVICE_ACCOUNT

SERVICE_ACCOUNT_DIR = str(SERVICE_ACCOUNT)
VOLUME = "mlflow-identity"
TOKEN_SECONDS = 3600  # the kubelet renews it at 80% of that; the copier reads it each time
PROJECTED: dict[str, Any] = {
    "sources": [
        {"serviceAccountToken": {"path": "token", "expirationSeconds": TOKEN_SECONDS}},
        {
            "downwardAPI": {
                "items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]
            }
        },
    ]
}


def _ours(spec: dict[str, Any]) -> str | None:
    """The identity volume an earlier call added (the API server may have defaulted fields of
    it since: its mode, the fieldRef's apiVersion)."""
    for volume in spec.get("volumes") or []:
        name = str(volume.get("name", ""))
        if name.startswith(VOLUME) and "projected" in volume:
            return name
    return None


def mount_identity(spec: dict[str, Any], containers: list[dict[str, Any]]) -> None:
    """Gives each container the pod's token and namespace where MLflow's client reads them,
    unless something is mounted there already (the ServiceAccount's own token volume). A pod
    with no ServiceAccount (the API server's ServiceAccount admission plugin names one in every
    pod before webhooks see it, unless it is turned off) has no token to give: Denied, since its
    copy could only fail."""
    needing = [c for c in containers if mount_at(c, SERVICE_ACCOUNT_DIR) is None]
    if needing and not (spec.get("serviceAccountName") or spec.get("serviceAccount")):
        raise Denied(
            "the pod has no ServiceAccount (spec.serviceAccountName), whose token its model copy "
            "would log in with (the group's MLflowSetting says trackingAuth): name one"
        )
    mount_in_each(
        spec,
        needing,
        SERVICE_ACCOUNT_DIR,
        _ours(spec),
        {"projected": copy.deepcopy(PROJECTED)},
        name=VOLUME,
        belongs="the pod's token",  # never said: these containers mount nothing there
        read_only=True,
    )
