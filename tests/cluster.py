"""A real control plane for the tests: etcd and kube-apiserver (built by
tests/controlplane/build.sh) as processes on loopback, with generated certificates, an admin
identity and the webhook's own restricted identity. Pods are stored and admitted for real
(webhooks, schema validation, Pod Security, RBAC) but never run: there is no kubelet."""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.procs import free_port, running, wait_until
from webhook.tls import make_ca, make_serving_cert

BIN = Path(
    os.environ.get("CONTROLPLANE_BIN")
    or Path.home() / ".cache/primehub-mlflow-webhook/controlplane/bin"
)
WEBHOOK_USER = "system:serviceaccount:mlflow-webhook:mlflow-webhook"
CERTS_USER = "system:serviceaccount:mlflow-webhook:mlflow-webhook-certs"


@dataclass(frozen=True)
class ControlPlane:
    url: str
    ca_file: Path
    kubeconfig: Path  # admin (system:masters)
    webhook_kubeconfig: Path  # the webhook's ServiceAccount identity, bound by manifests/ RBAC
    certs_kubeconfig: Path  # the self-managed certificate keeper's identity
    dir: Path
    admin_token: str

    def request(self, method: str, path: str, body: Any = None, **params: str) -> requests.Response:
        """The REST API as the admin, JSON in and out: objects stay plain dicts."""
        return requests.request(
            method,
            self.url + path,
            json=body,
            params=params,
            verify=self.ca_file,
            timeout=30,
            headers={"Authorization": f"Bearer {self.admin_token}"},
        )

    def client(self, kubeconfig: Path | None = None) -> Any:
        from kubernetes import config

        return config.new_client_from_config(str(kubeconfig or self.kubeconfig))

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["kubectl", f"--kubeconfig={self.kubeconfig}", *args],
            input=input,
            capture_output=True,
            text=True,
            check=check,
            timeout=120,
        )


def _kubeconfig(path: Path, url: str, ca: Path, user: str, token: str) -> Path:
    path.write_text(f"""apiVersion: v1
kind: Config
clusters: [{{name: test, cluster: {{server: "{url}", certificate-authority: "{ca}"}}}}]
users: [{{name: {user}, user: {{token: "{token}"}}}}]
contexts: [{{name: test, context: {{cluster: test, user: {user}}}}}]
current-context: test
""")
    return path


@contextlib.contextmanager
def control_plane(tmp: Path) -> Iterator[ControlPlane]:
    for binary in ("etcd", "kube-apiserver"):
        if not (BIN / binary).exists():
            raise RuntimeError(
                f"{BIN / binary} missing: run tests/controlplane/build.sh (tests/run does)"
            )
    certs = tmp / "pki"
    certs.mkdir()
    ca = make_ca("test-cluster-ca")
    serving = make_serving_cert(ca, ["127.0.0.1", "localhost", "kubernetes.default.svc"])
    (certs / "ca.crt").write_bytes(ca.cert_pem())
    (certs / "apiserver.crt").write_bytes(serving.cert_pem())
    (certs / "apiserver.key").write_bytes(serving.key_pem())
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (certs / "sa.key").write_bytes(
        sa_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    (certs / "sa.pub").write_bytes(
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    tokens = {name: secrets.token_hex(16) for name in ("admin", "webhook", "certs")}
    (certs / "tokens.csv").write_text(
        f'{tokens["admin"]},admin,admin,"system:masters"\n'
        f'{tokens["webhook"]},{WEBHOOK_USER},webhook,"system:serviceaccounts"\n'
        f'{tokens["certs"]},{CERTS_USER},certs,"system:serviceaccounts"\n'
    )
    etcd_port, peer_port, api_port = free_port(), free_port(), free_port()
    etcd_url = f"http://127.0.0.1:{etcd_port}"
    with contextlib.ExitStack() as stack:
        etcd = stack.enter_context(
            running(
                [
                    str(BIN / "etcd"),
                    "--name=test",
                    f"--data-dir={tmp / 'etcd'}",
                    f"--listen-client-urls={etcd_url}",
                    f"--advertise-client-urls={etcd_url}",
                    f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
                    f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
                    f"--initial-cluster=test=http://127.0.0.1:{peer_port}",
                    "--unsafe-no-fsync",
                    "--log-level=warn",
                ],
                tmp / "etcd.log",
            )
        )
        wait_until(lambda: requests.get(f"{etcd_url}/health", timeout=1).ok, 30, "etcd", etcd)
        api = stack.enter_context(
            running(
                [
                    str(BIN / "kube-apiserver"),
                    f"--etcd-servers={etcd_url}",
                    "--bind-address=127.0.0.1",
                    "--advertise-address=127.0.0.1",
                    f"--secure-port={api_port}",
                    f"--cert-dir={certs}",
                    f"--tls-cert-file={certs / 'apiserver.crt'}",
                    f"--tls-private-key-file={certs / 'apiserver.key'}",
                    f"--client-ca-file={certs / 'ca.crt'}",
                    "--service-account-issuer=https://kubernetes.default.svc",
                    f"--service-account-key-file={certs / 'sa.pub'}",
                    f"--service-account-signing-key-file={certs / 'sa.key'}",
                    "--service-cluster-ip-range=10.0.0.0/24",
                    "--authorization-mode=RBAC",
                    f"--token-auth-file={certs / 'tokens.csv'}",
                    "--allow-privileged=true",
                    "--disable-admission-plugins=ServiceAccount",
                    "--anonymous-auth=false",
                    "--v=1",
                ],
                tmp / "kube-apiserver.log",
            )
        )
        url = f"https://127.0.0.1:{api_port}"
        ca_file = certs / "ca.crt"
        wait_until(
            lambda: (
                requests.get(
                    f"{url}/readyz",
                    verify=ca_file,
                    timeout=2,
                    headers={"Authorization": f"Bearer {tokens['admin']}"},
                ).ok
            ),
            120,
            "kube-apiserver",
            api,
        )
        yield ControlPlane(
            url=url,
            ca_file=ca_file,
            kubeconfig=_kubeconfig(
                tmp / "admin.kubeconfig", url, ca_file, "admin", tokens["admin"]
            ),
            webhook_kubeconfig=_kubeconfig(
                tmp / "webhook.kubeconfig", url, ca_file, "webhook", tokens["webhook"]
            ),
            certs_kubeconfig=_kubeconfig(
                tmp / "certs.kubeconfig", url, ca_file, "certs", tokens["certs"]
            ),
            dir=tmp,
            admin_token=tokens["admin"],
        )
