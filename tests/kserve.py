"""KServe's own manager for the tests (tests/controlplane/kserve: its InferenceService
controller, pod mutator and InferenceService defaulter and validator, at v0.20.0), run against
the test API server with KServe's CRDs, ConfigMap, MLServer runtime and webhook configurations
as its Go module ships them (tests/controlplane/crds.sh), in the Standard (raw Deployment) mode,
and with this project's ClusterStorageContainer (manifests/components/kserve). The built-in
controllers (tests/controllers.py) make the predictor's ReplicaSet and pod from the Deployment
KServe writes, through every admission webhook."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
import yaml

from tests.cluster import ROOT, ControlPlane, kustomize
from tests.controllers import controllers, pods_of
from tests.procs import BIN, free_port, running, wait_until
from webhook.tls import make_ca, make_serving_cert

NAMESPACE = "kserve"
ISVC = "/apis/serving.kserve.io/v1beta1/namespaces/{namespace}/inferenceservices"


def other_crds() -> Path:
    """The folder of crds.sh: the CRDs, and KServe's other objects in other/."""
    return Path(
        os.environ.get("OTHER_CRDS")
        or subprocess.run(
            [str(ROOT / "tests" / "controlplane" / "crds.sh")],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )


def storage_container() -> dict[str, Any]:
    """This project's ClusterStorageContainer, as the component renders it."""
    docs = kustomize("components/kserve")
    return next(d for d in docs if d["kind"] == "ClusterStorageContainer")


@dataclass(frozen=True)
class KServe:
    cp: ControlPlane

    def create(self, namespace: str, isvc: dict[str, Any]) -> dict[str, Any]:
        reply = self.cp.request("POST", ISVC.format(namespace=namespace), isvc)
        assert reply.status_code == 201, reply.text
        created: dict[str, Any] = reply.json()
        return created

    def delete(self, namespace: str, name: str) -> None:
        self.cp.request("DELETE", ISVC.format(namespace=namespace) + f"/{name}")

    def pod_made(self, namespace: str, name: str) -> dict[str, Any]:
        """The predictor's pod as its ReplicaSet made it; when the ReplicaSet cannot make it
        (an admission webhook refused it), the failure says why, as `kubectl describe` would."""
        selector = f"serving.kserve.io/inferenceservice={name}"

        def made() -> dict[str, Any] | None:
            pods = pods_of(self.cp, namespace, selector)
            return pods[0] if pods else None

        try:
            found: dict[str, Any] = wait_until(made, 60, f"the predictor pod of {name}")
        except TimeoutError as e:
            path = f"/apis/apps/v1/namespaces/{namespace}/replicasets"
            sets = self.cp.request("GET", path, labelSelector=selector).json()["items"]
            why = [
                c.get("message") for r in sets for c in r.get("status", {}).get("conditions", [])
            ]
            raise AssertionError(f"{e}; its ReplicaSets say: {why}") from None
        return found


def _webhook_configurations(url: str, ca: bytes) -> list[dict[str, Any]]:
    """KServe's configurations for the InferenceService and pod webhooks, pointed at `url`
    (the TrainedModel and InferenceGraph validators are not served: not registered here)."""
    docs = yaml.safe_load_all((other_crds() / "other" / "kserve-webhooks.yaml").read_text())
    out = []
    for doc in docs:
        if not doc or doc["metadata"]["name"] != "inferenceservice.serving.kserve.io":
            continue
        doc["metadata"].pop("creationTimestamp", None)
        for hook in doc["webhooks"]:
            path = hook["clientConfig"]["service"]["path"]
            hook["clientConfig"] = {"url": url + path, "caBundle": base64.b64encode(ca).decode()}
        out.append(doc)
    return out


@contextlib.contextmanager
def kserve(cp: ControlPlane, tmp: Path) -> Iterator[KServe]:
    crds = other_crds()
    for f in sorted(crds.glob("serving.kserve.io_*.yaml")):
        r = cp.kubectl("apply", "--server-side", "-f", str(f), check=False)
        assert r.returncode == 0, f"{f.name}: {r.stderr}"
    wait_until(  # (a CRD just made has no conditions yet: `kubectl wait` fails at once)
        lambda: (
            cp.kubectl(
                "wait",
                "--for=condition=established",
                "--timeout=10s",
                "crd/inferenceservices.serving.kserve.io",
                "crd/clusterservingruntimes.serving.kserve.io",
                "crd/clusterstoragecontainers.serving.kserve.io",
                check=False,
            ).returncode
            == 0
        ),
        60,
        "KServe's CRDs",
    )
    config = yaml.safe_load((crds / "other" / "kserve-inferenceservice-config.yaml").read_text())
    config["data"]["deploy"] = json.dumps({"defaultDeploymentMode": "Standard"})
    runtime = yaml.safe_load((crds / "other" / "kserve-mlserver.yaml").read_text())
    runtime["spec"]["containers"][0]["image"] = "docker.io/seldonio/mlserver:1.7.1"
    objects = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        config,
        runtime,
        storage_container(),
    ]
    r = cp.kubectl("apply", "--server-side", "-f", "-", input=yaml.safe_dump_all(objects))
    assert r.returncode == 0, r.stderr

    # Its webhook server reads its certificate where a kubelet would mount it.
    home = tmp / "kserve-tmp"
    certs = home / "k8s-webhook-server" / "serving-certs"
    certs.mkdir(parents=True)
    ca = make_ca("kserve-webhook-ca")
    serving = make_serving_cert(ca, ["127.0.0.1", "localhost"])
    (certs / "tls.crt").write_bytes(serving.cert_pem())
    (certs / "tls.key").write_bytes(serving.key_pem())
    port, probe = free_port(), free_port()
    args = [
        str(BIN / "kserve-manager"),
        f"--kubeconfig={cp.kubeconfig}",
        f"--webhook-port={port}",
        "--metrics-addr=0",
        f"--health-probe-addr=127.0.0.1:{probe}",
    ]
    env = {"TMPDIR": str(home), "POD_NAMESPACE": NAMESPACE}
    with (
        controllers(cp, tmp / "kube-controller-manager.log"),
        running(args, tmp / "kserve-manager.log", env=env) as proc,
    ):
        wait_until(
            lambda: requests.get(f"http://127.0.0.1:{probe}/readyz", timeout=2).ok,
            60,
            "KServe's manager",
            proc,
        )
        hooks = _webhook_configurations(f"https://127.0.0.1:{port}", ca.cert_pem())
        r = cp.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(hooks))
        assert r.returncode == 0, r.stderr
        try:
            yield KServe(cp)
        finally:
            for hook in hooks:
                kind = hook["kind"].lower()
                cp.kubectl("delete", kind, hook["metadata"]["name"], check=False)
