"""Which pods the webhook serves, as what kind, for which group. Pure: labels in, target out."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from webhook.config import ANNOTATION_INJECT, ANNOTATION_MODEL_URI, Config, Labels
from webhook.groups import escape_group, group_name


class PodKind(StrEnum):
    NOTEBOOK = "notebook"
    JOB = "job"
    DEPLOYMENT = "deployment"
    OTHER = "other"  # opted in with the group label
    NONE = "none"  # not ours


# A label value Kubernetes accepts; anything else is refused by the API server after admission.
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")

# The init container PrimeHub's controller gives a PhDeployment (ee/controllers/
# phdeployment_controller.go in InfuseAI/primehub-controller); for a registered MLflow model its
# first argument is the `models:/` URI, for other URIs (s3://, gs://, phfs://...) it is not ours.
PRIMEHUB_INITIALIZER = "model-storage-initializer"


def primehub_initializer(pod: dict[str, Any]) -> int | None:
    """Index among the init containers of PrimeHub's initializer for a `models:/` URI."""
    for i, c in enumerate((pod.get("spec") or {}).get("initContainers") or []):
        args = c.get("args") or []
        if c["name"] == PRIMEHUB_INITIALIZER and args and args[0].startswith("models:/"):
            return i
    return None


def wants_model(pod: dict[str, Any]) -> bool:
    """The pod serves a registered model we must copy in: our annotation, or PrimeHub's
    `models:/` initializer (the webhook configuration's matchConditions say the same in CEL)."""
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    return ANNOTATION_MODEL_URI in annotations or primehub_initializer(pod) is not None


@dataclass(frozen=True, slots=True)
class Target:
    kind: PodKind
    group_key: str  # escaped, as PrimeHub's label holds it; "" when the pod names no group
    group: str  # for messages: the plain name when known, else the label value
    label_error: str = ""  # why the group label cannot be used


def _matches(labels: Labels, selectors: tuple[Labels, ...]) -> bool:
    """Some selector's labels are all among the pod's (a subset test of the items, in C)."""
    items = labels.items()
    return any(s.items() <= items for s in selectors)


def kind_of(pod: dict[str, Any], config: Config) -> PodKind:
    """The pod's kind by the configured selectors, before looking at groups."""
    meta = pod.get("metadata") or {}
    labels = meta.get("labels") or {}
    kinds = config.pod_kinds
    if _matches(labels, kinds.exclude):
        return PodKind.NONE
    if _matches(labels, kinds.deployment):
        return PodKind.DEPLOYMENT
    if _matches(labels, kinds.notebook):
        return PodKind.NOTEBOOK
    if _matches(labels, kinds.job):
        return PodKind.JOB
    if config.group_label in labels:
        return PodKind.DEPLOYMENT if wants_model(pod) else PodKind.OTHER
    return PodKind.NONE


class Route(StrEnum):
    """The entry of the webhook configuration a pod is sent to (webhookconfig.py)."""

    MODEL = "models"  # failurePolicy Fail: it needs a model copied in
    POD = "pods"  # failurePolicy Ignore


def route(pod: dict[str, Any], config: Config) -> Route | None:
    """Where the API server sends the pod, or None when it is not sent at all: the same rule
    as the CEL matchConditions of the webhook configuration (a test holds them equal)."""
    meta = pod.get("metadata") or {}
    labels = meta.get("labels") or {}
    annotations = meta.get("annotations") or {}
    if str(annotations.get(ANNOTATION_INJECT, "")).lower() == "false":
        return None
    if _matches(labels, config.pod_kinds.exclude):
        return None
    if config.escaped_group_label not in labels and config.group_label not in labels:
        return None
    return Route.MODEL if wants_model(pod) else Route.POD


def classify(pod: dict[str, Any], config: Config) -> Target | None:
    """The pod's kind and group, or None when the webhook must leave it alone (no warning)."""
    meta = pod.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    if str(annotations.get(ANNOTATION_INJECT, "")).lower() == "false":
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
        if len(value) > 63 or not _LABEL_VALUE.fullmatch(value):
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
