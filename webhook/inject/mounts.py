"""What a container of the group mounts from its setting: the group volume (where the artifact
root is) and the CA bundle; the same for the pod's own containers and for the init container."""

from __future__ import annotations

from typing import Any

from webhook.inject.ca import mount_ca
from webhook.inject.identity import mount_identity
from webhook.inject.volumes import mount_group_volume
from webhook.settings.model import MLflowSetting


def mount_setting_volumes(
    spec: dict[str, Any],
    setting: MLflowSetting,
    containers: list[dict[str, Any]],
    *,
    read_only: bool,
) -> list[str]:
    """Returns warnings for containers where those paths hold something else."""
    warnings: list[str] = []
    if setting.artifact_volume is not None:
        warnings += mount_group_volume(
            spec, setting.artifact_volume, containers, read_only=read_only
        )
    if setting.ca_bundle is not None:
        warnings += mount_ca(spec, setting.ca_bundle, containers)
    return warnings


def mount_copier_volumes(
    spec: dict[str, Any], setting: MLflowSetting, copier: dict[str, Any]
) -> list[str]:
    """The copier's container (ours, or KServe's initializer running ours): the setting's
    volumes, read-only, and with Kubernetes identities the pod's token (identity.py)."""
    warnings = mount_setting_volumes(spec, setting, [copier], read_only=True)
    if setting.tracking_auth is not None:
        mount_identity(spec, [copier])
    return warnings
