"""Pods of the batch engines teams train with, made by the engines' own programs
(tests/engines.py) in a team's namespace with a namespace-wide setting: an Argo Workflow's step,
a RayCluster's head and workers, a Spark driver and its executors are served with no label of
ours, the variables going to the containers that run user code and not to the platforms'
sidecars (Argo's executor, Ray's autoscaler), and a run MLflow's own client starts in such a
pod's environment names the workload."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster import Installed
from tests.conftest import Stores
from tests.controllers import made_pod, pods_of
from tests.engines import argo, kuberay, spark_submit
from tests.podrun import run_tags
from tests.procs import stop, wait_until
from tests.teams import env_of, team_namespace

pytestmark = pytest.mark.cluster
INJECTED = "mlflow.primehub.io/injected"
NAMESPACE = "team-engines"


@pytest.fixture(scope="module")
def team(installed: Installed, stores: Stores) -> str:
    return team_namespace(installed, stores, NAMESPACE)


@pytest.fixture(scope="module")
def workflows(installed: Installed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    with argo(installed.cp, tmp_path_factory.mktemp("argo") / "workflow-controller.log"):
        yield


@pytest.fixture(scope="module")
def ray(installed: Installed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    with kuberay(installed.cp, tmp_path_factory.mktemp("kuberay") / "ray-operator.log"):
        yield


def create(installed: Installed, path: str, body: dict[str, Any]) -> None:
    reply = installed.cp.request("POST", path, body)
    assert reply.status_code == 201, reply.text


def containers(pod: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in pod["spec"]["containers"]}


def test_an_argo_workflow_s_step_gets_the_setting_in_its_main_container_only(
    installed: Installed, workflows: None, team: str, stores: Stores, tmp_path: Path
) -> None:
    workflow = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": "train-pipeline"},
        "spec": {
            "entrypoint": "train",
            "templates": [
                {
                    "name": "train",
                    "container": {"image": "python:3.11", "command": ["python", "train.py"]},
                }
            ],
        },
    }
    create(installed, f"/apis/argoproj.io/v1alpha1/namespaces/{team}/workflows", workflow)
    pod = made_pod(installed.cp, team, "workflows.argoproj.io/workflow=train-pipeline", 60)
    assert pod["metadata"]["annotations"][INJECTED] == f"{team}/everyone"
    made = containers(pod)
    assert set(made) == {"wait", "main"}
    assert env_of(made["main"])["MLFLOW_TRACKING_URI"] == stores.mlflow.url
    # Argo's executor saves the step's outputs: no MLflow variable, no credential for it.
    assert not any(name.startswith("MLFLOW_") for name in env_of(made["wait"]))
    assert [c["name"] for c in pod["spec"]["initContainers"]] == ["init"]
    assert not any(n.startswith("MLFLOW_") for n in env_of(pod["spec"]["initContainers"][0]))

    tags = run_tags(made["main"], stores.mlflow.url, tmp_path, "root")
    assert tags["mlflow.primehub.io/kind"] == "job"
    assert tags["mlflow.primehub.io/job"] == "train-pipeline"
    assert tags["mlflow.primehub.io/namespace"] == team


def test_a_ray_cluster_s_head_and_workers_get_the_setting_and_the_autoscaler_none(
    installed: Installed, ray: None, team: str, stores: Stores, tmp_path: Path
) -> None:
    def group(command: str) -> dict[str, Any]:
        return {
            "spec": {
                "containers": [
                    {"name": "ray", "image": "rayproject/ray:2.46.0", "command": [command]}
                ]
            }
        }

    cluster = {
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": {"name": "tune"},
        "spec": {
            "enableInTreeAutoscaling": True,
            "headGroupSpec": {"rayStartParams": {}, "template": group("head")},
            "workerGroupSpecs": [
                {
                    "groupName": "cpu",
                    "replicas": 1,
                    "minReplicas": 1,
                    "maxReplicas": 2,
                    "rayStartParams": {},
                    "template": group("worker"),
                }
            ],
        },
    }
    create(installed, f"/apis/ray.io/v1/namespaces/{team}/rayclusters", cluster)

    def both() -> dict[str, dict[str, Any]] | None:
        pods = pods_of(installed.cp, team, "ray.io/cluster=tune")
        found = {p["metadata"]["labels"]["ray.io/node-type"]: p for p in pods}
        return found if {"head", "worker"} <= set(found) else None

    pods = wait_until(both, 60, "the head and worker pods")
    head, worker = containers(pods["head"]), containers(pods["worker"])
    assert set(head) == {"ray", "autoscaler"}
    assert env_of(head["ray"])["MLFLOW_TRACKING_URI"] == stores.mlflow.url
    assert env_of(worker["ray"])["MLFLOW_TRACKING_URI"] == stores.mlflow.url
    assert not any(name.startswith("MLFLOW_") for name in env_of(head["autoscaler"]))

    tags = run_tags(head["ray"], stores.mlflow.url, tmp_path, "ray")
    assert tags["mlflow.primehub.io/job"] == "tune"
    assert tags["mlflow.primehub.io/kind"] == "job"


def test_a_spark_driver_made_by_spark_submit_gets_the_setting(
    installed: Installed, clients: Path, team: str, stores: Stores, tmp_path: Path
) -> None:
    """Cluster mode: spark-submit creates the driver pod (and returns at once)."""
    submit = spark_submit(
        installed.cp, clients, team, "cluster", "local:///opt/app/features.py", tmp_path / "log"
    )
    try:
        assert submit.wait(300) == 0, (tmp_path / "log").read_text()[-3000:]
    finally:
        stop(submit)
    pod = made_pod(installed.cp, team, "spark-role=driver", 30)
    assert pod["metadata"]["annotations"][INJECTED] == f"{team}/everyone"
    driver = pod["spec"]["containers"][0]
    assert env_of(driver)["MLFLOW_TRACKING_URI"] == stores.mlflow.url
    assert "SPARK_APPLICATION_ID" in env_of(driver)  # Spark's own, kept
    tags = run_tags(driver, stores.mlflow.url, tmp_path, "spark")
    assert tags["mlflow.primehub.io/job"] == "features"


def test_spark_executors_made_by_the_driver_get_the_setting(
    installed: Installed, clients: Path, team: str, stores: Stores, tmp_path: Path
) -> None:
    """Client mode: the driver runs here and asks the API server for an executor pod, which it
    makes from its own executor template."""
    app = tmp_path / "app.py"
    app.write_text(
        "import time\nfrom pyspark.sql import SparkSession\n"
        "SparkSession.builder.getOrCreate()\ntime.sleep(600)\n"
    )
    driver = spark_submit(installed.cp, clients, team, "client", str(app), tmp_path / "log")
    try:
        pods = wait_until(
            lambda: pods_of(installed.cp, team, "spark-role=executor"),
            180,
            "an executor pod",
            driver,
        )
    finally:
        stop(driver)
    pod = pods[0]
    assert pod["metadata"]["annotations"][INJECTED] == f"{team}/everyone"
    executor = pod["spec"]["containers"][0]
    assert env_of(executor)["MLFLOW_TRACKING_URI"] == stores.mlflow.url
    tags = json.loads(env_of(executor)["MLFLOW_RUN_CONTEXT"])
    assert tags["mlflow.primehub.io/job"] == "features"


def test_a_rayjob_s_cluster_gets_the_setting(
    installed: Installed, ray: None, team: str, stores: Stores
) -> None:
    """The operator makes a RayCluster for the RayJob (named after it) and its pods; the
    entrypoint runs on the head, whose environment is the one that matters. (Its submitter, a
    Kubernetes Job, waits for the cluster to be ready, which it never is here.)"""
    job = {
        "apiVersion": "ray.io/v1",
        "kind": "RayJob",
        "metadata": {"name": "sweep"},
        "spec": {
            "entrypoint": "python sweep.py",
            "rayClusterSpec": {
                "headGroupSpec": {
                    "rayStartParams": {},
                    "template": {
                        "spec": {"containers": [{"name": "ray", "image": "rayproject/ray:2.46.0"}]}
                    },
                }
            },
        },
    }
    create(installed, f"/apis/ray.io/v1/namespaces/{team}/rayjobs", job)
    selector = "ray.io/node-type=head"
    pod = made_pod(installed.cp, team, selector, 60, prefixed="ray.io/cluster=sweep-")
    assert pod["metadata"]["annotations"][INJECTED] == f"{team}/everyone"
    head = containers(pod)["ray"]
    assert env_of(head)["MLFLOW_TRACKING_URI"] == stores.mlflow.url
    tags = json.loads(env_of(head)["MLFLOW_RUN_CONTEXT"])
    # No label of the pod names the RayJob: the tag names its cluster, <rayjob>-<suffix>.
    assert tags["mlflow.primehub.io/job"] == pod["metadata"]["labels"]["ray.io/cluster"]
