"""Pods as Kubernetes' own controllers make them (kube-controller-manager: tests/controllers.py),
in a team's namespace with a namespace-wide setting: a Job's, a CronJob's and a notebook
StatefulSet's pods are served with no label of ours, and MLflow's own client, started in such a
pod's environment, logs a run that names the Job. A Deployment's pods, which are not ours, stay
exactly as their ReplicaSet made them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster import Installed
from tests.conftest import Stores
from tests.controllers import controllers, made_pod
from tests.kubeflow import notebook_pod
from tests.podrun import run_tags
from tests.teams import env_of, team_namespace

pytestmark = pytest.mark.cluster
INJECTED = "mlflow.primehub.io/injected"
NAMESPACE = "team-batch"
TEMPLATE = {
    "spec": {
        "restartPolicy": "Never",
        "containers": [{"name": "train", "image": "python:3.11", "command": ["python", "t.py"]}],
    }
}


@pytest.fixture(scope="module")
def team(installed: Installed, stores: Stores) -> str:
    return team_namespace(installed, stores, NAMESPACE)


@pytest.fixture(scope="module")
def kcm(installed: Installed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    log = tmp_path_factory.mktemp("kcm") / "kube-controller-manager.log"
    with controllers(installed.cp, log):
        yield


def created(installed: Installed, team: str, kind: str, body: dict[str, Any]) -> None:
    plural = {"Job": "jobs", "CronJob": "cronjobs"}.get(kind)
    group = "apis/batch/v1" if plural else "apis/apps/v1"
    plural = plural or f"{kind.lower()}s"  # deployments, statefulsets
    path = f"/{group}/namespaces/{team}/{plural}"
    reply = installed.cp.request("POST", path, {"kind": kind, **body})
    assert reply.status_code == 201, reply.text


def test_a_job_s_pod_gets_the_namespace_s_setting_and_its_runs_name_the_job(
    installed: Installed, kcm: None, team: str, stores: Stores, tmp_path: Path
) -> None:
    created(
        installed,
        team,
        "Job",
        {
            "apiVersion": "batch/v1",
            "metadata": {"name": "nightly-train"},
            "spec": {"template": TEMPLATE},
        },
    )
    pod = made_pod(installed.cp, team, "batch.kubernetes.io/job-name=nightly-train", 30)
    meta = pod["metadata"]
    assert meta["annotations"][INJECTED] == f"{team}/everyone"
    # What the Job controller gave the pod is all there: its labels, owner and tracking finalizer.
    assert meta["labels"]["job-name"] == "nightly-train"
    assert "batch.kubernetes.io/controller-uid" in meta["labels"]
    assert meta["ownerReferences"][0]["kind"] == "Job"
    assert "batch.kubernetes.io/job-tracking" in meta["finalizers"]
    container = pod["spec"]["containers"][0]
    assert env_of(container)["MLFLOW_TRACKING_URI"] == stores.mlflow.url

    tags = run_tags(container, stores.mlflow.url, tmp_path, "root")
    assert tags["mlflow.primehub.io/namespace"] == team
    assert tags["mlflow.primehub.io/kind"] == "job"
    assert tags["mlflow.primehub.io/job"] == "nightly-train"


def test_a_cronjob_s_pods_get_the_namespace_s_setting(
    installed: Installed, kcm: None, team: str
) -> None:
    """The CronJob controller makes a Job at the next minute; its pod is served as any Job's
    (it names the Job, <cronjob>-<minute>: a pod carries no label naming its CronJob)."""
    cronjob = {
        "apiVersion": "batch/v1",
        "metadata": {"name": "hourly"},
        "spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": TEMPLATE}}},
    }
    created(installed, team, "CronJob", cronjob)
    selector = "batch.kubernetes.io/job-name"
    pod = made_pod(installed.cp, team, selector, 90, prefixed=f"{selector}=hourly-")
    job = pod["metadata"]["labels"]["batch.kubernetes.io/job-name"]
    assert job.startswith("hourly-")
    assert pod["metadata"]["annotations"][INJECTED] == f"{team}/everyone"
    tags = json.loads(env_of(pod["spec"]["containers"][0])["MLFLOW_RUN_CONTEXT"])
    assert tags["mlflow.primehub.io/job"] == job


def test_a_deployment_s_pods_which_are_not_ours_stay_as_their_replicaset_made_them(
    installed: Installed, kcm: None, team: str
) -> None:
    labels = {"app": "dashboard"}
    deployment = {
        "apiVersion": "apps/v1",
        "metadata": {"name": "dashboard"},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "web", "image": "nginx"}]},
            },
        },
    }
    created(installed, team, "Deployment", deployment)
    pod = made_pod(installed.cp, team, "app=dashboard", 30)
    assert INJECTED not in (pod["metadata"].get("annotations") or {})
    assert "env" not in pod["spec"]["containers"][0]
    assert set(pod["metadata"]["labels"]) == {"app", "pod-template-hash"}


def test_a_kubeflow_notebook_s_statefulset_makes_a_served_pod(
    installed: Installed, kcm: None, team: str, stores: Stores
) -> None:
    """The StatefulSet Kubeflow's notebook controller writes for a Notebook (its template as
    tests/kubeflow.py shapes it: that controller is not on the Go module proxy), its pod made by
    the real StatefulSet controller: named `<notebook>-0`, with the controller's own labels."""
    shaped = notebook_pod("lab", team, {})
    labels = {"statefulset": "lab", "notebook-name": "lab"}
    statefulset = {
        "apiVersion": "apps/v1",
        "metadata": {"name": "lab"},
        "spec": {
            "serviceName": "",
            "selector": {"matchLabels": {"statefulset": "lab"}},
            "template": {"metadata": {"labels": labels}, "spec": shaped["spec"]},
        },
    }
    created(installed, team, "StatefulSet", statefulset)
    pod = made_pod(installed.cp, team, "statefulset=lab", 30)
    assert pod["metadata"]["name"] == "lab-0"
    assert pod["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"] == "lab-0"
    assert pod["metadata"]["annotations"][INJECTED] == f"{team}/everyone"
    container = pod["spec"]["containers"][0]
    assert env_of(container)["MLFLOW_TRACKING_URI"] == stores.mlflow.url
    assert env_of(container)["NB_PREFIX"] == f"/notebook/{team}/lab"  # the controller's, kept
    tags = json.loads(env_of(container)["MLFLOW_RUN_CONTEXT"])
    assert tags["mlflow.primehub.io/notebook"] == "lab"
