"""A private CA for MLflow traffic: the setting's ConfigMap or Secret key, mounted read-only as
one file where the tracking and artifact clients read it (MLFLOW_TRACKING_SERVER_CERT_PATH,
AWS_CA_BUNDLE, which env.py adds)."""

from __future__ import annotations

from typing import Any

from webhook.inject.volumes import mount_in_each
from webhook.settings.model import CaBundle

CA_DIR = "/etc/mlflow-webhook/ca"
CA_FILE = f"{CA_DIR}/ca.crt"
CA_VOLUME = "mlflow-ca"


def _source(ca: CaBundle) -> dict[str, Any]:
    items = [{"key": ca.key, "path": "ca.crt"}]
    if ca.kind == "secret":
        return {"secret": {"secretName": ca.name, "items": items}}
    return {"configMap": {"name": ca.name, "items": items}}


def _holds(volume: dict[str, Any], ca: CaBundle) -> bool:
    """The volume is this bundle, whatever defaults the API server added (defaultMode)."""
    kind, ref = ("secret", "secretName") if ca.kind == "secret" else ("configMap", "name")
    source = volume.get(kind) or {}
    items = [(i.get("key"), i.get("path")) for i in source.get("items") or []]
    return source.get(ref) == ca.name and items == [(ca.key, "ca.crt")]


def mount_ca(spec: dict[str, Any], ca: CaBundle, containers: list[dict[str, Any]]) -> list[str]:
    """Mounts the bundle at CA_DIR in each container."""
    return mount_in_each(
        spec,
        containers,
        CA_DIR,
        next((v["name"] for v in spec.get("volumes") or [] if _holds(v, ca)), None),
        _source(ca),
        name=CA_VOLUME,
        belongs="the group's CA bundle belongs; TLS to its MLflow server may fail",
        read_only=True,
    )
