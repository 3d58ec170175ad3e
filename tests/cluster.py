"""A real control plane for the tests: etcd and kube-apiserver (built by
tests/controlplane/build.sh) as processes on loopback, with generated certificates, an admin
identity and the webhook's own restricted identity. Pods are stored and admitted for real
(webhooks, schema validation, Pod Security, RBAC) but never run: there is no kubelet."""

from __future__ import annotations

import base64
import contextlib
import copy
import datetime
import json
import os
import secrets
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.procs import BIN, free_port, running, stop, wait_until
from tests.webhookproc import WebhookProcess
from webhook import API_GROUP, PLURAL
from webhook.kube import Api, from_kubeconfig
from webhook.tls import KeyPair, make_ca, make_serving_cert

ROOT = Path(__file__).parent.parent
EXAMPLES = ROOT / "examples"
WEBHOOK_USER = "system:serviceaccount:mlflow-webhook:mlflow-webhook"
CERTS_USER = "system:serviceaccount:mlflow-webhook:mlflow-webhook-certs"
PLAIN_USER = "tests:plain"


@dataclass(frozen=True)
class ControlPlane:
    url: str
    ca_file: Path
    ca: KeyPair  # the cluster's CA: it signs the API server's and the clients' certificates
    kubeconfig: Path  # admin (system:masters)
    webhook_kubeconfig: Path  # the webhook's ServiceAccount identity, bound by manifests/ RBAC
    certs_kubeconfig: Path  # the self-managed certificate keeper's identity
    plain_kubeconfig: Path  # an identity with no role at all (a test binds what it needs)
    dir: Path
    admin_token: str
    tokens: dict[str, str]  # by identity: admin, webhook, certs, plain
    restart_apiserver: Callable[[], None]  # same port and store: clients must reconnect
    stop_etcd: Callable[[], None]  # the API server then answers errors, or not at all
    start_etcd: Callable[[], None]  # the same store again, on the same port

    def inline_kubeconfig(self, user: str, groups: list[str], path: Path) -> Path:
        """A kubeconfig as `kubectl config --embed-certs` and cloud consoles write them: the CA,
        a client certificate (for `user` in `groups`, signed by the cluster's CA) and its key,
        all inline as `*-data`."""
        key = ec.generate_private_key(ec.SECP256R1())
        subject = [x509.NameAttribute(NameOID.COMMON_NAME, user)]
        subject += [x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in groups]
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(subject))
            .issuer_name(self.ca.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)
            .sign(self.ca.key, hashes.SHA256())
        )
        pair = KeyPair(cert, key)

        def data(pem: bytes) -> str:
            return base64.b64encode(pem).decode()

        path.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [
                        {
                            "name": "test",
                            "cluster": {
                                "server": self.url,
                                "certificate-authority-data": data(self.ca.cert_pem()),
                            },
                        }
                    ],
                    "users": [
                        {
                            "name": "inline",
                            "user": {
                                "client-certificate-data": data(pair.cert_pem()),
                                "client-key-data": data(pair.key_pem()),
                            },
                        }
                    ],
                    "contexts": [
                        {"name": "test", "context": {"cluster": "test", "user": "inline"}}
                    ],
                    "current-context": "test",
                }
            )
        )
        return path

    def settings_calls(self, verb: str) -> int:
        """How many `verb` (list, watch) calls for MLflowSettings the API server has answered,
        by its audit log (which outlives a restart, where its metrics start again)."""
        log = self.dir / "audit.log"
        if not log.exists():
            return 0
        events = (json.loads(line) for line in log.read_text().splitlines() if line)
        return sum(
            1
            for e in events
            if e.get("verb") == verb and (e.get("objectRef") or {}).get("resource") == PLURAL
        )

    def kubeconfig_via(self, server: str, identity: str, path: Path) -> Path:
        """A kubeconfig for one of the identities that reaches the API server at another
        address (a proxy in front of it)."""
        return _kubeconfig(path, server, self.ca_file, identity, self.tokens[identity])

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

    def client(self, kubeconfig: Path | None = None) -> Api:
        """The webhook's own API client, with the credentials of that kubeconfig."""
        return Api(from_kubeconfig(kubeconfig or self.kubeconfig))

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
    tokens = {name: secrets.token_hex(16) for name in ("admin", "webhook", "certs", "plain")}
    (certs / "tokens.csv").write_text(
        f'{tokens["admin"]},admin,admin,"system:masters"\n'
        f'{tokens["webhook"]},{WEBHOOK_USER},webhook,"system:serviceaccounts"\n'
        f'{tokens["certs"]},{CERTS_USER},certs,"system:serviceaccounts"\n'
        f"{tokens['plain']},{PLAIN_USER},plain\n"
    )
    # Only what the tests count: the calls for MLflowSettings, once each, when answered.
    audit_policy = certs / "audit-policy.yaml"
    audit_policy.write_text(f"""apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived, ResponseStarted]
rules:
  - level: Metadata
    resources: [{{group: {API_GROUP}, resources: [{PLURAL}]}}]
    verbs: [list, watch]
  - level: None
""")
    etcd_port, peer_port, api_port = free_port(), free_port(), free_port()
    etcd_url = f"http://127.0.0.1:{etcd_port}"
    with contextlib.ExitStack() as stack:
        etcd_args = [
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
        ]
        etcd: list[subprocess.Popen[bytes]] = []

        def start_etcd() -> None:
            etcd.append(stack.enter_context(running(etcd_args, tmp / "etcd.log")))
            wait_until(
                lambda: requests.get(f"{etcd_url}/health", timeout=1).ok, 30, "etcd", etcd[-1]
            )

        start_etcd()
        api_args = [
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
            f"--audit-policy-file={audit_policy}",
            f"--audit-log-path={tmp / 'audit.log'}",
            "--v=1",
        ]
        url = f"https://127.0.0.1:{api_port}"
        ca_file = certs / "ca.crt"
        api: list[subprocess.Popen[bytes]] = []

        def start_api() -> None:
            api.append(stack.enter_context(running(api_args, tmp / "kube-apiserver.log")))
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
                api[-1],
            )

        def restart_api() -> None:
            stop(api[-1])
            start_api()

        start_api()
        yield ControlPlane(
            url=url,
            ca_file=ca_file,
            ca=ca,
            kubeconfig=_kubeconfig(
                tmp / "admin.kubeconfig", url, ca_file, "admin", tokens["admin"]
            ),
            webhook_kubeconfig=_kubeconfig(
                tmp / "webhook.kubeconfig", url, ca_file, "webhook", tokens["webhook"]
            ),
            certs_kubeconfig=_kubeconfig(
                tmp / "certs.kubeconfig", url, ca_file, "certs", tokens["certs"]
            ),
            plain_kubeconfig=_kubeconfig(
                tmp / "plain.kubeconfig", url, ca_file, "plain", tokens["plain"]
            ),
            dir=tmp,
            admin_token=tokens["admin"],
            tokens=tokens,
            restart_apiserver=restart_api,
            stop_etcd=lambda: stop(etcd[-1]),
            start_etcd=start_etcd,
        )


