"""Which pods the webhook serves, as what kind, for which group. Pure: labels in, target out."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from webhook.config import (
    ANNOTATION_INJECT,
    ANNOTATION_MODEL_URI,
    ANY_VALUE,
    LABEL_VALUE,
    Config,
    Labels,
)
from webhook.groups import escape_group, group_name


class PodKind(StrEnum):
    NOTEBOOK = "notebook"
    JOB = "job"
    DEPLOYMENT = "deployment"
    OTHER = "other"  # opted in with the group label
    NONE = "none"  # not ours


# A registered MLflow model (or logged model): the only URIs this project copies.
MODEL_SCHEME = "models:/"
# The init containers that platforms give a model server to download its model, by name; the
# first argument is the model's URI. Ours to serve when that is a `models:/` URI, left alone for
# any other (s3://, gs://, phfs://, pvc://...):
# - PrimeHub's PhDeployment (ee/controllers/phdeployment_controller.go in
#   InfuseAI/primehub-controller): replaced by our copier (inject/model_init.py);
PRIMEHUB_INITIALIZER = "model-storage-initializer"
# - KServe's predictor (its pod mutator, or its controller for `storageUris`; arguments URI,
#   folder, URI, folder...): it runs our copier by the ClusterStorageContainer of
#   manifests/components/kserve, and is completed in place (inject/kserve.py).
KSERVE_INITIALIZER = "storage-initializer"
MODEL_INITIALIZERS = (PRIMEHUB_INITIALIZER, KSERVE_INITIALIZER)
# KServe's pod mutator adds its initializer at pod creation, from this annotation: a pod that
# has it is a model deployment before that (our webhook may be called first; the API server
# calls it again once KServe changed the pod).
KSERVE_SOURCE_URI = "internal.serving.kserve.io/storage-initializer-sourceuri"


# Containers a platform puts beside the user's, which never run user code: they get no MLflow
# variable (credentials least of all) and no group volume. By the platform's label, the name its
# controller gives that container: Argo's executor (`wait`, which saves a step's outputs; its
# `init` is an init container, never served), KubeRay's autoscaler in a head pod.
PLATFORM_SIDECARS = (
    ("workflows.argoproj.io/workflow", "wait"),
    ("ray.io/cluster", "autoscaler"),
)
# A service mesh's proxy, which its own webhook adds to any pod (before or after ours: the API
# server calls ours again when it comes later).
MESH_PROXIES = frozenset({"istio-proxy", "linkerd-proxy"})


def user_containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    """The containers that may run user code: all but the platforms' sidecars above."""
    labels = (pod.get("metadata") or {}).get("labels") or {}
    skip = MESH_PROXIES.union(name for label, name in PLATFORM_SIDECARS if label in labels)
    containers = (pod.get("spec") or {}).get("containers") or []
    return [c for c in containers if c.get("name") not in skip]


def model_initializer(pod: dict[str, Any]) -> int | None:
    """Index among the init containers of a platform's initializer for a `models:/` URI."""
    for i, c in enumerate((pod.get("spec") or {}).get("initContainers") or []):
        args = c.get("args") or []
        if c["name"] in MODEL_INITIALIZERS and args and args[0].startswith(MODEL_SCHEME):
            return i
    return None


def kserve_pending(pod: dict[str, Any]) -> bool:
    """KServe's pod mutator will add a `models:/` initializer to this pod (it has not yet)."""
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    return str(annotations.get(KSERVE_SOURCE_URI, "")).startswith(MODEL_SCHEME)


def wants_model(pod: dict[str, Any]) -> bool:
    """The pod serves a registered model we must copy in: our annotation, a platform's
    `models:/` initializer, or KServe's annotation for one (the webhook configuration's
    matchConditions say the same in CEL: webhookconfig.py)."""
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    return (
        ANNOTATION_MODEL_URI in annotations
        or model_initializer(pod) is not None
        or kserve_pending(pod)
    )


@dataclass(frozen=True, slots=True)
class Target:
    kind: PodKind
    group_key: str  # escaped, as PrimeHub's label holds it; "" when the pod names no group
    group: str  # for messages: the plain name when known, else the label value
    label_error: str = ""  # why the group label cannot be used


