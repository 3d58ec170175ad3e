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


def mount_in_each(
    spec: Spec,
    containers: list[Container],
    path: str,
    found: str | None,
    volume: dict[str, Any],
    *,
    name: str,
    belongs: str,
    read_only: bool,
) -> list[str]:
    """Mounts a volume at `path` in each container: the pod's volume `found`, or else `volume`,
    added (under `name` or a free variant) the first time a container needs it. Returns
    warnings for containers where something else is mounted at `path`; `belongs` says what
    should be there, and what goes wrong without it."""
    warnings: list[str] = []
    for container in containers:
        existing = mount_at(container, path)
        if found is not None and is_exactly(existing, found):
            continue
        if existing is not None:
            warnings.append(
                f"container {container['name']!r} mounts {existing['name']!r} at {path}, "
                f"where {belongs}"
            )
            continue
        if found is None:
            found = add_volume(spec, {"name": free_name(spec, name), **volume})
        mount(container, found, path, read_only=read_only)
    return warnings


def mount_group_volume(
    spec: Spec, av: ArtifactVolume, containers: list[Container], *, read_only: bool = False
) -> list[str]:
    """So runs can log to (or the init container read from) the local artifact root."""
    return mount_in_each(
        spec,
        containers,
        av.mount_path,
        claim_volume(spec, av.claim_name),
        {"persistentVolumeClaim": {"claimName": av.claim_name}},
        name=GROUP_VOLUME,
        belongs=f"the group volume (claim {av.claim_name}) belongs; MLflow runs there cannot "
        "reach the group's artifacts",
        read_only=read_only,
    )
