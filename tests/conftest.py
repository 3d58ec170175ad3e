"""Session-wide real servers: moto (S3) and MLflow tracking servers with registered models."""

from __future__ import annotations

import contextlib
import os
import subprocess
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import settings

from tests.cluster import ROOT, ControlPlane, Installed, control_plane, install
from tests.procs import environ
from tests.registry import Registered, make_model_dir, register
from tests.servers import S3, Mlflow, launch_mlflow, moto_server, wait_mlflow
from tests.workspaces import SharedMlflow, shared_mlflow

# The property tests draw the same examples on every run, as the fuzz tests use a fixed seed:
# a red CI is a change's doing, not the dice's. HYPOTHESIS_PROFILE=explore draws new ones (how
# a final newline in a model alias was found).
settings.register_profile("repeatable", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))


@dataclass(frozen=True)
class Stores:
    """One registry holding models in each store, and one behind basic auth."""

    mlflow: Mlflow
    auth: Mlflow
    s3: S3
    group_volume: Path  # the local artifact root, as on PrimeHub's group volume
    root: Path
    models: Registered


@pytest.fixture(scope="session")
def stores(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stores]:
    tmp = tmp_path_factory.mktemp("stores")
    with contextlib.ExitStack() as stack:
        s3 = stack.enter_context(moto_server(tmp))
        stack.enter_context(environ(s3.env))  # the test process logs to S3 as a notebook would
        main = launch_mlflow(stack, tmp / "main", "mlflow")
        auth = launch_mlflow(stack, tmp / "auth", "mlflow-auth", auth=True)
        wait_mlflow(main)
        wait_mlflow(auth)
        group_volume = tmp / "project" / "phusers" / "phapplications" / "app1" / "mlruns"
        models = Registered()
        src = tmp / "src"
        uri = main.url
        register(uri, "served", None, "churn model", make_model_dir(src / "c1", 1), models)
        register(uri, "served", None, "churn model", make_model_dir(src / "c2", 2), models)
        register(uri, "group", str(group_volume), "iris", make_model_dir(src / "i1", 3), models)
        register(uri, "s3", "s3://mlflow/mlruns", "fraud", make_model_dir(src / "f1", 4), models)
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=uri)
        client.set_registered_model_alias("churn model", "champion", "1")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            client.transition_model_version_stage("churn model", "2", "Production")
        with environ(auth.env):  # MlflowClient reads credentials from the environment
            register(auth.url, "served", None, "guarded", make_model_dir(src / "g1", 5), models)
        yield Stores(main, auth, s3, group_volume, tmp, models)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    with control_plane(tmp_path_factory.mktemp("cluster")) as cp:
        yield cp


@pytest.fixture(scope="session")
def installed(
    cluster: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Installed]:
    with install(cluster, tmp_path_factory.mktemp("install")) as inst:
        yield inst


@pytest.fixture(scope="session")
def shared(
    installed: Installed, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SharedMlflow]:
    """One MLflow shared by two teams, with Kubernetes identities (tests/workspaces.py)."""
    with shared_mlflow(installed, tmp_path_factory.mktemp("shared-mlflow")) as running:
        yield running


@pytest.fixture(scope="session")
def clients() -> Path:
    """The virtualenvs of the Python programs that make pods (tests/clients/install.sh)."""
    return Path(
        os.environ.get("CLIENTS")
        or subprocess.run(
            [str(ROOT / "tests" / "clients" / "install.sh")],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
