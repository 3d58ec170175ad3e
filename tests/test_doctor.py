"""`mlflow-webhook check` against the real MLflow servers (plain and with basic auth) and the S3
server: one line per check, the reason when one fails, no secret value, exit 1 on a failure."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cluster import ROOT, Installed
from tests.conftest import Stores
from tests.podrun import run_container
from tests.procs import free_port, wait_until
from tests.test_copy import clean_env
from tests.test_end_to_end import manifests


def check(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "webhook", "check", *args],
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=120,
    )


def lines(result: subprocess.CompletedProcess[str]) -> dict[str, str]:
    """check name -> 'ok ...' or 'failed ...'"""
    out = {}
    for line in result.stdout.splitlines():
        status, rest = line.split(None, 1)
        name = rest[:18].strip()
        out[name] = f"{status} {rest[18:]}"
    return out


def test_a_working_setting_passes_every_check_and_its_model(stores: Stores) -> None:
    result = check({**stores.mlflow.env, **stores.s3.env}, "--model", "models:/fraud/1")
    assert result.returncode == 0, result.stdout + result.stderr
    got = lines(result)
    assert list(got) == ["tracking server", "login", "registry", "artifact store", "model"]
    assert all(v.startswith("ok ") for v in got.values()), got
    assert got["login"] == "ok accepted (without a login)"
    assert "at s3://mlflow/mlruns/" in got["model"]


def test_basic_auth_with_the_right_and_a_wrong_password(stores: Stores) -> None:
    good = check(stores.auth.env)
    assert good.returncode == 0, good.stdout + good.stderr
    assert lines(good)["login"] == "ok accepted (with a login)"
    wrong = check({**stores.auth.env, "MLFLOW_TRACKING_PASSWORD": "not-it-s3cr3t"})
    assert wrong.returncode == 1
    got = lines(wrong)
    assert got["tracking server"].startswith("ok ")
    assert got["login"].startswith("failed HTTP 401: the server refused the login")
    assert "registry" not in got  # nothing after a refused login
    assert "not-it-s3cr3t" not in wrong.stdout + wrong.stderr


def test_a_server_that_is_down(tmp_path: Path) -> None:
    result = check({"MLFLOW_TRACKING_URI": f"http://user:pw-x@127.0.0.1:{free_port()}"})
    assert result.returncode == 1
    got = lines(result)
    assert got["tracking server"].startswith("failed ")
    assert "pw-x" not in result.stdout + result.stderr


def test_a_wrong_s3_endpoint_and_a_missing_model(stores: Stores) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    env = {**stores.mlflow.env, **stores.s3.env, "MLFLOW_S3_ENDPOINT_URL": dead}
    result = check(env, "--model", "models:/fraud/1")
    assert result.returncode == 1
    got = lines(result)
    assert got["registry"].startswith("ok ")  # the tracking side is fine
    assert got["model"].startswith("failed unreachable:") and dead in got["model"]
    missing = check(stores.mlflow.env, "--model", "models:/no-such-model/1")
    assert (
        lines(missing)["model"]
        == ('failed model "no-such-model" does not exist in the group\'s MLflow registry')
        or "does not exist" in lines(missing)["model"]
    )
    assert missing.returncode == 1


@pytest.mark.parametrize(
    ("tracking_uri", "why"),
    [("", "is not set"), ("not a url", "is not a tracking server's URL")],
)
def test_without_a_usable_setting(tracking_uri: str, why: str) -> None:
    """Judged as copy-artifacts judges it, before any client call (one line, no value)."""
    result = check({"MLFLOW_TRACKING_URI": tracking_uri} if tracking_uri else {})
    assert result.returncode == 1
    found = lines(result)
    assert list(found) == ["setting"] and found["setting"].startswith(
        f"failed MLFLOW_TRACKING_URI {why}"
    )
    assert not tracking_uri or tracking_uri not in result.stdout


@pytest.mark.cluster
def test_the_check_job_runs_as_a_pod_of_the_group(
    installed: Installed, stores: Stores, tmp_path: Path
) -> None:
    """The shipped Job, for a group of the end-to-end namespace: the pod the API server stores
    gets the group's setting from the webhook, and its check passes against the real servers."""
    namespace = "doctor"
    objects = manifests(stores, namespace)
    installed.opted_in(namespace, objects)
    job = yaml.safe_load(
        (ROOT / "manifests" / "doctor" / "check-job.yaml").read_text().replace("GROUP", "phusers")
    )
    pod = {"apiVersion": "v1", "kind": "Pod", **job["spec"]["template"]}
    pod["metadata"] = {**pod["metadata"], "generateName": "mlflow-check-"}
    pod["spec"]["containers"][0]["args"] = ["--model", "models:/fraud/1"]

    def injected() -> dict[str, Any] | None:
        stored = installed.create(pod, namespace, dry_run=True).json()
        return (
            stored
            if "mlflow.primehub.io/injected" in stored["metadata"].get("annotations", {})
            else None
        )

    stored = wait_until(injected, 10, "the setting to reach the webhook")
    folders = {"mlflow-group-volume": stores.group_volume.parents[2]}
    result = run_container(stored, "check", objects, folders)
    assert result.returncode == 0, result.stdout + result.stderr
    assert [line.split()[0] for line in result.stdout.splitlines()] == ["ok"] * 5
