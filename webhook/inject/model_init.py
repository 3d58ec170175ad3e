"""The init container that copies the registered model into a volume the model server reads."""

from __future__ import annotations

import copy
from typing import Any

from webhook.config import ANNOTATION_MODEL_PATH, ANNOTATION_MODEL_URI, Config
from webhook.inject.env import container_env_plan, inject_container_env
from webhook.inject.volumes import ensure_volume, mount, mount_group_volume
from webhook.modeluri import ModelUriError, parse_model_uri
from webhook.settings.model import MLflowSetting

INIT_CONTAINER = "mlflow-model-init"
MODEL_VOLUME = "mlflow-model"

# Passes Pod Security "restricted"; the image runs as a numeric non-root user.
SECURITY_CONTEXT: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "seccompProfile": {"type": "RuntimeDefault"},
}


class Denied(Exception):
    """The pod must not be created; the message tells its owner what to fix."""


def add_model_init(pod: dict[str, Any], setting: MLflowSetting, config: Config) -> None:
    annotations = pod["metadata"].get("annotations") or {}
    try:
        uri = parse_model_uri(str(annotations[ANNOTATION_MODEL_URI]))
    except ModelUriError as e:
        raise Denied(f"annotation {ANNOTATION_MODEL_URI}: {e}") from None
    dest = str(annotations.get(ANNOTATION_MODEL_PATH) or config.model_init.default_path)
    dest = dest.rstrip("/") or "/"
    if not dest.startswith("/") or dest == "/":
        raise Denied(f"annotation {ANNOTATION_MODEL_PATH}: {dest!r} must be an absolute path")
    spec = pod["spec"]
    containers: list[dict[str, Any]] = spec.get("containers") or []
    for container in containers:
        for m in container.get("volumeMounts") or []:
            if m.get("mountPath", "").rstrip("/") == dest and m.get("name") != MODEL_VOLUME:
                raise Denied(
                    f"container {container.get('name')!r} already mounts volume {m.get('name')!r} "
                    f"at {dest}, where the model goes; remove that mount or set "
                    f"{ANNOTATION_MODEL_PATH}"
                )
    volume = ensure_volume(spec, {"name": MODEL_VOLUME, "emptyDir": {}})
    init_containers: list[dict[str, Any]] = spec.get("initContainers") or []
    if not any(c.get("name") == INIT_CONTAINER for c in init_containers):
        init = _init_container(setting, config, str(uri), dest)
        mount(init, volume, dest, read_only=False)
        if setting.artifact_volume is not None:
            mount_group_volume(spec, setting.artifact_volume, [init], read_only=True)
        spec["initContainers"] = [*init_containers, init]
    # Also on reinvocation: a container another webhook added after us needs the model too.
    for container in containers:
        mount(container, volume, dest, read_only=True)


def _init_container(setting: MLflowSetting, config: Config, uri: str, dest: str) -> dict[str, Any]:
    defaults = config.model_init
    override = setting.model_init
    container: dict[str, Any] = {
        "name": INIT_CONTAINER,
        "image": override.image or defaults.image,
        "imagePullPolicy": defaults.image_pull_policy,
        "command": ["mlflow-webhook", "copy-artifacts", uri, dest],
        "resources": copy.deepcopy(
            override.resources if override.resources is not None else defaults.resources
        ),
        "securityContext": copy.deepcopy(SECURITY_CONTEXT),
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    # The setting's own modelInit.env comes first so it wins over the group's variables.
    if override.env:
        container["env"] = [dict(e) for e in override.env]
    inject_container_env(container, container_env_plan(setting, config))
    return container
