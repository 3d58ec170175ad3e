"""One MLflow shared by teams, as Kubeflow's KEP-897 has it: the real MLflow 3.17.2 server with
`mlflow-kubernetes-plugins` (namespaces are workspaces; each request authorized by the real API
server from the caller's ServiceAccount token), two team namespaces each holding registered
model `iris` version 1 with different files, each served by one MLflowSetting with no group and
`trackingAuth: kubernetes-namespaced`. Model deployments of each namespace (ours, and KServe's
through its real manager) copy their own workspace's files with the token the webhook projects
into the copier alone; a ServiceAccount without the Role fails saying so; a token renewed while
a copy runs keeps it going; the copier from the image logs in as MLflow's own client does; a
run started in a notebook's environment lands in its team's workspace and nowhere else."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import requests

from tests.cluster import Installed, pod_file
from tests.kserve import KServe, kserve
from tests.podrun import project_identity, run_container, with_service_account
from tests.procs import wait_until
from tests.registry import Registered, sharded_model, tree
from tests.tcpproxy import TcpProxy
from tests.test_copy import clean_env
from tests.test_image import in_image, rootfs  # noqa: F401 (a fixture)
from tests.workspaces import (
    HEADER,
    TEAMS,
    SharedMlflow,
    register_in_workspace,
    service_account_token,
)
from webhook.inject.identity import SERVICE_ACCOUNT_DIR, VOLUME
from webhook.inject.model_init import INIT_CONTAINER
from webhook.pods import KSERVE_INITIALIZER

pytestmark = pytest.mark.cluster


def model_deployment(namespace: str, account: str = "default") -> dict[str, Any]:
    """A model deployment of the team (ours: the annotation), with no group label: the
    namespace's setting serves it. Its pod mounts no token of its own."""
    pod = pod_file("deployment", unique=True)
    pod["metadata"]["namespace"] = namespace
    del pod["metadata"]["labels"]["primehub.io/group"]
    pod["metadata"]["annotations"]["mlflow.primehub.io/model-uri"] = "models:/iris/1"
    pod["spec"]["serviceAccountName"] = account
    pod["spec"]["automountServiceAccountToken"] = False
    return pod


def copied_by(
    shared: SharedMlflow, pod: dict[str, Any], container: str, tmp: Path
) -> tuple[subprocess.CompletedProcess[str], Path]:
    """Runs the pod's copier as the API server stored it, its token projected as the kubelet
    projects it; returns the result and the model folder."""
    token = service_account_token(
        shared.cp, pod["metadata"]["namespace"], pod["spec"].get("serviceAccountName", "default")
    )
    folders = project_identity(pod, token, tmp / "projected")
    spec = pod["spec"]
    copier = next(c for c in spec["initContainers"] if c["name"] == container)
    mounts = {m["mountPath"]: m["name"] for m in copier["volumeMounts"]}
    assert mounts[SERVICE_ACCOUNT_DIR].startswith(VOLUME)
    dest = next(p for p, v in mounts.items() if p != SERVICE_ACCOUNT_DIR)
    folders[mounts[dest]] = tmp / "model"
    folders[mounts[dest]].mkdir()
    result = run_container(pod, container, [], folders, tmp / "termination")
    return result, folders[mounts[dest]]


def no_user_container_has_a_token(pod: dict[str, Any]) -> bool:
    return all(
        all(m["mountPath"] != SERVICE_ACCOUNT_DIR for m in c.get("volumeMounts") or [])
        for c in pod["spec"]["containers"]
    )


@pytest.mark.parametrize("namespace", TEAMS)
def test_a_model_deployment_copies_its_own_teams_model(
    shared: SharedMlflow, installed: Installed, tmp_path: Path, namespace: str
) -> None:
    pod = installed.created(model_deployment(namespace), namespace)
    assert no_user_container_has_a_token(pod)
    result, model = copied_by(shared, pod, INIT_CONTAINER, tmp_path)
    assert result.returncode == 0, result.stderr
    assert tree(model) == shared.models[namespace]
    assert f"mlflow-artifacts:/workspaces/{namespace}/" in result.stderr


def test_a_service_account_without_the_role_is_refused_and_named(
    shared: SharedMlflow, installed: Installed, tmp_path: Path
) -> None:
    pod = installed.created(model_deployment(TEAMS[0], "norole"), TEAMS[0])
    result, model = copied_by(shared, pod, INIT_CONTAINER, tmp_path)
    assert result.returncode == 4, result.stderr
    assert (tmp_path / "termination").read_text().strip() == (
        f"{TEAMS[0]}/norole may not read the registered model in MLflow workspace "
        f"'{TEAMS[0]}': an admin grants it a Role there on API group mlflow.kubeflow.org, "
        "resources registeredmodels and experiments, verbs get and list"
    )
    assert not any(model.iterdir())


@pytest.fixture(scope="module")
def ks(installed: Installed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KServe]:
    with kserve(installed.cp, tmp_path_factory.mktemp("kserve-shared")) as running:
        yield running


