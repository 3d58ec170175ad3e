"""Volumes and mounts, added only where the pod does not already have them."""

from __future__ import annotations

from typing import Any

from webhook.settings.model import ArtifactVolume

GROUP_VOLUME = "mlflow-group-volume"


def ensure_volume(spec: dict[str, Any], volume: dict[str, Any], same: str | None = None) -> str:
    """Name of a pod volume for this source: an existing one, or `volume` appended.

    `same` is the PVC claim name that makes an existing volume count as this one.
    """
    volumes: list[dict[str, Any]] = spec.get("volumes") or []
    for existing in volumes:
        claim = (existing.get("persistentVolumeClaim") or {}).get("claimName")
        if existing.get("name") == volume["name"] or (same is not None and claim == same):
            return str(existing["name"])
    spec["volumes"] = [*volumes, volume]
    return str(volume["name"])


def mount(container: dict[str, Any], volume: str, path: str, *, read_only: bool) -> None:
    """Mounts `volume` at `path` unless the container already mounts it or uses the path."""
    mounts: list[dict[str, Any]] = container.get("volumeMounts") or []
    if any(m.get("name") == volume or m.get("mountPath", "").rstrip("/") == path for m in mounts):
        return
    entry: dict[str, Any] = {"name": volume, "mountPath": path}
    if read_only:
        entry["readOnly"] = True
    container["volumeMounts"] = [*mounts, entry]


def group_volume(av: ArtifactVolume) -> dict[str, Any]:
    return {"name": GROUP_VOLUME, "persistentVolumeClaim": {"claimName": av.claim_name}}


def mount_group_volume(
    spec: dict[str, Any],
    av: ArtifactVolume,
    containers: list[dict[str, Any]],
    read_only: bool = False,
) -> None:
    """So runs can log to (or the init container read from) the local artifact root."""
    name = ensure_volume(spec, group_volume(av), same=av.claim_name)
    for container in containers:
        mount(container, name, av.mount_path, read_only=read_only)
