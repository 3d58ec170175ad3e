"""The batch engines teams train with, as their own programs against the test API server:
Argo's workflow controller (v4.0.5) and the KubeRay operator (v1.5.0), built by
tests/controlplane/build.sh with their CRDs from their Go modules (tests/controlplane/crds.sh),
and Spark's own `spark-submit` (pyspark 4.0.1, tests/clients/install.sh). They make the pods the
tests judge; no kubelet runs them, so a workflow never gets past its first step and a Ray cluster
never becomes ready (a RayJob's submitter Job waits for that)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import requests

from tests.cluster import ControlPlane
from tests.kserve import other_crds
from tests.procs import BIN, free_port, running, wait_until

ARGO_EXECUTOR = "quay.io/argoproj/argoexec:v4.0.5"


def _crds(cp: ControlPlane, prefix: str) -> None:
    files = sorted(other_crds().glob(f"{prefix}_*.yaml"))
    assert files, f"no {prefix} CRDs: see tests/controlplane/crds.sh"
    for f in files:
        r = cp.kubectl("apply", "--server-side", "-f", str(f), check=False)
        assert r.returncode == 0, f"{f.name}: {r.stderr}"
    names = [f"crd/{f.stem.split('_', 1)[1]}.{f.stem.split('_', 1)[0]}" for f in files]
    wait_until(  # (a CRD just made has no conditions yet: `kubectl wait` fails at once)
        lambda: (
            cp.kubectl(
                "wait", "--for=condition=established", "--timeout=10s", *names, check=False
            ).returncode
            == 0
        ),
        60,
        f"the {prefix} CRDs",
    )


@contextlib.contextmanager
def argo(cp: ControlPlane, log: Path) -> Iterator[None]:
    """Argo's workflow controller for every namespace, installed in `argo` (its configuration
    left at the defaults; no leader election: it is the only one)."""
    _crds(cp, "argoproj.io")
    # Its installation's namespace, with the ConfigMap it must find there (empty: the defaults).
    config = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "argo"}},
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "workflow-controller-configmap", "namespace": "argo"},
            },
        ],
    }
    applied = cp.kubectl("apply", "-f", "-", input=json.dumps(config), check=False)
    assert applied.returncode == 0, applied.stderr
    args = [
        str(BIN / "workflow-controller"),
        f"--kubeconfig={cp.kubeconfig}",
        "--namespace=argo",
        f"--executor-image={ARGO_EXECUTOR}",
        "--loglevel=info",
    ]
    env = {"LEADER_ELECTION_DISABLE": "true"}
    with running(args, log, env=env) as proc:
        wait_until(lambda: "Starting Workflow Controller" in log.read_text(), 60, "argo", proc)
        yield


@contextlib.contextmanager
def kuberay(cp: ControlPlane, log: Path) -> Iterator[None]:
    """The KubeRay operator (RayCluster, RayJob, RayService) for every namespace."""
    _crds(cp, "ray.io")
    probe = free_port()
    args = [
        str(BIN / "ray-operator"),
        f"--kubeconfig={cp.kubeconfig}",
        "--metrics-addr=0",
        f"--health-probe-bind-address=127.0.0.1:{probe}",
        "--enable-leader-election=false",
    ]
    with running(args, log) as proc:
        wait_until(
            lambda: requests.get(f"http://127.0.0.1:{probe}/readyz", timeout=2).ok,
            60,
            "the KubeRay operator",
            proc,
        )
        yield


def spark_submit(
    cp: ControlPlane, clients: Path, namespace: str, mode: str, app: str, log: Path
) -> subprocess.Popen[bytes]:
    """`spark-submit --master k8s://...` from the pyspark package (tests/clients/install.sh), as
    the admin (its token in a file), with the Spark image Apache publishes. In cluster mode it
    creates the driver pod and returns; in client mode the driver runs here and asks the API
    server for an executor pod, made from the driver's executor template."""
    token = log.parent / "token"
    token.write_text(cp.admin_token)
    venv = clients / "spark-4"
    auth = "spark.kubernetes.authenticate" + (".submission" if mode == "cluster" else "")
    args = [
        str(venv / "bin" / "spark-submit"),
        f"--master=k8s://{cp.url}",
        f"--deploy-mode={mode}",
        "--name=features",
        f"--conf=spark.kubernetes.namespace={namespace}",
        "--conf=spark.kubernetes.container.image=apache/spark:4.0.1-python3",
        f"--conf={auth}.caCertFile={cp.ca_file}",
        f"--conf={auth}.oauthTokenFile={token}",
        "--conf=spark.kubernetes.submission.waitAppCompletion=false",
        "--conf=spark.executor.instances=1",
        "--conf=spark.driver.host=127.0.0.1",
        "--conf=spark.ui.enabled=false",
        app,
    ]
    env = {"PYSPARK_PYTHON": str(venv / "bin" / "python"), "SPARK_LOCAL_IP": "127.0.0.1"}
    out = log.open("wb")
    return subprocess.Popen(
        args,
        stdout=out,
        stderr=subprocess.STDOUT,
        env={**os.environ, **env},
        start_new_session=True,
    )
