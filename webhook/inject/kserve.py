"""KServe's storage initializer for `models:/` URIs, completed in place.

KServe cannot load a registered MLflow model itself; the ClusterStorageContainer of
manifests/components/kserve makes its `storage-initializer` (added by its pod mutator, or by its
controller for `storageUris`) run this project's copier, with KServe's own arguments (URI,
folder, and for `storageUris` more of both) and its own model volume (`kserve-provision-location`
at /mnt/models). What no cluster-wide object can know is the group: here the initializer gets
its group's tracking and artifact variables (credentials by reference), `envFrom`, the CA
bundle and the group volume, exactly as our own init container would. Nothing KServe or the
ClusterStorageContainer set is changed: image, command, arguments, resources, mounts and
variables stay, and ours are only added beside them.
"""

from __future__ import annotations

from typing import Any

from webhook.config import Config
from webhook.inject.env import EnvGroup, container_env_plan, inject_container_env
from webhook.inject.errors import Denied
from webhook.inject.mounts import mount_copier_volumes
from webhook.modeluri import ModelUriError, parse_model_uri
from webhook.pods import MODEL_SCHEME
from webhook.settings.model import MLflowSetting

COPIER = ("mlflow-webhook", "copy-artifacts")


def runs_our_copier(container: dict[str, Any]) -> bool:
    command = [str(c) for c in container.get("command") or []]
    return (
        len(command) >= 2
        and command[0].rsplit("/", 1)[-1] == COPIER[0]
        and (command[1] == COPIER[1])
    )


def complete_storage_initializer(
    spec: dict[str, Any], init: dict[str, Any], setting: MLflowSetting, config: Config
) -> list[str]:
    """Adds the group's MLflow settings to KServe's initializer; returns warnings, raises
    Denied when it cannot copy the model."""
    args = [str(a) for a in init.get("args") or []]
    for uri in args[0::2]:
        if not uri.startswith(MODEL_SCHEME):
            raise Denied(
                f"KServe's {init['name']} gets {uri.split(':', 1)[0]}:// and models:/ URIs at "
                "once (storageUris whose first is models:/), and only models:/ can be copied "
                "here: serve them from two InferenceServices"
            )
        try:
            parse_model_uri(uri)
        except ModelUriError as e:
            raise Denied(f"model URI: {e}") from None
    if len(args) % 2:
        raise Denied(f"KServe's {init['name']} has no folder for {args[-1]}")
    if not runs_our_copier(init):
        raise Denied(
            f"KServe's {init['name']} for {args[0]} runs {init.get('image')!r} without this "
            "project's copier, and KServe cannot load models:/ URIs itself: install "
            "manifests/components/kserve (a ClusterStorageContainer for models:/)"
        )
    own = (EnvGroup(tuple(setting.model_init.env), ()),) if setting.model_init.env else ()
    inject_container_env(init, own + container_env_plan(setting, config))
    return mount_copier_volumes(spec, setting, init)
