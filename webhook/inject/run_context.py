"""Who ran what: `MLFLOW_RUN_CONTEXT`, the JSON of tags MLflow's client gives every run it
starts, after its own defaults (mlflow/tracking/context/registry.py). Without it, every run of a
group is its shared tracking login's (MLflow's `mlflow.user` takes MLFLOW_TRACKING_USERNAME
first), or `jovyan`'s or `root`'s: nobody can tell which member ran what. With it, `mlflow.user`
is the platform's user of the pod (where one is known), and tags name the group or the
namespace, the pod's kind and its notebook, job or deployment. Tags a run is given in code
still win (`mlflow.start_run(tags=...)`), and a pod that sets the variable itself keeps its own.
"""

from __future__ import annotations

import json
from typing import Any

from webhook import PREFIX
from webhook.groups import group_name
from webhook.pods import PodKind, Target
from webhook.settings.model import EnvVar

RUN_CONTEXT = "MLFLOW_RUN_CONTEXT"

# Who the platform says the pod's user is, first found first: JupyterHub's KubeSpawner (the
# name as the hub knows it), then PrimeHub's label (escaped). Kubeflow's notebook controller
# copies no annotation whose name holds "notebook" to the pod (generateStatefulSet in
# kubeflow/notebooks), its creator's among them: its pods name no user.
USER_ANNOTATIONS = ("hub.jupyter.org/username",)
PRIMEHUB_USER_LABEL = "primehub.io/user"
# The workload a pod belongs to, by the label its controller gives it, first found first.
WORKLOAD_LABELS = (
    "notebook-name",  # Kubeflow's notebooks
    "training.kubeflow.org/job-name",  # Kubeflow's Training Operator
    "batch.kubernetes.io/job-name",  # Kubernetes Jobs (a CronJob's: <cronjob>-<minute>)
    "workflows.argoproj.io/workflow",  # Argo Workflows (a Kubeflow Pipelines run's workflow)
    "ray.io/cluster",  # KubeRay (a RayJob's cluster: <rayjob>-<suffix>)
    "spark-app-name",  # Spark on Kubernetes (spark.app.name)
    "serving.kserve.io/inferenceservice",  # KServe
    "primehub.io/phdeployment",  # PrimeHub's deployments
)


def platform_user(meta: dict[str, Any]) -> str | None:
    annotations = meta.get("annotations") or {}
    for key in USER_ANNOTATIONS:
        if annotations.get(key):
            return str(annotations[key])
    escaped = (meta.get("labels") or {}).get(PRIMEHUB_USER_LABEL)
    return group_name(escaped) if escaped else None  # the same escaping as groups


def workload(meta: dict[str, Any]) -> str | None:
    labels = meta.get("labels") or {}
    for key in WORKLOAD_LABELS:
        if labels.get(key):
            return str(labels[key])
    name = meta.get("name") or str(meta.get("generateName") or "").rstrip("-")
    return str(name) or None


def run_context(pod: dict[str, Any], target: Target, namespace: str) -> EnvVar:
    """The variable for the pod's containers."""
    meta = pod.get("metadata") or {}
    tags: dict[str, str] = {PREFIX + "namespace": namespace, PREFIX + "kind": target.kind.value}
    if target.group:
        tags[PREFIX + "group"] = target.group
    if (user := platform_user(meta)) is not None:
        tags["mlflow.user"] = user
    if target.kind is not PodKind.OTHER and (name := workload(meta)) is not None:
        tags[PREFIX + target.kind.value] = name
    return {"name": RUN_CONTEXT, "value": json.dumps(tags, sort_keys=True, separators=(",", ":"))}
