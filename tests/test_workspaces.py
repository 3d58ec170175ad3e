"""copy-artifacts and the doctor against one MLflow shared by teams, with MLflow's built-in
workspaces (MLflow >= 3.10, the real 3.17.2 server with --enable-workspaces): workspaces `default`
and `team-a` each hold registered model `iris` version 1, with different files. The copier must
copy the workspace the pod names, exactly what MLflow's own download copies with the same
environment (run side by side on the same server), and fail with a clear sentence, never exit 0,
where the workspace cannot be used (before, it sent no workspace and copied `default`'s files);
the doctor says whether the workspace exists."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.cluster import Installed, pod_file
from tests.conftest import Stores
from tests.podrun import run_container
from tests.registry import Registered, make_model_dir, tree
from tests.servers import Mlflow
from tests.test_copy import clean_env, copy
from tests.test_doctor import check, lines
from tests.workspaces import create_workspace, register_in_workspace, workspace_server
from webhook.groups import escape_group
from webhook.inject.model_init import INIT_CONTAINER

pytestmark = pytest.mark.mlflow


@dataclass(frozen=True)
class Builtin:
    server: Mlflow
    models: Registered  # name -> version -> files, per workspace (models of `default` as "iris")


@pytest.fixture(scope="module")
def builtin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Builtin]:
    tmp = tmp_path_factory.mktemp("workspaces")
    with workspace_server(tmp / "server") as server:
        create_workspace(server.url, "team-a")
        models = Registered()
        default, team = Registered(), Registered()
        register_in_workspace(
            server.url, "default", "iris", make_model_dir(tmp / "d", 1), None, default
        )
        register_in_workspace(
            server.url, "team-a", "iris", make_model_dir(tmp / "a", 2), None, team
        )
        models.versions["default/iris"] = default.versions["iris"]
        models.versions["team-a/iris"] = team.versions["iris"]
        assert models.versions["default/iris"]["1"] != models.versions["team-a/iris"]["1"]
        yield Builtin(server, models)


def mlflow_download(uri: str, dest: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """MLflow's own client, in a process with only this environment (as the copier runs)."""
    code = (
        "import sys, mlflow.artifacts\n"
        "mlflow.artifacts.download_artifacts(artifact_uri=sys.argv[1], dst_path=sys.argv[2])\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code, uri, str(dest)],
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize(("workspace", "held"), [("team-a", "team-a"), (None, "default")])
def test_the_copier_copies_the_workspace_the_pod_names_as_mlflow_does(
    builtin: Builtin, tmp_path: Path, workspace: str | None, held: str
) -> None:
    env = {"MLFLOW_TRACKING_URI": builtin.server.url}
    if workspace is not None:
        env["MLFLOW_WORKSPACE"] = workspace
    result, _ = copy("models:/iris/1", tmp_path / "ours", env)
    assert result.returncode == 0, result.stderr
    theirs = mlflow_download("models:/iris/1", tmp_path / "theirs", env)
    assert theirs.returncode == 0, theirs.stderr
    assert tree(tmp_path / "ours") == tree(tmp_path / "theirs")
    assert tree(tmp_path / "ours") == builtin.models.versions[f"{held}/iris"]["1"]
    assert f"mlflow-artifacts:/workspaces/{held}/" in result.stderr


def test_a_workspace_that_does_not_exist_is_named_and_nothing_is_copied(
    builtin: Builtin, tmp_path: Path
) -> None:
    env = {"MLFLOW_TRACKING_URI": builtin.server.url, "MLFLOW_WORKSPACE": "team-nope"}
    result, term = copy("models:/iris/1", tmp_path / "models", env, "--timeout", "30")
    assert result.returncode == 3, result.stderr
    assert term.strip() == (
        "MLflow workspace 'team-nope' (MLFLOW_WORKSPACE) does not exist on the group's MLflow "
        "server"
    )
    assert not any((tmp_path / "models").iterdir())


def test_a_workspace_named_to_a_server_without_workspaces_is_a_usage_error(
    stores: Stores, tmp_path: Path
) -> None:
    """The server answers FEATURE_DISABLED with HTTP 500: before, the copier took it for a
    passing fault and retried until its time was up (exit 6)."""
    env = {**stores.mlflow.env, "MLFLOW_WORKSPACE": "team-a"}
    result, term = copy("models:/churn%20model/1", tmp_path / "models", env, "--timeout", "60")
    assert result.returncode == 2, result.stderr
    assert term.startswith(
        "the group's MLflow server has no workspaces, and the pod names workspace 'team-a' "
        "(MLFLOW_WORKSPACE): "
    ), term
    assert "attempt" not in result.stderr  # not retried


def test_the_doctor_says_whether_the_workspace_exists(builtin: Builtin) -> None:
    env = {"MLFLOW_TRACKING_URI": builtin.server.url, "MLFLOW_WORKSPACE": "team-a"}
    good = check(env, "--model", "models:/iris/1")
    assert good.returncode == 0, good.stdout + good.stderr
    got = lines(good)
    assert list(got)[:3] == ["tracking server", "workspace", "login"]
    assert got["workspace"] == "ok 'team-a' (MLFLOW_WORKSPACE) exists"
    assert "mlflow-artifacts:/workspaces/team-a/" in got["model"]
    missing = check({**env, "MLFLOW_WORKSPACE": "team-nope"})
    assert missing.returncode == 1
    assert lines(missing)["workspace"] == (
        "failed workspace 'team-nope' (MLFLOW_WORKSPACE) does not exist on the server"
    )
    assert "login" not in lines(missing)  # what follows needs it


def test_the_doctor_reports_a_workspace_named_to_a_server_without_workspaces(
    stores: Stores,
) -> None:
    """Found before the first model deployment, not by it."""
    result = check({**stores.mlflow.env, "MLFLOW_WORKSPACE": "team-a"})
    assert result.returncode == 1
    assert lines(result)["workspace"].startswith(
        "failed the pods name workspace 'team-a' (MLFLOW_WORKSPACE), and the server has no "
        "workspaces"
    )


@pytest.mark.cluster
def test_primehub_groups_in_one_namespace_each_copy_from_their_own_workspace(
    builtin: Builtin, installed: Installed, tmp_path: Path
) -> None:
    """Two PrimeHub groups of one namespace on one shared server, each setting naming its
    group's workspace: each group's model deployment, as the API server stores it, copies that
    workspace's `iris`; `kubectl get` shows which workspace each setting names."""
    namespace = "ws-primehub"
    groups = {"Team_A": "team-a", "Old_Team": "default"}
    settings = [
        {
            "apiVersion": "mlflow.primehub.io/v1alpha1",
            "kind": "MLflowSetting",
            "metadata": {"name": workspace, "namespace": namespace},
            "spec": {"group": group, "trackingUri": builtin.server.url, "workspace": workspace},
        }
        for group, workspace in groups.items()
    ]
    installed.opted_in(namespace, settings)
    for group, workspace in groups.items():
        pod = pod_file("deployment", unique=True)
        pod["metadata"]["namespace"] = namespace
        pod["metadata"]["labels"]["primehub.io/group"] = escape_group(group)
        pod["metadata"]["annotations"]["mlflow.primehub.io/model-uri"] = "models:/iris/1"
        stored = installed.created(pod, namespace)
        init = next(c for c in stored["spec"]["initContainers"] if c["name"] == INIT_CONTAINER)
        assert {"name": "MLFLOW_WORKSPACE", "value": workspace} in init["env"]
        folder = tmp_path / workspace
        folder.mkdir()
        volume = next(m["name"] for m in init["volumeMounts"] if m["mountPath"] == "/mnt/models")
        result = run_container(stored, INIT_CONTAINER, [], {volume: folder})
        assert result.returncode == 0, result.stderr
        assert tree(folder) == builtin.models.versions[f"{workspace}/iris"]["1"]
    listed = installed.cp.kubectl("get", "mlflowsettings", "-n", namespace).stdout.splitlines()
    column = slice(listed[0].index("WORKSPACE"), listed[0].index("READY"))
    assert {line.split()[0]: line[column].strip() for line in listed[1:]} == {
        "team-a": "team-a",
        "default": "default",
    }
