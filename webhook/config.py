"""The webhook's configuration: one dataclass, one YAML shape, PrimeHub's conventions as defaults.

Every knob an admin may turn lives here; docs/configuration.md documents the same shape.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from webhook import PREFIX, __version__
from webhook.files import FileProblem, load_yaml
from webhook.settings import crd, rules, schema

Labels = dict[str, str]

ANNOTATION_INJECT = PREFIX + "inject"
ANNOTATION_INJECTED = PREFIX + "injected"
ANNOTATION_MODEL_URI = PREFIX + "model-uri"
ANNOTATION_MODEL_PATH = PREFIX + "model-path"
ANNOTATION_MODEL_VOLUME_SIZE = PREFIX + "model-volume-size"


QUANTITY = rules.compiled(rules.QUANTITY)
# A label value Kubernetes accepts (anything else is refused by the API server after admission)
# and a label name.
LABEL_VALUE = rules.compiled(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
LABEL_KEY = rules.compiled(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)


class ConfigError(ValueError):
    """The configuration file cannot be used; the message names the field."""


# In a pod-kind selector, a label's value that means "the pod has this label, whatever its
# value" (no label value can be `*`).
ANY_VALUE = "*"


@dataclass(frozen=True)
class PodKinds:
    """Label selectors (each a map of label to value, or to ANY_VALUE; any of the list) that say
    which kind a pod is. A pod of one of these kinds is served with no group label too: it gets
    its namespace's setting, if there is one. The defaults cover PrimeHub, JupyterHub's
    KubeSpawner (whose pods PrimeHub's are), Kubeflow's notebooks and Training Operator,
    Kubernetes Jobs and CronJobs, KServe."""

    notebook: tuple[Labels, ...] = (
        {"component": "singleuser-server"},  # JupyterHub's KubeSpawner (PrimeHub's notebooks)
        {"notebook-name": ANY_VALUE},  # Kubeflow's notebook controller
    )
    job: tuple[Labels, ...] = (
        {"app": "primehub-job"},
        {"training.kubeflow.org/job-name": ANY_VALUE},  # Kubeflow's Training Operator
        # Kubernetes Jobs, a CronJob's among them: the Job controller's label (Kubernetes 1.27+).
        {"batch.kubernetes.io/job-name": ANY_VALUE},
        # Argo Workflows' steps (Kubeflow Pipelines' among them): its workflow controller's label.
        {"workflows.argoproj.io/workflow": ANY_VALUE},
        {"ray.io/cluster": ANY_VALUE},  # KubeRay: head and workers (RayCluster, RayJob, RayService)
        {"spark-role": ANY_VALUE},  # Spark on Kubernetes: the driver and its executors
    )
    deployment: tuple[Labels, ...] = (
        {"app": "primehub-deployment"},
        {"serving.kserve.io/inferenceservice": ANY_VALUE},  # KServe's predictors
    )
    exclude: tuple[Labels, ...] = (
        {"app": "primehub-app"},  # PrimeHub's apps: the MLflow server itself among them
        # Argo's own pods beside a workflow's steps (its agent for HTTP templates, its artifact
        # garbage collector): they carry the workflow's label but run no user code.
        {"workflows.argoproj.io/component": ANY_VALUE},
    )


# The webhook's own image, as its Deployment names it (manifests/base/deployment.yaml): the
# model init container runs the same image, and this way an admin names it once (kustomize's
# `images` reaches the variable too: manifests/base/images.yaml).
IMAGE_ENV = "MLFLOW_WEBHOOK_IMAGE"


def own_image() -> str:
    return os.environ.get(IMAGE_ENV) or f"primehub/mlflow-webhook:{__version__}"


@dataclass(frozen=True)
class ModelInit:
    """Defaults for the model init container; an MLflowSetting's `modelInit` overrides them."""

    image: str = field(default_factory=lambda: own_image())
    image_pull_policy: str = "IfNotPresent"
    image_pull_secrets: tuple[str, ...] = ()
    default_path: str = "/mnt/models"
    resources: dict[str, Any] = field(
        default_factory=lambda: {
            "requests": {"cpu": "100m", "memory": "256Mi"},
            "limits": {"cpu": "1", "memory": "1Gi"},
        }
    )
    # The image's numeric user and group (Dockerfile): set on the init container, so a pod that
    # runs as root (runAsUser: 0) still gives it the identity runAsNonRoot requires.
    run_as_user: int = 10001
    run_as_group: int = 10001
    # The model volume: an emptyDir limited to this size (the init container requests as much
    # ephemeral storage), or with a storage class, a generic ephemeral volume of this size.
    volume_size: str = "10Gi"
    storage_class: str | None = None


@dataclass(frozen=True)
class Config:
    pod_kinds: PodKinds = PodKinds()
    escaped_group_label: str = "primehub.io/group"
    group_label: str = PREFIX + "group"
    # Names that form one login: a container setting any of them gets none of the setting's.
    tracking_credentials: frozenset[str] = rules.TRACKING_LOGIN
    artifact_credentials: frozenset[str] = rules.ARTIFACT_LOGIN
    model_init: ModelInit = ModelInit()
    # What a model deployment gets when its group has no usable setting: "deny" or "warn".
    missing_setting: str = "deny"
    # Namespace given to settings in a file that do not name one (PrimeHub runs in `hub`).
    default_namespace: str = "hub"
    max_request_bytes: int = 8 * 1024 * 1024

    @property
    def login_names(self) -> frozenset[str]:
        """Names whose values are credentials: a setting may give them only from Secrets."""
        return self.tracking_credentials | self.artifact_credentials


def _selectors(raw: Any, where: str) -> tuple[Labels, ...]:
    if not isinstance(raw, list) or not all(
        isinstance(s, dict) and s and all(isinstance(v, str) for v in s.values()) for s in raw
    ):
        raise ConfigError(f"{where}: expected a list of non-empty label maps (string values)")
    for i, selector in enumerate(raw):
        for key, value in selector.items():
            if not LABEL_KEY.fullmatch(str(key)):
                raise ConfigError(f"{where}[{i}]: {str(key)[:80]!r} is not a label name")
            if value != ANY_VALUE and (len(value) > 63 or not LABEL_VALUE.fullmatch(value)):
                raise ConfigError(
                    f"{where}[{i}].{key}: {value[:80]!r} is not a label value (or {ANY_VALUE!r}: "
                    "any value)"
                )
    return tuple({str(k): v for k, v in s.items()} for s in raw)


# A setting's modelInit (the CRD's schema) and what only the configuration sets.
MODEL_INIT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        **crd.model_init_properties(),
        "imagePullPolicy": {"type": "string", "enum": ["Always", "IfNotPresent", "Never"]},
        "defaultPath": {"type": "string", "maxLength": 1024, "pattern": "^/"},
        "runAsUser": {"type": "integer", "minimum": 0},
        "runAsGroup": {"type": "integer", "minimum": 0},
    },
}


