"""Injection rules: pure functions from (pod, setting, config) to the mutated pod.

One module per thing injected (env, volumes, model init container); `mutate` composes them.
Each rule only adds what is missing, so applying `mutate` twice equals applying it once.
"""

from __future__ import annotations

import marshal
from typing import Any

from webhook.config import ANNOTATION_INJECTED, Config
from webhook.inject.env import EnvGroup, container_env_plan, inject_container_env
from webhook.inject.errors import Denied
from webhook.inject.model_init import add_model_init
from webhook.inject.mounts import mount_setting_volumes
from webhook.inject.run_context import run_context
from webhook.pods import PodKind, Target, user_containers
from webhook.settings.model import MLflowSetting

Pod = dict[str, Any]

__all__ = ["Denied", "clone", "mutate"]


def clone(obj: Pod) -> Pod:
    """Deep copy of JSON data; marshal is several times faster than copy.deepcopy here."""
    result: Pod = marshal.loads(marshal.dumps(obj))
    return result


def mutate(
    pod: Pod, target: Target, setting: MLflowSetting, config: Config, namespace: str
) -> tuple[Pod, list[str]]:
    """A new pod with the setting injected, and warnings for its owner; raises Denied when the
    pod must not start."""
    # Rules change the spec in place and replace the annotations; everything else (the
    # managedFields, the status) is shared with `pod`, so neither copied nor walked by the diff.
    spec = clone(pod.get("spec") or {})
    new = {**pod, "metadata": dict(pod.get("metadata") or {}), "spec": spec}
    annotations = new["metadata"].get("annotations") or {}
    if target.kind is PodKind.DEPLOYMENT:
        warnings = add_model_init(new, setting, config)
    else:
        who = EnvGroup((run_context(pod, target, namespace),), ())
        plan = (*container_env_plan(setting, config), who)
        served = user_containers(new)  # of `spec`: changed in place below
        for container in served:
            inject_container_env(container, plan)
        warnings = mount_setting_volumes(spec, setting, served, read_only=False)
        if setting.tracking_auth is not None and spec.get("automountServiceAccountToken") is False:
            warnings.append(
                "the pod does not mount its ServiceAccount token (automountServiceAccountToken: "
                "false), with which MLflow's client logs in here (MLFLOW_TRACKING_AUTH="
                f"{setting.tracking_auth}): its runs cannot reach the tracking server"
            )
    if new != pod:
        new["metadata"]["annotations"] = {**annotations, ANNOTATION_INJECTED: setting.ref}
    return new, [f"mlflow webhook: {w}" for w in warnings]