def _selects(selector: Labels, labels: Labels) -> bool:
    return all(
        (key in labels) if value == ANY_VALUE else labels.get(key) == value
        for key, value in selector.items()
    )


def _matches(labels: Labels, selectors: tuple[Labels, ...]) -> bool:
    """Some selector matches: each of its labels the pod has with that value (any value for
    ANY_VALUE)."""
    return any(_selects(s, labels) for s in selectors)


def _opted_in(annotations: dict[str, Any]) -> bool:
    return str(annotations.get(ANNOTATION_INJECT, "")).lower() == "true"


def _opted_out(annotations: dict[str, Any]) -> bool:
    return str(annotations.get(ANNOTATION_INJECT, "")).lower() == "false"


def kind_of(pod: dict[str, Any], config: Config) -> PodKind:
    """The pod's kind by the configured selectors, before looking at groups."""
    meta = pod.get("metadata") or {}
    labels = meta.get("labels") or {}
    kinds = config.pod_kinds
    if _matches(labels, kinds.exclude):
        return PodKind.NONE
    if wants_model(pod):
        return PodKind.DEPLOYMENT  # of whichever platform (PrimeHub, KServe, our annotation)
    if _matches(labels, kinds.deployment):
        return PodKind.DEPLOYMENT
    if _matches(labels, kinds.notebook):
        return PodKind.NOTEBOOK
    if _matches(labels, kinds.job):
        return PodKind.JOB
    if config.group_label in labels or _opted_in(meta.get("annotations") or {}):
        return PodKind.OTHER
    return PodKind.NONE


def _has_group(labels: Labels, config: Config) -> bool:
    return config.escaped_group_label in labels or config.group_label in labels


def _served(pod: dict[str, Any], config: Config) -> bool:
    """A pod the webhook has something for: one of a group, of a served kind (it may get its
    namespace's setting), opted in, or needing a model copied in."""
    meta = pod.get("metadata") or {}
    labels = meta.get("labels") or {}
    kinds = config.pod_kinds
    return (
        _has_group(labels, config)
        or any(_matches(labels, s) for s in (kinds.deployment, kinds.notebook, kinds.job))
        or _opted_in(meta.get("annotations") or {})
        or wants_model(pod)
    )


class Route(StrEnum):
    """The entry of the webhook configuration a pod is sent to (webhookconfig.py)."""

    MODEL = "models"  # failurePolicy Fail: it needs a model copied in
    POD = "pods"  # failurePolicy Ignore


def route(pod: dict[str, Any], config: Config) -> Route | None:
    """Where the API server sends the pod, or None when it is not sent at all: the same rule
    as the CEL matchConditions of the webhook configuration (a test holds them equal)."""
    meta = pod.get("metadata") or {}
    labels = meta.get("labels") or {}
    if _opted_out(meta.get("annotations") or {}):
        return None
    if _matches(labels, config.pod_kinds.exclude):
        return None
    if not _served(pod, config):
        return None
    return Route.MODEL if wants_model(pod) else Route.POD


def classify(pod: dict[str, Any], config: Config) -> Target | None:
    """The pod's kind and group, or None when the webhook must leave it alone (no warning)."""
    meta = pod.get("metadata") or {}
    if _opted_out(meta.get("annotations") or {}):
        return None
    kind = kind_of(pod, config)
    if kind is PodKind.NONE:
        return None
    if kind is PodKind.DEPLOYMENT and not wants_model(pod):
        return None  # a deployment that does not serve a registered model needs nothing
    labels = meta.get("labels") or {}
    for label, plain in ((config.group_label, True), (config.escaped_group_label, False)):
        value = labels.get(label)
        if not value:
            continue
        if len(value) > 63 or not LABEL_VALUE.fullmatch(value):
            # Checked before any other work: no cache ever holds such a value.
            return Target(kind, "", "", f"its label {label} is not a valid label value")
        if plain:
            return Target(kind, escape_group(value), value)
        if not value.startswith("escaped-"):  # no setting's key looks otherwise (groups.py)
            return Target(
                kind,
                "",
                value,
                f"its label {label} is {value!r}, not a group name as PrimeHub writes it "
                f"(escaped-...); a plain group name goes in {config.group_label}",
            )
        return Target(kind, value, group_name(value))
    return Target(kind, "", "")
