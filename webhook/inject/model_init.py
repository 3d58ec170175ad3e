"""The init container that copies the registered model into the volume the model server reads.

Three ways in:
- our annotation `mlflow.primehub.io/model-uri`: the init container goes after the pod's own,
  with a model volume of its own (or the emptyDir the model containers already mount there);
- PrimeHub's `models:/` initializer (`model-storage-initializer`, see pods.py): our copier takes
  its place, position and mounts (PrimeHub's `model-storage` emptyDir and group volume), and
  its plain-value MLflow env (credentials among it) is not kept;
- KServe's `storage-initializer` for a `models:/` URI, which runs our copier already: it is
  completed in place (kserve.py); before KServe has added it, there is nothing to do yet.
On reinvocation our init container is found by name and nothing is added twice.
"""

from __future__ import annotations

import copy
from typing import Any

from webhook.config import (
    ANNOTATION_MODEL_PATH,
    ANNOTATION_MODEL_URI,
    ANNOTATION_MODEL_VOLUME_SIZE,
    QUANTITY,
    Config,
)
from webhook.inject.env import container_env_plan, inject_container_env
from webhook.inject.errors import Denied
from webhook.inject.kserve import complete_storage_initializer
from webhook.inject.mounts import mount_copier_volumes
from webhook.inject.podresources import fit_pod_requests
from webhook.inject.volumes import add_volume, free_name, is_exactly, mount, mount_at, norm
from webhook.modeluri import ModelUriError, parse_model_uri
from webhook.pods import KSERVE_INITIALIZER, kserve_pending, model_initializer
from webhook.settings import rules
from webhook.settings.model import MLflowSetting

INIT_CONTAINER = "mlflow-model-init"
COMMAND = ["mlflow-webhook", "copy-artifacts"]
MODEL_VOLUME = "mlflow-model"

# Passes Pod Security "restricted"; the user and group come from the configuration.
SECURITY_CONTEXT: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "seccompProfile": {"type": "RuntimeDefault"},
}


def add_model_init(pod: dict[str, Any], setting: MLflowSetting, config: Config) -> list[str]:
    """Adds (or takes over) the model init container; returns warnings, raises Denied."""
    spec = pod["spec"]
    annotations = pod["metadata"].get("annotations") or {}
    inits: list[dict[str, Any]] = spec.get("initContainers") or []
    containers: list[dict[str, Any]] = spec.get("containers") or []
    if any(c["name"] == INIT_CONTAINER for c in containers):
        raise Denied(
            f"container {INIT_CONTAINER!r} has the name of the init container this webhook adds "
            "(a pod's container names must differ): rename it"
        )
    ours = next((c for c in inits if c["name"] == INIT_CONTAINER), None)
    if ours is not None:  # reinvoked: a container added after us needs the model too
        dest, volume = _copies_into(ours)
        _mount_model(containers, volume, dest)
        return []
    if (spec.get("os") or {}).get("name") == "windows":
        raise Denied(
            "the model init container is a Linux image, and this pod is a Windows pod "
            "(spec.os.name: windows): serve the model from a Linux pod"
        )
    taken = model_initializer(pod)
    if taken is not None and inits[taken]["name"] == KSERVE_INITIALIZER:
        found = complete_storage_initializer(spec, inits[taken], setting, config)
        add_pull_secrets(spec, setting, config)
        return found
    if taken is None and ANNOTATION_MODEL_URI not in annotations and kserve_pending(pod):
        return []  # KServe's mutator adds the initializer after us; we are called again then
    text = annotations.get(ANNOTATION_MODEL_URI)
    if text is None and taken is not None:
        text = (inits[taken].get("args") or [""])[0]
    try:
        uri = str(parse_model_uri(str(text)))
    except ModelUriError as e:
        raise Denied(f"model URI: {e}") from None
    warnings: list[str] = []
    if taken is not None:
        primehub = inits[taken]
        storage = _emptydir_mount(spec, primehub)
        dest = norm(storage["mountPath"])
        # PrimeHub's model volume is an emptyDir: the node's ephemeral storage holds the model.
        init = _init_container(setting, config, uri, dest, _size(annotations, setting, config))
        init["volumeMounts"] = copy.deepcopy(primehub.get("volumeMounts") or [])
        warnings += mount_copier_volumes(spec, setting, init)
        spec["initContainers"] = [*inits[:taken], init, *inits[taken + 1 :]]
        _mount_model(containers, storage["name"], dest)
    else:
        dest = _dest(annotations, config)
        size = _size(annotations, setting, config)
        volume = _model_volume(spec, containers, dest, setting, config, size)
        in_emptydir = any("emptyDir" in v for v in spec["volumes"] if v["name"] == volume)
        init = _init_container(setting, config, uri, dest, size if in_emptydir else None)
        mount(init, volume, dest, read_only=False)
        warnings += mount_copier_volumes(spec, setting, init)
        spec["initContainers"] = [*inits, init]
        _mount_model(containers, volume, dest)
    fit_pod_requests(spec, init)
    add_pull_secrets(spec, setting, config)
    return warnings


def _copies_into(container: dict[str, Any]) -> tuple[str, str]:
    """Where our init container (from an earlier call) copies the model, and the volume it
    mounts there; Denied for another container that only has its name."""
    command = container.get("command") or []
    dest = norm(str(command[3])) if len(command) == 4 else ""
    found = mount_at(container, dest) if dest.startswith("/") else None
    if command[:2] != COMMAND or found is None or not is_exactly(found, found["name"]):
        raise Denied(
            f"init container {INIT_CONTAINER!r} is not the one this webhook adds (its command "
            f"is not `{' '.join(COMMAND)} URI FOLDER` with a volume mounted whole at FOLDER): "
            "rename it"
        )
    return dest, str(found["name"])


