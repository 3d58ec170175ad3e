"""`mlflow-webhook check` on one MLflow shared by teams with Kubernetes identities (the real
plugin server and API server: tests/workspaces.py): whether the ServiceAccount may read models in
its workspace, asked with its own token as the plugin asks (a search without rights answers 200
with nothing, so the login alone cannot tell), from a pod's token or one an admin requests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.podrun import with_service_account
from tests.test_copy import clean_env
from tests.test_doctor import lines
from tests.workspaces import TEAMS, SharedMlflow

pytestmark = pytest.mark.cluster


def doctor(env: dict[str, str], *args: str, folder: Path | None = None) -> dict[str, str]:
    command = [sys.executable, "-m", "webhook", "check", *args]
    result = subprocess.run(
        with_service_account(folder, command) if folder else command,
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    got = lines(result)
    assert result.returncode == (0 if all(v.startswith("ok ") for v in got.values()) else 1)
    return got


def test_the_doctor_in_a_pod_says_whether_its_service_account_may_read_models(
    shared: SharedMlflow, tmp_path: Path
) -> None:
    """The same SelfSubjectAccessReview the plugin makes, with the pod's own token (a search
    without rights answers 200 with nothing: the login alone cannot tell)."""
    env = shared.pod_env()
    where = ("--kubeconfig", str(shared.cp.kubeconfig))  # in a pod: its own API server
    reader = shared.identity(TEAMS[0], "default", tmp_path / "default")
    got = doctor(env, *where, "--model", "models:/iris/1", folder=reader)
    assert list(got) == [
        "tracking server", "workspace", "login", "identity", "registry", "artifact store", "model",
    ]  # fmt: skip
    assert all(v.startswith("ok ") for v in got.values()), got
    assert got["login"] == f"ok accepted (as {TEAMS[0]}/default, by its Kubernetes identity)"
    assert got["identity"] == (
        f"ok {TEAMS[0]}/default may read registered models and their artifacts in '{TEAMS[0]}'"
    )
    nobody = shared.identity(TEAMS[0], "norole", tmp_path / "norole")
    got = doctor(env, *where, folder=nobody)
    assert got["login"].startswith("ok ")
    assert got["identity"] == (
        f"failed {TEAMS[0]}/norole may not registeredmodels get or experiments get in "
        f"'{TEAMS[0]}' (API group mlflow.kubeflow.org): an admin grants it a Role there "
        "(docs/platforms/shared-mlflow.md)"
    )


def test_the_doctor_checks_a_service_account_named_by_an_admin(shared: SharedMlflow) -> None:
    """Outside any pod, with the admin's kubeconfig: a token of that ServiceAccount from the
    TokenRequest API, and its namespace as the workspace (kubernetes-namespaced)."""
    env = shared.pod_env()
    where = ("--kubeconfig", str(shared.cp.kubeconfig))
    got = doctor(env, *where, "--service-account", f"{TEAMS[1]}/default")
    assert got["login"] == (
        f"ok accepted (as {TEAMS[1]}/default, with a token from the TokenRequest API)"
    )
    assert got["identity"] == (
        f"ok {TEAMS[1]}/default may read registered models and their artifacts in '{TEAMS[1]}'"
    )
    got = doctor(env, *where, "--service-account", f"{TEAMS[0]}/norole")
    assert got["identity"].startswith(f"failed {TEAMS[0]}/norole may not registeredmodels get")
