"""The built-in controllers (kube-controller-manager of the same pinned Kubernetes as the API
server, built by tests/controlplane/build.sh) beside the test control plane: Deployments,
ReplicaSets, StatefulSets, Jobs and CronJobs make their pods as on a real cluster, defaults and
all (a ReplicaSet's pod-template-hash, a Job's labels and tracking finalizer), through every
admission webhook. No kubelet runs them: the tests judge the pods the API server stores."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.cluster import ControlPlane
from tests.procs import BIN, free_port, running, wait_until

# Only what makes the pods the tests judge (a garbage collector would need every API's
# discovery, and the ServiceAccount controllers the ServiceAccount admission, which is off).
CONTROLLERS = (
    "deployment-controller",
    "replicaset-controller",
    "statefulset-controller",
    "job-controller",
    "cronjob-controller",
)


@contextlib.contextmanager
def controllers(cp: ControlPlane, log: Path) -> Iterator[None]:
    binary = BIN / "kube-controller-manager"
    if not binary.exists():
        raise RuntimeError(f"{binary} missing: run tests/controlplane/build.sh (tests/run does)")
    args = [
        str(binary),
        f"--kubeconfig={cp.kubeconfig}",
        f"--controllers={','.join(CONTROLLERS)}",
        "--leader-elect=false",
        "--bind-address=127.0.0.1",
        f"--secure-port={free_port()}",
        "--authentication-skip-lookup",
        "--v=1",
    ]
    with running(args, log) as proc:
        # Ready once it made a pod: an effect, not a health endpoint, is what the tests rely on.
        cp.kubectl("create", "namespace", READY, check=False)
        reply = cp.request("POST", f"/apis/batch/v1/namespaces/{READY}/jobs", PROBE)
        reply.raise_for_status()
        selector = f"job-name={reply.json()['metadata']['name']}"
        wait_until(lambda: pods_of(cp, READY, selector), 60, "kube-controller-manager", proc)
        yield


READY = "controllers-ready"
PROBE: dict[str, Any] = {
    "apiVersion": "batch/v1",
    "kind": "Job",
    "metadata": {"generateName": "probe-"},
    "spec": {
        "template": {
            "spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "main", "image": "busybox"}],
            }
        }
    },
}


def pods_of(cp: ControlPlane, namespace: str, selector: str) -> list[dict[str, Any]]:
    reply = cp.request("GET", f"/api/v1/namespaces/{namespace}/pods", labelSelector=selector)
    reply.raise_for_status()
    items: list[dict[str, Any]] = reply.json()["items"]
    return items


def made_pod(
    cp: ControlPlane, namespace: str, selector: str, timeout: float, prefixed: str = ""
) -> dict[str, Any]:
    """The first pod of `selector` once a controller made it; with `prefixed` ("label=prefix"),
    the first whose label starts with that prefix (a name the controller generated)."""
    label, _, prefix = prefixed.partition("=")

    def named(pod: dict[str, Any]) -> bool:
        return str(pod["metadata"]["labels"].get(label, "")).startswith(prefix)

    def found() -> dict[str, Any] | None:
        return next(filter(named, pods_of(cp, namespace, selector)), None)

    pod: dict[str, Any] = wait_until(found, timeout, f"a pod of {selector} {prefixed}")
    return pod