def _emptydir_mount(spec: dict[str, Any], container: dict[str, Any]) -> dict[str, Any]:
    """PrimeHub's model volume: the emptyDir its initializer writes (`model-storage`), mounted
    whole at an absolute path (the copier's folder, which finds it again on reinvocation)."""
    empty = {v["name"] for v in spec.get("volumes") or [] if "emptyDir" in v}
    for m in container.get("volumeMounts") or []:
        if m["name"] in empty and is_exactly(m, m["name"]) and norm(m["mountPath"]).startswith("/"):
            return dict(m)
    raise Denied(f"PrimeHub's {container['name']} mounts no emptyDir for the model")


def _dest(annotations: dict[str, str], config: Config) -> str:
    dest = norm(str(annotations.get(ANNOTATION_MODEL_PATH) or config.model_init.default_path))
    if not dest.startswith("/") or dest == "/":
        raise Denied(f"annotation {ANNOTATION_MODEL_PATH}: {dest!r} must be an absolute path")
    return dest


def _size(annotations: dict[str, str], setting: MLflowSetting, config: Config) -> str:
    size = annotations.get(ANNOTATION_MODEL_VOLUME_SIZE)
    if size is not None and not QUANTITY.fullmatch(size):
        raise Denied(
            f"annotation {ANNOTATION_MODEL_VOLUME_SIZE}: {size[:40]!r} is not a quantity like 20Gi"
        )
    return size or setting.model_init.volume_size or config.model_init.volume_size


def _model_volume(
    spec: dict[str, Any],
    containers: list[dict[str, Any]],
    dest: str,
    setting: MLflowSetting,
    config: Config,
    size: str,
) -> str:
    """The volume the model is copied into: the emptyDir every model container already mounts at
    `dest`, or a new one; never a volume that holds something else."""
    at_dest = [(c, m) for c in containers if (m := mount_at(c, dest)) is not None]
    if at_dest:
        volumes = {v["name"]: v for v in spec.get("volumes") or []}
        name = at_dest[0][1]["name"]
        if "emptyDir" in volumes.get(name, {}) and all(is_exactly(m, name) for _, m in at_dest):
            return str(name)
        c, m = next(((c, m) for c, m in at_dest if not is_exactly(m, name)), at_dest[0])
        what = (
            "a part (subPath) of a volume"
            if m.get("subPath") or m.get("subPathExpr")
            else ("not an emptyDir")
        )
        raise Denied(
            f"container {c['name']!r} mounts volume {m['name']!r} at {dest}, where the model "
            f"goes, and that is {what} the model could be copied into; remove that mount or "
            f"set {ANNOTATION_MODEL_PATH}"
        )
    storage_class = setting.model_init.storage_class or config.model_init.storage_class
    volume: dict[str, Any] = {"name": free_name(spec, MODEL_VOLUME)}
    if storage_class:
        volume["ephemeral"] = {
            "volumeClaimTemplate": {
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "storageClassName": storage_class,
                    "resources": {"requests": {"storage": size}},
                }
            }
        }
    else:
        volume["emptyDir"] = {"sizeLimit": size}
    return add_volume(spec, volume)


def _mount_model(containers: list[dict[str, Any]], volume: str, dest: str) -> None:
    for container in containers:
        if mount_at(container, dest) is None:
            mount(container, volume, dest, read_only=True)


def add_pull_secrets(spec: dict[str, Any], setting: MLflowSetting, config: Config) -> None:
    """The pull secrets for the init container's image, added to the pod."""
    wanted = setting.model_init.image_pull_secrets or config.model_init.image_pull_secrets
    have = [s.get("name") for s in spec.get("imagePullSecrets") or []]
    missing = [{"name": n} for n in wanted if n not in have]
    if missing:
        spec["imagePullSecrets"] = [*(spec.get("imagePullSecrets") or []), *missing]


def _init_container(
    setting: MLflowSetting, config: Config, uri: str, dest: str, ephemeral: str | None
) -> dict[str, Any]:
    """`ephemeral`: the size of the model when it lands in an emptyDir (the node's ephemeral
    storage), so the init container asks for that much up front."""
    defaults = config.model_init
    override = setting.model_init
    resources = copy.deepcopy(
        override.resources if override.resources is not None else defaults.resources
    )
    if ephemeral is not None:
        resources.setdefault("requests", {}).setdefault("ephemeral-storage", ephemeral)
        if rules.request_over_limit(resources) == "ephemeral-storage":
            raise Denied(
                f"the model volume ({ephemeral}) is larger than the init container's "
                f"ephemeral-storage limit ({resources['limits']['ephemeral-storage']}, "
                f"modelInit.resources); ask for less with {ANNOTATION_MODEL_VOLUME_SIZE} or raise "
                "that limit"
            )
    container: dict[str, Any] = {
        "name": INIT_CONTAINER,
        "image": override.image or defaults.image,
        "imagePullPolicy": defaults.image_pull_policy,
        "command": [*COMMAND, uri, dest],
        "resources": resources,
        "securityContext": {
            **copy.deepcopy(SECURITY_CONTEXT),
            "runAsUser": defaults.run_as_user,
            "runAsGroup": defaults.run_as_group,
        },
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    # The setting's own modelInit.env wins over the group's variables of the same name.
    if override.env:
        container["env"] = [dict(e) for e in override.env]
    inject_container_env(container, container_env_plan(setting, config))
    return container
