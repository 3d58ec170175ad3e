"""Kubeflow-style tenancy: one namespace per team, pods with no group label, an MLflowSetting
that names no group for the whole namespace. Pods made by Kubeflow's own Training Operator
(running against the real API server: tests/kubeflow.py), notebook pods as Kubeflow's notebook
controller makes them, pods a PodDefault already gave MLflow variables, and the namespace's
setting as the API server, the validating webhook and `kubectl get` see it."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator

import pytest
import requests

from tests.cluster import Installed
from tests.conftest import Stores
from tests.kubeflow import PYTORCHJOBS, job_pods, notebook_pod, pytorchjob, training_operator
from tests.procs import wait_until
from tests.reviews import pod_review
from tests.teams import GROUP, TEAM, env_of, model_pod, team_namespace

pytestmark = pytest.mark.cluster
INJECTED = "mlflow.primehub.io/injected"


@pytest.fixture(scope="module")
def team(installed: Installed, stores: Stores) -> str:
    return team_namespace(installed, stores)


@pytest.fixture(scope="module")
def operator(installed: Installed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    with training_operator(installed.cp, tmp_path_factory.mktemp("training-operator")):
        yield


def second_pass(installed: Installed, pod: dict[str, object], namespace: str) -> dict[str, object]:
    """Our webhook's answer for a pod as the API server stored it."""
    review = pod_review(pod, namespace=namespace)
    answer: dict[str, object] = requests.post(
        f"{installed.webhook.url}/mutate", json=review, verify=installed.trusted_ca(), timeout=10
    ).json()["response"]
    return answer


def test_every_pod_of_a_pytorchjob_gets_the_namespace_s_setting(
    installed: Installed, operator: None, team: str, stores: Stores
) -> None:
    reply = installed.cp.request("POST", PYTORCHJOBS.format(namespace=team), pytorchjob("mnist"))
    assert reply.status_code == 201, reply.text
    pods = job_pods(installed.cp, team, "mnist", 2)
    assert {p["metadata"]["labels"]["training.kubeflow.org/replica-type"] for p in pods} == {
        "master",
        "worker",
    }
    for pod in pods:
        assert pod["metadata"]["annotations"][INJECTED] == f"{team}/everyone", pod["metadata"]
        env = env_of(pod["spec"]["containers"][0])
        assert env["MLFLOW_TRACKING_URI"] == stores.mlflow.url
        assert "MASTER_ADDR" in env and "WORLD_SIZE" in env  # the operator's own, kept
        tags = json.loads(env["MLFLOW_RUN_CONTEXT"])
        assert tags["mlflow.primehub.io/job"] == "mnist"
        assert tags["mlflow.primehub.io/kind"] == "job"
        for init in pod["spec"].get("initContainers") or []:  # the worker's init-pytorch
            assert "MLFLOW_TRACKING_URI" not in env_of(init)
        answer = second_pass(installed, pod, team)
        assert answer["allowed"] and "patch" not in answer
    installed.cp.request("DELETE", PYTORCHJOBS.format(namespace=team) + "/mnist")


def test_a_kubeflow_notebook_gets_the_namespace_s_setting(
    installed: Installed, team: str, stores: Stores
) -> None:
    pod = notebook_pod("analysis", team, {"app": "analysis"})
    stored = installed.create(pod, team, dry_run=True).json()
    assert stored["metadata"]["annotations"][INJECTED] == f"{team}/everyone"
    env = env_of(stored["spec"]["containers"][0])
    assert env["MLFLOW_TRACKING_URI"] == stores.mlflow.url
    assert env["NB_PREFIX"] == f"/notebook/{team}/analysis"
    tags = json.loads(env["MLFLOW_RUN_CONTEXT"])
    assert tags["mlflow.primehub.io/notebook"] == "analysis"
    assert "mlflow.user" not in tags  # the controller passes no user to the pod


def test_values_a_poddefault_gave_are_kept_and_no_pod_is_refused(
    installed: Installed, team: str
) -> None:
    """Kubeflow's admission webhook (PodDefault) writes its values into the pod and marks it
    with an annotation: each value it set stays as it is, ours are added beside, and the pod is
    admitted; the same for a model pod that a PodDefault gave a tracking URI."""
    pod = notebook_pod("legacy", team, {"mlflow": "true"})
    pod["metadata"]["annotations"]["poddefault.admission.kubeflow.org/poddefault-mlflow"] = "1"
    pod["spec"]["containers"][0]["env"] += [
        {"name": "MLFLOW_TRACKING_URI", "value": "http://old-mlflow:5000"},
        {"name": "MLFLOW_TRACKING_USERNAME", "value": "team"},
    ]
    reply = installed.create(pod, team, dry_run=True)
    assert reply.status_code == 201, reply.text
    env = env_of(reply.json()["spec"]["containers"][0])
    assert env["MLFLOW_TRACKING_URI"] == "http://old-mlflow:5000"
    assert env["MLFLOW_TRACKING_USERNAME"] == "team"
    assert "MLFLOW_UI_URL" in env  # added where the PodDefault set nothing


NAMESPACE_WIDE = """
apiVersion: mlflow.primehub.io/v1alpha1
kind: MLflowSetting
metadata: {name: second, namespace: team-ml}
spec: {trackingUri: "http://other:5000"}
"""


def test_a_second_setting_without_a_group_is_refused_naming_the_first(
    installed: Installed, team: str
) -> None:
    refused = installed.apply(NAMESPACE_WIDE)
    assert refused.returncode != 0
    assert f"namespace {TEAM} has a setting with no group already by {TEAM}/everyone" in (
        refused.stderr
    )


def test_the_namespace_s_setting_says_so_in_its_status_and_in_kubectl_get(
    installed: Installed, team: str
) -> None:
    path = f"/apis/mlflow.primehub.io/v1alpha1/namespaces/{team}/mlflowsettings/everyone"

    def ready() -> str | None:
        status = installed.cp.request("GET", path).json().get("status") or {}
        conditions = status.get("conditions") or [{}]
        return conditions[0].get("message") if conditions[0].get("status") == "True" else None

    message = wait_until(ready, 30, "the status")
    assert message == f"serving namespace {team} (pods whose group has no setting of its own)"
    listed = installed.cp.kubectl("get", "mlflowsettings", "-n", team).stdout.splitlines()
    header = listed[0]
    group = slice(header.index("GROUP"), header.index("TRACKING URI"))
    rows = {line.split()[0]: line for line in listed[1:]}
    assert rows["everyone"][group].strip() == ""  # GROUP blank: the namespace's setting
    assert rows["vision"][group].strip() == GROUP


def test_a_model_deployment_of_a_team_gets_its_model_from_the_namespace_s_setting(
    installed: Installed, team: str, stores: Stores
) -> None:
    pod = model_pod("models:/fraud/1")
    stored = installed.create(copy.deepcopy(pod), team, dry_run=True).json()
    assert stored["metadata"]["annotations"][INJECTED] == f"{team}/everyone"
    init = stored["spec"]["initContainers"][-1]
    assert init["command"][:3] == ["mlflow-webhook", "copy-artifacts", "models:/fraud/1"]
    assert env_of(init)["MLFLOW_TRACKING_URI"] == stores.mlflow.url
