"""One pod's answer: classify -> look up the group's setting -> mutate -> patch.

Pure apart from reading the index, so the server and `preview` give the same answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from webhook.config import Config
from webhook.inject import Denied, mutate
from webhook.patch import Op, make_patch
from webhook.pods import PodKind, classify, kind_of
from webhook.settings.index import Problem, SettingsIndex
from webhook.settings.model import NAMESPACE_KEY


@dataclass
class Decision:
    allowed: bool
    outcome: str  # injected | unchanged | ignored | no-setting | unsure | denied
    kind: PodKind = PodKind.NONE
    group: str = ""
    setting: str = ""
    pod: dict[str, Any] | None = None  # the mutated pod, when there is a patch
    patch: list[Op] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    message: str = ""


def decide(
    pod: dict[str, Any],
    namespace: str,
    index: SettingsIndex,
    config: Config,
    doubt: str | None = None,
) -> Decision:
    """`doubt`: why the index may lack a setting that exists (its source is failing). Then a
    pod it finds no setting for is `unsure`, an error for failurePolicy, never a confident "no
    setting": a notebook admitted bare keeps no MLflow for its whole life. A setting it does
    find is served, stale or not."""
    target = classify(pod, config)
    if target is None:
        return Decision(True, "ignored")
    decision = Decision(True, "unchanged", kind=target.kind, group=target.group)
    resolved = index.lookup(namespace, target.group_key) if target.group_key else None
    if resolved is None and not target.label_error:  # the namespace's setting, if any
        resolved = index.lookup(namespace, NAMESPACE_KEY)
    if resolved is None or isinstance(resolved, Problem):
        if target.label_error:
            why = target.label_error
        elif resolved is not None:
            why = resolved.message
        elif not target.group_key:
            why = (
                f"it has no group label ({config.escaped_group_label} or {config.group_label}), "
                f"and namespace {namespace!r} has no MLflowSetting without a group"
            )
        else:
            why = (
                f"no MLflowSetting for group {target.group!r} in namespace {namespace!r}, nor "
                "one without a group for the whole namespace"
            )
        if doubt and resolved is None and not target.label_error:
            decision.outcome = "unsure"
            decision.message = (
                f"mlflow webhook: cannot tell this pod's MLflow settings: {why}, as last listed, "
                f"but {doubt}, so one created since would be missed; try again once they are "
                "listed (within a minute)"
            )
            return decision
        return _unserved(decision, why, config)
    decision.setting = resolved.ref
    try:
        new, decision.warnings = mutate(pod, target, resolved, config, namespace)
    except Denied as e:
        decision.allowed, decision.outcome = False, "denied"
        decision.message = f"mlflow webhook: {e}"
        return decision
    decision.patch = make_patch(pod, new)
    if decision.patch:
        decision.outcome, decision.pod = "injected", new
    return decision


def on_error(pod: dict[str, Any], config: Config) -> Decision:
    """An unexpected error: a pod that would get a model must not start without it (the
    Deployment controller retries); any other pod starts, with a warning."""
    kind = kind_of(pod, config)
    if kind is PodKind.DEPLOYMENT:
        return Decision(
            False,
            "error",
            kind=kind,
            message="mlflow webhook: internal error while adding the model init container "
            "(logged); the pod is refused so it does not start without its model",
        )
    return Decision(
        True, "error", kind=kind, warnings=["mlflow webhook: internal error; MLflow not injected"]
    )


def _unserved(decision: Decision, why: str, config: Config) -> Decision:
    """A pod that looked like a target got nothing: say so, and stop a model deployment."""
    decision.outcome = "no-setting"
    if decision.kind is PodKind.DEPLOYMENT and config.missing_setting == "deny":
        decision.allowed, decision.outcome = False, "denied"
        decision.message = f"mlflow webhook: cannot deploy the model: {why}"
    else:
        decision.warnings.append(f"mlflow webhook: MLflow settings not injected: {why}")
    return decision
