"""Volumes and mounts: a pod volume is reused only when it is what we would add (same type, same
claim), a mount counts only when it is exactly ours (that volume, that path, no subPath), and a
name or path that belongs to something else is never taken over."""

from __future__ import annotations

from typing import Any

from webhook.settings.model import ArtifactVolume

Spec = dict[str, Any]
Container = dict[str, Any]
GROUP_VOLUME = "mlflow-group-volume"


def norm(path: str) -> str:
    return path.rstrip("/") or "/"


def free_name(spec: Spec, wanted: str) -> str:
    """`wanted`, or `wanted-1`, `wanted-2`, ... : the first name no pod volume has."""
    taken = {v.get("name") for v in spec.get("volumes") or []}
    name, n = wanted, 0
    while name in taken:
        n += 1
        name = f"{wanted}-{n}"
    return name


def add_volume(spec: Spec, volume: dict[str, Any]) -> str:
    spec["volumes"] = [*(spec.get("volumes") or []), volume]
    return str(volume["name"])


def mount_at(container: Container, path: str) -> dict[str, Any] | None:
    """The container's mount at `path`, if any."""
    path = norm(path)
    for m in container.get("volumeMounts") or []:
        if norm(m["mountPath"]) == path:
            return dict(m)
    return None


def is_exactly(m: dict[str, Any] | None, volume: str) -> bool:
    return (
        m is not None and m["name"] == volume and not m.get("subPath") and not m.get("subPathExpr")
    )


def mount(container: Container, volume: str, path: str, *, read_only: bool) -> None:
    entry: dict[str, Any] = {"name": volume, "mountPath": path}
    if read_only:
        entry["readOnly"] = True
    container["volumeMounts"] = [*(container.get("volumeMounts") or []), entry]


def claim_volume(spec: Spec, claim: str) -> str | None:
    for v in spec.get("volumes") or []:
        if (v.get("persistentVolumeClaim") or {}).get("claimName") == claim:
            return str(v["name"])
    return None


def mount_group_volume(
    spec: Spec, av: ArtifactVolume, containers: list[Container], *, read_only: bool = False
) -> list[str]:
    """Mounts the group volume at its path in each container (so runs can log to, or the init
    container read from, the local artifact root); returns warnings for containers where that
    path is taken by something else."""
    warnings: list[str] = []
    name = claim_volume(spec, av.claim_name)
    for container in containers:
        existing = mount_at(container, av.mount_path)
        if name is not None and is_exactly(existing, name):
            continue
        if existing is not None:
            warnings.append(
                f"container {container['name']!r} mounts {existing['name']!r} at "
                f"{av.mount_path}, where the group volume (claim {av.claim_name}) belongs; "
                "MLflow runs there cannot reach the group's artifacts"
            )
            continue
        if name is None:
            name = add_volume(
                spec,
                {
                    "name": free_name(spec, GROUP_VOLUME),
                    "persistentVolumeClaim": {"claimName": av.claim_name},
                },
            )
        mount(container, name, av.mount_path, read_only=read_only)
    return warnings
