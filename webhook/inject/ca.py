"""A private CA for MLflow traffic: the setting's ConfigMap or Secret key, mounted read-only as
one file where the tracking and artifact clients read it (MLFLOW_TRACKING_SERVER_CERT_PATH,
AWS_CA_BUNDLE, which env.py adds)."""

from __future__ import annotations

from typing import Any

from webhook.inject.volumes import add_volume, free_name, is_exactly, mount, mount_at
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
    """Mounts the bundle at CA_DIR in each container; returns warnings for containers where that
    path is taken by something else."""
    source = _source(ca)
    name = next((v["name"] for v in spec.get("volumes") or [] if _holds(v, ca)), None)
    warnings: list[str] = []
    for container in containers:
        existing = mount_at(container, CA_DIR)
        if name is not None and is_exactly(existing, name):
            continue
        if existing is not None:
            warnings.append(
                f"container {container['name']!r} mounts {existing['name']!r} at {CA_DIR}, "
                "where the group's CA bundle belongs; TLS to its MLflow server may fail"
            )
            continue
        if name is None:
            name = add_volume(spec, {"name": free_name(spec, CA_VOLUME), **source})
        mount(container, name, CA_DIR, read_only=True)
    return warnings
