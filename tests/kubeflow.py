"""Kubeflow for the tests: its Training Operator (v1.8.1, built from the Go module proxy by
tests/controlplane/build.sh) run against the test API server with its PyTorchJob CRD, as the
module ships it; and notebook pods as Kubeflow's notebook controller makes them.

The Training Operator creates Pods itself (no kube-controller-manager needed). It starts its
controllers only once its webhook certificate is in place, in a fixed folder a kubelet would
fill from its Secret: both are filled here beforehand (RSA keys in PKCS#1 form, valid for a
year, so its certificate rotator finds nothing to renew)."""

from __future__ import annotations

import base64
import contextlib
import datetime
import ipaddress
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from tests.cluster import ControlPlane
from tests.kserve import other_crds
from tests.procs import BIN, free_port, running, wait_until

NAMESPACE = "kubeflow"
# Where the operator reads its serving certificate (fixed in its code); shared by every run on
# the machine, so one pair is written per test session.
CERT_FOLDER = Path("/tmp/k8s-webhook-server/serving-certs")
PYTORCHJOBS = "/apis/kubeflow.org/v1/namespaces/{namespace}/pytorchjobs"


def _pair(
    name: str, sans: list[str], issuer: tuple[x509.Certificate, rsa.RSAPrivateKey] | None = None
) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = datetime.datetime.now(datetime.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    alt: list[x509.GeneralName] = [
        x509.IPAddress(ipaddress.ip_address(s)) if s.replace(".", "").isdigit() else x509.DNSName(s)
        for s in sans
    ]
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer[0].subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    cert = builder.sign(issuer[1] if issuer else key, hashes.SHA256())
    return cert, key


def _pem(cert: x509.Certificate, key: rsa.RSAPrivateKey) -> tuple[bytes, bytes]:
    return cert.public_bytes(serialization.Encoding.PEM), key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,  # PKCS#1
        serialization.NoEncryption(),
    )


@contextlib.contextmanager
def training_operator(cp: ControlPlane, tmp: Path) -> Iterator[ControlPlane]:
    crd = other_crds() / "kubeflow.org_pytorchjobs.yaml"
    r = cp.kubectl("apply", "--server-side", "-f", str(crd), check=False)
    assert r.returncode == 0, r.stderr
    ca = _pair("training-operator-ca", ["training-operator-ca"])
    serving = _pair("training-operator", ["training-operator.kubeflow.svc", "127.0.0.1"], ca)
    ca_crt, ca_key = _pem(*ca)
    tls_crt, tls_key = _pem(*serving)
    CERT_FOLDER.mkdir(parents=True, exist_ok=True)
    (CERT_FOLDER / "tls.crt").write_bytes(tls_crt)
    (CERT_FOLDER / "tls.key").write_bytes(tls_key)
    data = {"ca.crt": ca_crt, "ca.key": ca_key, "tls.crt": tls_crt, "tls.key": tls_key}
    objects = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "training-operator-webhook-cert", "namespace": NAMESPACE},
            "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
        },
    ]
    r = cp.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(objects), check=False)
    assert r.returncode == 0, r.stderr
    wait_until(
        lambda: cp.kubectl(
            "wait", "--for=condition=established", "--timeout=10s",
            "crd/pytorchjobs.kubeflow.org", check=False,
        ).returncode == 0,
        60,
        "the PyTorchJob CRD",
    )  # fmt: skip
    probe = free_port()
    args = [
        str(BIN / "training-operator"),
        f"--kubeconfig={cp.kubeconfig}",
        "--enable-scheme=pytorchjob",
        "--metrics-bind-address=0",
        f"--health-probe-bind-address=127.0.0.1:{probe}",
        f"--webhook-server-port={free_port()}",
    ]
    with running(args, tmp / "training-operator.log", env={"MY_POD_NAMESPACE": NAMESPACE}) as p:
        wait_until(
            lambda: requests.get(f"http://127.0.0.1:{probe}/readyz", timeout=2).ok,
            60,
            "the Training Operator",
            p,
        )
        yield cp


def pytorchjob(name: str, workers: int = 1) -> dict[str, Any]:
    """A PyTorchJob as its users write one: a master and workers of one image."""

    def replica(replicas: int) -> dict[str, Any]:
        container = {"name": "pytorch", "image": "docker.io/kubeflowkatib/pytorch-mnist:v1"}
        return {
            "replicas": replicas,
            "restartPolicy": "OnFailure",
            "template": {"spec": {"containers": [container]}},
        }

    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": {"name": name},
        "spec": {
            "pytorchReplicaSpecs": {"Master": replica(1), "Worker": replica(workers)},
        },
    }


def job_pods(cp: ControlPlane, namespace: str, name: str, count: int) -> list[dict[str, Any]]:
    """The pods the Training Operator made for the job (as the API server stored them)."""

    def made() -> list[dict[str, Any]] | None:
        reply = cp.request(
            "GET",
            f"/api/v1/namespaces/{namespace}/pods",
            labelSelector=f"training.kubeflow.org/job-name={name}",
        )
        items: list[dict[str, Any]] = reply.json().get("items", [])
        return items if len(items) >= count else None

    found: list[dict[str, Any]] = wait_until(made, 60, f"the pods of PyTorchJob {name}")
    return found


def notebook_pod(name: str, namespace: str, labels: dict[str, str]) -> dict[str, Any]:
    """A pod as Kubeflow's notebook controller makes one from a Notebook (its module is not on
    the Go module proxy, so it cannot run here: shaped by hand from its source,
    components/notebook-controller/controllers/notebook_controller.go in kubeflow/notebooks,
    `generateStatefulSet`): a StatefulSet `<name>` whose pod `<name>-0` carries the labels
    `statefulset` and `notebook-name` and every label of the Notebook (annotations with
    "notebook" in their name are not copied: the creator's among them), its first container
    working in /home/jovyan on port 8888 (`notebook-port`) with NB_PREFIX, and fsGroup 100."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{name}-0",
            "namespace": namespace,
            "labels": {"statefulset": name, "notebook-name": name, **labels},
            "annotations": {},
        },
        "spec": {
            "containers": [
                {
                    "name": name,
                    "image": "kubeflownotebookswg/jupyter-scipy:v1.9.0",
                    "workingDir": "/home/jovyan",
                    "ports": [{"containerPort": 8888, "name": "notebook-port", "protocol": "TCP"}],
                    "env": [{"name": "NB_PREFIX", "value": f"/notebook/{namespace}/{name}"}],
                }
            ],
            "securityContext": {"fsGroup": 100},
        },
    }
