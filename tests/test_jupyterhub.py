"""Notebook pods made by JupyterHub's KubeSpawner's own code (`get_pod_manifest`), the current
7.x line and the 4.x line PrimeHub ships (tests/clients/install.sh), created through the real
API server: in PrimeHub's namespace, with the two labels PrimeHub's spawner adds, they get their
group's setting; in a team's namespace with no group label, the namespace's. And the runs such a
notebook starts say who started them, proven against the real MLflow server."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.cluster import ROOT, Installed
from tests.conftest import Stores
from tests.podrun import run_tags
from tests.teams import GROUP, env_of, team_namespace

pytestmark = pytest.mark.cluster
LINES = ["kubespawner-7", "kubespawner-4"]
INJECTED = "mlflow.primehub.io/injected"


@pytest.fixture(scope="module")
def team(installed: Installed, stores: Stores) -> str:
    return team_namespace(installed, stores)


def spawned(clients: Path, line: str, user: str, namespace: str, group: str | None) -> Any:
    """The pod KubeSpawner builds for `user` (with PrimeHub's labels for `group`)."""
    kubeconfig = ROOT / "tests" / "clients" / "offline.kubeconfig"
    done = subprocess.run(
        [
            str(clients / line / "bin" / "python"),
            str(ROOT / "tests" / "clients" / "kubespawner_pod.py"),
            user,
            namespace,
            *([group] if group else []),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "KUBECONFIG": str(kubeconfig)},
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.parametrize("line", LINES)
def test_a_primehub_notebook_gets_its_group_s_setting(
    installed: Installed, clients: Path, line: str
) -> None:
    pod = spawned(clients, line, "ada", "hub", "Research_Team")
    stored = installed.create(pod, "hub", dry_run=True).json()
    assert stored["metadata"]["annotations"][INJECTED] == "hub/research-team"
    env = env_of(stored["spec"]["containers"][0])
    assert env["MLFLOW_TRACKING_URI"] == "https://mlflow.research.example.com"
    assert env["JUPYTERHUB_USER"] == "ada"  # KubeSpawner's own, kept
    tags = json.loads(env["MLFLOW_RUN_CONTEXT"])
    assert tags["mlflow.user"] == "ada"
    assert tags["mlflow.primehub.io/group"] == "Research_Team"


@pytest.mark.parametrize("line", LINES)
def test_a_team_notebook_without_a_group_gets_the_namespace_s_setting(
    installed: Installed, clients: Path, team: str, stores: Stores, line: str
) -> None:
    pod = spawned(clients, line, "bob", team, None)
    stored = installed.create(pod, team, dry_run=True).json()
    assert stored["metadata"]["annotations"][INJECTED] == f"{team}/everyone"
    assert env_of(stored["spec"]["containers"][0])["MLFLOW_TRACKING_URI"] == stores.mlflow.url


def test_a_group_s_own_setting_wins_over_the_namespace_s(
    installed: Installed, clients: Path, team: str
) -> None:
    pod = spawned(clients, "kubespawner-7", "carol", team, GROUP)
    stored = installed.create(pod, team, dry_run=True).json()
    assert stored["metadata"]["annotations"][INJECTED] == f"{team}/vision"
    assert env_of(stored["spec"]["containers"][0])["MLFLOW_TRACKING_URI"] == (
        "http://mlflow.vision:5000"
    )


def test_a_run_started_in_the_notebook_says_who_started_it(
    installed: Installed, clients: Path, team: str, stores: Stores, tmp_path: Path
) -> None:
    """MLflow's own client, in the environment the stored pod's notebook container gets (as a
    kubelet computes it), starts a run on the real tracking server: the run carries the
    platform's user, not `jovyan` or `root`, and names its namespace, kind and notebook."""
    stored = installed.create(
        spawned(clients, "kubespawner-7", "dana", team, None), team, dry_run=True
    )
    container = stored.json()["spec"]["containers"][0]
    tags = run_tags(container, stores.mlflow.url, tmp_path, "jovyan")
    assert tags["mlflow.user"] == "dana"
    assert tags["mlflow.primehub.io/namespace"] == team
    assert tags["mlflow.primehub.io/kind"] == "notebook"
    assert tags["mlflow.primehub.io/notebook"] == "jupyter-dana"
    assert "mlflow.primehub.io/group" not in tags  # the namespace's setting: no group


def test_a_pod_s_own_run_context_is_kept(installed: Installed, clients: Path, team: str) -> None:
    pod = spawned(clients, "kubespawner-7", "erin", team, None)
    own = {"name": "MLFLOW_RUN_CONTEXT", "value": '{"project": "x"}'}
    pod["spec"]["containers"][0].setdefault("env", []).append(own)
    stored = installed.create(pod, team, dry_run=True).json()
    assert env_of(stored["spec"]["containers"][0])["MLFLOW_RUN_CONTEXT"] == '{"project": "x"}'