@pytest.mark.parametrize("namespace", TEAMS)
def test_a_kserve_predictor_copies_its_own_teams_model(
    shared: SharedMlflow, ks: KServe, tmp_path: Path, namespace: str
) -> None:
    """KServe's manager writes the predictor, its mutator adds the storage initializer (which
    runs our copier), our webhook gives it the namespace's MLflow and the pod's token."""
    isvc = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "iris"},
        "spec": {
            "predictor": {
                "serviceAccountName": "default",  # as the ServiceAccount admission plugin would
                "model": {
                    "modelFormat": {"name": "mlflow"},
                    "protocolVersion": "v2",
                    "storageUri": "models:/iris/1",
                },
            }
        },
    }
    ks.create(namespace, isvc)
    try:
        pod = ks.pod_made(namespace, "iris")
        assert no_user_container_has_a_token(pod)
        result, model = copied_by(shared, pod, KSERVE_INITIALIZER, tmp_path)
        assert result.returncode == 0, result.stderr
        assert tree(model) == shared.models[namespace]
    finally:
        ks.delete(namespace, "iris")


def copy_command(*extra: str) -> list[str]:
    return [sys.executable, "-m", "webhook", "copy-artifacts", *extra]


def test_a_token_renewed_while_the_copy_runs_keeps_it_going(
    shared: SharedMlflow, tmp_path: Path
) -> None:
    """The kubelet replaces the token file as it renews the token; the old one may stop working
    meanwhile (here: it dies with the Secret it is bound to). The copy, slowed by a throttled
    relay, reads the file again for every request and finishes with the new token."""
    cp, namespace = shared.cp, TEAMS[0]
    held = Registered()
    model = sharded_model(tmp_path / "sharded", 24, 1 << 20, seed=5)
    register_in_workspace(shared.server.url, namespace, "sharded", model, cp.admin_token, held)
    folder = tmp_path / "identity"
    folder.mkdir()
    old = service_account_token(cp, namespace, "default", bound_secret="copy-token")
    (folder / "token").write_text(old)
    (folder / "namespace").write_text(namespace)
    port = urlparse(shared.server.url).port
    assert port is not None
    relay = TcpProxy(("127.0.0.1", port), rate=1 << 20)  # 24 MB in about 24 s
    env = shared.pod_env(f"http://127.0.0.1:{relay.port}")
    dest = tmp_path / "models"
    with relay.run():
        proc = subprocess.Popen(
            with_service_account(folder, copy_command("models:/sharded/1", str(dest))),
            env=clean_env(**env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            wait_until(lambda: relay.received > 1 << 20, 60, "the copy under way")
            new = service_account_token(cp, namespace, "default")
            (folder / "token.new").write_text(new)
            os.replace(folder / "token.new", folder / "token")  # as the kubelet swaps it
            assert cp.request("DELETE", f"/api/v1/namespaces/{namespace}/secrets/copy-token").ok
            review = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
            body = {"spec": {"nonResourceAttributes": {"path": "/", "verb": "get"}}}

            def refused() -> bool:  # the API server no longer takes the old token
                return (
                    requests.post(
                        cp.url + review,
                        json=body,
                        headers={"Authorization": f"Bearer {old}"},
                        verify=cp.ca_file,
                        timeout=5,
                    ).status_code
                    == 401
                )

            wait_until(refused, 60, "the old token refused")
            assert proc.poll() is None, "the copy ended before the old token died"
            out, _ = proc.communicate(timeout=120)
        finally:
            proc.kill()
    assert proc.returncode == 0, out
    assert tree(dest) == held.versions["sharded"]["1"]


def test_the_image_logs_in_with_the_pods_identity_as_mlflows_client_does(
    shared: SharedMlflow,
    rootfs: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    """From the image (which has no `kubernetes` package), and MLflow's own client with
    mlflow[kubernetes], both with the same token and namespace where a pod has them."""
    namespace = TEAMS[1]
    folder = shared.identity(namespace, "default", tmp_path / "identity")
    env = shared.pod_env()
    image_tmp = tmp_path / "image-tmp"
    image_tmp.mkdir()
    command = ["mlflow-webhook", "copy-artifacts", "models:/iris/1", "/tmp/models"]
    ours = subprocess.run(
        in_image(rootfs, image_tmp, *command, env=env),
        env={**os.environ, "SERVICE_ACCOUNT_DIR": str(folder)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ours.returncode == 0, ours.stderr
    code = (
        "import sys, mlflow.artifacts\n"
        "mlflow.artifacts.download_artifacts(artifact_uri=sys.argv[1], dst_path=sys.argv[2])\n"
    )
    theirs = subprocess.run(
        with_service_account(
            folder, [sys.executable, "-c", code, "models:/iris/1", str(tmp_path / "theirs")]
        ),
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert theirs.returncode == 0, theirs.stderr
    assert tree(image_tmp / "models") == tree(tmp_path / "theirs") == shared.models[namespace]


def test_a_run_started_in_a_notebooks_environment_lands_in_its_teams_workspace(
    shared: SharedMlflow, installed: Installed, tmp_path: Path
) -> None:
    """A Kubeflow notebook of team A, as the webhook injects it (the namespace is its workspace):
    MLflow's own client logs a run there with the pod's token, and team B sees none of it."""
    namespace = TEAMS[0]
    notebook = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "analysis-0", "labels": {"notebook-name": "analysis"}},
        "spec": {"containers": [{"name": "analysis", "image": "jupyter/base-notebook"}]},
    }
    pod = installed.create(notebook, namespace, dry_run=True).json()
    env = {e["name"]: e["value"] for e in pod["spec"]["containers"][0]["env"]}
    assert env["MLFLOW_TRACKING_AUTH"] == "kubernetes-namespaced"
    assert "MLFLOW_WORKSPACE" not in env
    folder = shared.identity(namespace, "default", tmp_path / "identity")
    code = (
        "import mlflow\n"
        "mlflow.set_experiment('notebook-runs')\n"
        "with mlflow.start_run() as run:\n"
        "    mlflow.log_param('from', 'the notebook')\n"
        "print(run.info.run_id)\n"
    )
    result = subprocess.run(
        with_service_account(folder, [sys.executable, "-c", code]),
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    run_id = result.stdout.split()[-1]

    def runs(workspace: str) -> list[dict[str, Any]]:
        headers = {HEADER: workspace, "Authorization": f"Bearer {shared.cp.admin_token}"}
        api = f"{shared.server.url}/api/2.0/mlflow"
        found = requests.get(
            f"{api}/experiments/get-by-name",
            params={"experiment_name": "notebook-runs"},
            headers=headers,
            timeout=30,
        )
        if found.status_code == 404:
            return []
        experiment = found.json()["experiment"]["experiment_id"]
        body = {"experiment_ids": [experiment]}
        reply = requests.post(f"{api}/runs/search", json=body, headers=headers, timeout=30)
        listed: list[dict[str, Any]] = reply.json().get("runs", [])
        return listed

    mine = runs(namespace)
    assert [r["info"]["run_id"] for r in mine] == [run_id]
    tags = {t["key"]: t["value"] for t in mine[0]["data"]["tags"]}
    assert tags["mlflow.primehub.io/notebook"] == "analysis"
    assert runs(TEAMS[1]) == []


def copied_as(
    shared: SharedMlflow, folder: Path, dest: Path, **env: str
) -> tuple[subprocess.CompletedProcess[str], str]:
    """copy-artifacts of team A's iris with `folder` where the pod's identity is."""
    term = dest.parent / "termination"
    command = copy_command("models:/iris/1", str(dest), "--termination-message-path", str(term))
    result = subprocess.run(
        with_service_account(folder, command),
        env=clean_env(**{**shared.pod_env(), **env}),
        capture_output=True,
        text=True,
        timeout=300,
    )
    return result, term.read_text().strip() if term.exists() else ""


def test_a_token_the_api_server_no_longer_takes_is_named_and_nothing_is_copied(
    shared: SharedMlflow, tmp_path: Path
) -> None:
    namespace = TEAMS[0]
    folder = tmp_path / "identity"
    folder.mkdir()
    token = service_account_token(shared.cp, namespace, "default", bound_secret="gone-token")
    (folder / "token").write_text(token)
    (folder / "namespace").write_text(namespace)
    assert shared.cp.request("DELETE", f"/api/v1/namespaces/{namespace}/secrets/gone-token").ok
    review = {"spec": {"nonResourceAttributes": {"path": "/", "verb": "get"}}}
    wait_until(
        lambda: (
            requests.post(
                f"{shared.cp.url}/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
                json=review,
                headers={"Authorization": f"Bearer {token}"},
                verify=shared.cp.ca_file,
                timeout=5,
            ).status_code
            == 401
        ),
        60,
        "the token refused",
    )
    result, term = copied_as(shared, folder, tmp_path / "models")
    assert result.returncode == 4, result.stderr
    assert term == (
        f"the group's MLflow server refused the token of {namespace}/default "
        "(MLFLOW_TRACKING_AUTH=kubernetes-namespaced): expired, or not one the cluster's API "
        "server issued"
    )
    assert token not in result.stderr + term
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").iterdir())


def test_a_server_that_wants_a_workspace_named_says_so_when_none_is(
    shared: SharedMlflow, tmp_path: Path
) -> None:
    """`kubernetes` (not `-namespaced`) and no workspace: the plugin's server answers 400."""
    folder = shared.identity(TEAMS[0], "default", tmp_path / "identity")
    result, term = copied_as(shared, folder, tmp_path / "models", MLFLOW_TRACKING_AUTH="kubernetes")
    assert result.returncode == 2, result.stderr
    assert term.startswith(
        "the group's MLflow server serves workspaces and wants one named, and the pod names none"
    ), term
    assert term.endswith(
        "set workspace (or trackingAuth: kubernetes-namespaced) in the MLflowSetting"
    )