def _model_init(raw: Any) -> ModelInit:
    try:
        schema.check(raw, MODEL_INIT_SCHEMA, "modelInit")
    except schema.SchemaProblem as problem:
        raise ConfigError(f"{problem.path}: {problem}") from None
    raw = schema.pruned(raw)
    why = rules.resources_problem(raw.get("resources", {}))
    if why is not None:
        raise ConfigError(f"modelInit.resources: {why}")
    volume = raw.get("volume", {})
    given = {
        "image": raw.get("image"),
        "image_pull_policy": raw.get("imagePullPolicy"),
        "image_pull_secrets": tuple(s["name"] for s in raw.get("imagePullSecrets", ())),
        "default_path": raw.get("defaultPath"),
        "resources": raw.get("resources"),
        "run_as_user": raw.get("runAsUser"),
        "run_as_group": raw.get("runAsGroup"),
        "volume_size": volume.get("size"),
        "storage_class": volume.get("storageClassName"),
    }
    return ModelInit(**{k: v for k, v in given.items() if v is not None})


def _take(raw: dict[str, Any], key: str, kind: type, where: str) -> Any:
    value = raw.pop(key)
    if not isinstance(value, kind):
        raise ConfigError(f"{where}{key}: expected {kind.__name__}")
    return value


def parse_config(raw: dict[str, Any]) -> Config:
    """Builds a Config from the documented YAML shape; unknown keys are errors, not ignored."""
    raw = dict(raw)
    kw: dict[str, Any] = {}
    if "podKinds" in raw:
        kinds = dict(_take(raw, "podKinds", dict, ""))
        pk = {
            k: _selectors(kinds.pop(k), f"podKinds.{k}")
            for k in list(kinds)
            if k in ("notebook", "job", "deployment", "exclude")
        }
        if kinds:
            raise ConfigError(f"podKinds: unknown keys {sorted(kinds)}")
        kw["pod_kinds"] = PodKinds(**pk)
    if "labels" in raw:
        labels = dict(_take(raw, "labels", dict, ""))
        if "escapedGroup" in labels:
            kw["escaped_group_label"] = _take(labels, "escapedGroup", str, "labels.")
        if "group" in labels:
            kw["group_label"] = _take(labels, "group", str, "labels.")
        if labels:
            raise ConfigError(f"labels: unknown keys {sorted(labels)}")
    if "credentials" in raw:
        creds = dict(_take(raw, "credentials", dict, ""))
        for key in ("tracking", "artifact"):
            if key in creds:
                kw[f"{key}_credentials"] = frozenset(_take(creds, key, list, "credentials."))
        if creds:
            raise ConfigError(f"credentials: unknown keys {sorted(creds)}")
    if "modelInit" in raw:
        kw["model_init"] = _model_init(raw.pop("modelInit"))
    if "missingSetting" in raw:
        kw["missing_setting"] = _take(raw, "missingSetting", str, "")
        if kw["missing_setting"] not in ("deny", "warn"):
            raise ConfigError("missingSetting: must be 'deny' or 'warn'")
    if "defaultNamespace" in raw:
        kw["default_namespace"] = _take(raw, "defaultNamespace", str, "")
    if "maxRequestBytes" in raw:
        kw["max_request_bytes"] = _take(raw, "maxRequestBytes", int, "")
        if kw["max_request_bytes"] < 64 * 1024:  # a pod's review is tens of KiB
            raise ConfigError("maxRequestBytes: must be at least 65536")
    if raw:
        raise ConfigError(f"unknown keys {sorted(raw)}")
    return Config(**kw)


def load_config(path: Path | None) -> Config:
    if path is None:
        return Config()
    try:
        raw = load_yaml(path) or {}
    except FileProblem as e:
        raise ConfigError(str(e)) from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    try:
        return parse_config(raw)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from e