def install_other_crds(cp: ControlPlane) -> None:
    """The CRDs of cert-manager, the Prometheus operator and KServe, as their Go modules ship
    them (tests/controlplane/crds.sh), applied and established: what the overlays' and the
    chart's objects are checked against."""
    crds = Path(
        os.environ.get("OTHER_CRDS")
        or subprocess.run(
            [str(ROOT / "tests" / "controlplane" / "crds.sh")],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    for f in sorted(crds.glob("*.yaml")):
        r = cp.kubectl("apply", "--server-side", "-f", str(f), check=False)
        assert r.returncode == 0, f"{f.name}: {r.stderr}"
    cp.kubectl(
        "wait",
        "--for=condition=established",
        "--timeout=60s",
        "crd/issuers.cert-manager.io",
        "crd/certificates.cert-manager.io",
        "crd/servicemonitors.monitoring.coreos.com",
        "crd/prometheusrules.monitoring.coreos.com",
        "crd/clusterstoragecontainers.serving.kserve.io",
    )


def kustomize(overlay: str | Path) -> list[dict[str, Any]]:
    """A folder under manifests/ (or any kustomization), rendered by kubectl's kustomize."""
    out = subprocess.run(
        ["kubectl", "kustomize", str(ROOT / "manifests" / overlay)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def admin_kustomization(
    folder: Path, overlay: str, components: list[str], image: str | None = None
) -> Path:
    """The kustomization an admin writes (docs/install.md): one of our overlays,
    components of ours, and the name of the image they pushed."""
    folder.mkdir(parents=True)
    manifests = ROOT / "manifests"
    body: dict[str, Any] = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [os.path.relpath(manifests / overlay, folder)],
        "components": [os.path.relpath(manifests / c, folder) for c in components],
    }
    if image is not None:
        name, tag = image.rsplit(":", 1)
        body["images"] = [{"name": "primehub/mlflow-webhook", "newName": name, "newTag": tag}]
    (folder / "kustomization.yaml").write_text(yaml.safe_dump(body))
    return folder


def pod_file(name: str, unique: bool = False) -> dict[str, Any]:
    """An example pod; `unique` gives it a generated name, so it can be created many times."""
    pod: dict[str, Any] = yaml.safe_load((EXAMPLES / "pods" / f"{name}.yaml").read_text())
    if unique:
        pod["metadata"]["generateName"] = pod["metadata"].pop("name", name) + "-"
    return pod


@dataclass
class Installed:
    cp: ControlPlane
    webhook: WebhookProcess
    ca_file: Path
    cert_dir: Path

    def create(
        self, pod: dict[str, Any], namespace: str = "hub", dry_run: bool = False
    ) -> requests.Response:
        params = {"dryRun": "All"} if dry_run else {}
        return self.cp.request("POST", f"/api/v1/namespaces/{namespace}/pods", pod, **params)

    def created(self, pod: dict[str, Any], namespace: str = "hub") -> dict[str, Any]:
        r = self.create(pod, namespace)
        assert r.status_code == 201, r.text
        stored: dict[str, Any] = r.json()
        return stored

    def trusted_ca(self) -> Path:
        """The CA bundle the API server trusts for the webhook now (certificate tests rotate
        it), as a file."""
        config = self.cp.request(
            "GET",
            "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/mlflow-webhook",
        ).json()
        path = self.cert_dir / "trusted-now.crt"
        path.write_bytes(base64.b64decode(config["webhooks"][0]["clientConfig"]["caBundle"]))
        return path

    def opted_in(self, namespace: str, objects: list[dict[str, Any]]) -> None:
        """A namespace labelled for injection, with these objects applied in it."""
        ns = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": namespace, "labels": {"mlflow.primehub.io/injection": "enabled"}},
        }
        result = self.apply([ns, *objects])
        assert result.returncode == 0, result.stderr

    def apply(self, manifest: str | list[dict[str, Any]]) -> subprocess.CompletedProcess[str]:
        text = manifest if isinstance(manifest, str) else yaml.safe_dump_all(manifest)
        return self.cp.kubectl("apply", "-f", "-", input=text, check=False)


WEBHOOK_KINDS = ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")


def _webhook_configurations(docs: list[dict[str, Any]], url: str, ca: bytes) -> list[Any]:
    """Both configurations of manifests/, pointed at the local webhook process."""
    configs = [copy.deepcopy(d) for d in docs if d["kind"] in WEBHOOK_KINDS]
    for config in configs:
        for hook in config["webhooks"]:
            path = hook["clientConfig"]["service"]["path"]
            hook["clientConfig"] = {"url": url + path, "caBundle": base64.b64encode(ca).decode()}
    return configs


@contextlib.contextmanager
def install(cluster: ControlPlane, tmp: Path) -> Iterator[Installed]:
    """manifests/ (self-managed overlay) applied for real, the webhook running locally as its
    own identity, the webhook configuration pointed at it, example namespaces and settings."""
    docs = kustomize("overlays/self-managed")
    cert_dir = tmp / "tls"
    cert_dir.mkdir()
    ca = make_ca("local-webhook-ca")
    serving = make_serving_cert(ca, ["127.0.0.1", "localhost"])
    (cert_dir / "tls.crt").write_bytes(serving.cert_pem())
    (cert_dir / "tls.key").write_bytes(serving.key_pem())
    ca_file = tmp / "ca.crt"
    ca_file.write_bytes(ca.cert_pem())
    port = free_port()
    webhook = WebhookProcess(
        cert_dir,
        port,
        tmp / "webhook.log",
        ["--cluster", f"--kubeconfig={cluster.webhook_kubeconfig}"],
        ["--shutdown-delay=0"],
    )
    inst = Installed(cluster, webhook, ca_file, cert_dir)

    others = [d for d in docs if d["kind"] not in WEBHOOK_KINDS]
    result = inst.apply(others)
    assert result.returncode == 0, result.stderr
    cluster.kubectl(
        "wait",
        "--for=condition=established",
        "--timeout=60s",
        "crd/mlflowsettings.mlflow.primehub.io",
    )
    namespaces = {
        "hub": {"mlflow.primehub.io/injection": "enabled"},
        "team-b": {"mlflow.primehub.io/injection": "enabled"},
        "closed": {},
        "secure": {
            "mlflow.primehub.io/injection": "enabled",
            "pod-security.kubernetes.io/enforce": "restricted",
        },
    }
    inst.apply(
        [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n, "labels": labels}}
            for n, labels in namespaces.items()
        ]
    )
    for f in ("secrets.yaml", "settings.yaml"):
        result = inst.apply((EXAMPLES / f).read_text())
        assert result.returncode == 0, result.stderr
    result = inst.apply("""
apiVersion: mlflow.primehub.io/v1alpha1
kind: MLflowSetting
metadata: {name: secure, namespace: secure}
spec: {group: secure, trackingUri: "http://mlflow.secure.svc:5000"}
""")
    assert result.returncode == 0, result.stderr
    webhook.start(ca_file)
    result = inst.apply(_webhook_configurations(docs, webhook.url, ca.cert_pem()))
    assert result.returncode == 0, result.stderr

    def active() -> bool:  # a new webhook configuration takes a moment to be used
        r = inst.create(pod_file("notebook", unique=True), dry_run=True)
        return "mlflow.primehub.io/injected" in r.json()["metadata"].get("annotations", {})

    wait_until(active, 30, "webhook configuration")
    try:
        yield inst
    finally:
        webhook.stop()
