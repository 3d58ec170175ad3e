"""Fault scenarios against the real control plane, shared by the tests (which assert the
outcomes) and `bench/faults.py` (which prints the figures): pods created continuously through
the API server while the webhook is hurt, each answer sorted by what a user would see.

What a pod creation can end as:
- correct: admitted with the injection (`mlflow.primehub.io/injected`);
- wrong: our webhook answered, and the answer is wrong (admitted bare with our "not injected"
  warning, or refused by us): the settings exist, so either is a lie that lasts;
- uninjected: a notebook or job admitted bare because the webhook could not be called
  (`failurePolicy: Ignore`);
- refused: a model deployment refused because the webhook could not be called
  (`failurePolicy: Fail`);
- error: anything else the API server answered;
- no-api-server: the API server did not answer (a fault stopped it).
"""

from __future__ import annotations

import base64
import contextlib
import copy
import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import yaml

from tests.cluster import ControlPlane, kustomize, pod_file
from tests.procs import running, wait_until
from webhook.groups import escape_group

OUTCOMES = ("correct", "wrong", "uninjected", "refused", "error", "no-api-server")
INJECTED = "mlflow.primehub.io/injected"


def scenario_pod(kind: str, namespace: str, group: str | None = None) -> dict[str, Any]:
    """An example pod (notebook or deployment) placed in `namespace`, with a generated name, of
    its own group (Research_Team) or `group`."""
    pod = pod_file(kind, unique=True)
    pod["metadata"]["namespace"] = namespace
    if group is not None:
        pod["metadata"]["labels"]["primehub.io/group"] = escape_group(group)
    return pod


def outcome(reply: requests.Response) -> str:
    if reply.status_code == 201:
        annotations = reply.json()["metadata"].get("annotations") or {}
        if INJECTED in annotations:
            return "correct"
        return "wrong" if "mlflow webhook:" in reply.headers.get("Warning", "") else "uninjected"
    if "denied the request: mlflow webhook:" in reply.text:
        return "wrong"
    if "failed calling webhook" in reply.text:
        return "refused"
    return "error"


@dataclass
class Tally:
    counts: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    def add(self, kind: str, reply: requests.Response) -> None:
        result = outcome(reply)
        self.counts[result] += 1
        if result != "correct" and len(self.examples) < 5:
            # An admitted pod's body is the pod: what its user saw is the warning.
            said = (
                reply.headers.get("Warning") or "(no warning: the API server failed open)"
                if reply.status_code == 201
                else reply.text
            )
            self.examples.append(f"{kind}: {reply.status_code} {said.strip()[:300]}")

    @property
    def bad(self) -> int:
        return sum(n for k, n in self.counts.items() if k != "correct")

    def line(self) -> str:
        return "  ".join(f"{k} {self.counts[k]}" for k in OUTCOMES)


@contextlib.contextmanager
def pod_load(
    cp: ControlPlane, namespace: str, threads: int = 2, group: str | None = None
) -> Iterator[Tally]:
    """Notebooks and model deployments (of `group`, if given) created (server-side dry run:
    admitted, not stored) without pause until the block ends; yields the tally, complete when
    the block has ended."""
    tally = Tally()
    stop = threading.Event()
    lock = threading.Lock()
    pods = [(kind, scenario_pod(kind, namespace, group)) for kind in ("notebook", "deployment")]

    def create(k: int) -> None:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {cp.admin_token}"
        i = k
        while not stop.is_set():
            kind, pod = pods[i % 2]
            i += 1
            try:
                reply = session.post(
                    f"{cp.url}/api/v1/namespaces/{namespace}/pods",
                    json=pod,
                    params={"dryRun": "All"},
                    verify=cp.ca_file,
                    timeout=60,
                )
            except requests.RequestException:  # no API server (a fault may stop it): not ours
                with lock:
                    tally.counts["no-api-server"] += 1
                time.sleep(0.1)
                continue
            with lock:
                tally.add(kind, reply)

    workers = [threading.Thread(target=create, args=(k,)) for k in range(threads)]
    for w in workers:
        w.start()
    try:
        yield tally
    finally:
        stop.set()
        for w in workers:
            w.join()


def wait_for_pods(tally: Tally, more: int, timeout: float = 60) -> None:
    start = sum(tally.counts.values())
    wait_until(lambda: sum(tally.counts.values()) >= start + more, timeout, f"{more} more pods")


def group_namespace(cp: ControlPlane, namespace: str, url: str, ca_pem: bytes) -> None:
    """A namespace served by its own copy of the webhook configuration (same rules, pointed at
    `url`), with the example settings and Secrets: scenarios never touch what other tests use."""
    docs = kustomize("overlays/self-managed")
    config = copy.deepcopy(next(d for d in docs if d["kind"] == "MutatingWebhookConfiguration"))
    config["metadata"]["name"] = f"mlflow-webhook-{namespace}"
    for hook in config["webhooks"]:
        hook["clientConfig"] = {"url": url, "caBundle": base64.b64encode(ca_pem).decode()}
        hook["namespaceSelector"] = {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
    objects: list[Any] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        config,
    ]
    root = Path(__file__).parent.parent / "examples"
    for f in ("secrets.yaml", "settings.yaml"):
        for doc in yaml.safe_load_all((root / f).read_text()):
            if doc:
                doc["metadata"]["namespace"] = namespace
                objects.append(doc)
    result = cp.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(objects), check=False)
    assert result.returncode == 0, result.stderr

    def active() -> bool:
        pod = scenario_pod("notebook", namespace)
        reply = cp.request("POST", f"/api/v1/namespaces/{namespace}/pods", pod, dryRun="All")
        return INJECTED in (reply.json()["metadata"].get("annotations") or {})

    wait_until(active, 60, f"the webhook configuration for {namespace}")


def remove_namespace(cp: ControlPlane, namespace: str) -> None:
    cp.kubectl("delete", "mutatingwebhookconfiguration", f"mlflow-webhook-{namespace}", check=False)
    cp.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def bulk_settings(cp: ControlPlane, namespace: str, count: int) -> None:
    """`count` more MLflowSettings (groups bulk_0, bulk_1, ...) in the namespace."""
    path = f"/apis/mlflow.primehub.io/v1alpha1/namespaces/{namespace}/mlflowsettings"

    def create(i: int) -> None:
        body = {
            "apiVersion": "mlflow.primehub.io/v1alpha1",
            "kind": "MLflowSetting",
            "metadata": {"name": f"bulk-{i}"},
            "spec": {
                "group": f"bulk_{i}",
                "trackingUri": f"http://mlflow-{i}:5000",
                "trackingEnv": [
                    {
                        "name": "MLFLOW_TRACKING_PASSWORD",
                        "valueFrom": {"secretKeyRef": {"name": f"login-{i}", "key": "password"}},
                    }
                ],
            },
        }
        for _ in range(5):
            reply = cp.request("POST", path, body)
            if reply.status_code in (201, 409):
                return
        raise AssertionError(reply.text)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(create, range(count)))


@contextlib.contextmanager
def hostile_clients(port: int, ca_file: Path, each: int = 64) -> Iterator[list[socket.socket]]:
    """Connections held open that take a server's attention and give nothing back: `each` of
    bare TCP connects, finished TLS handshakes that send nothing, request headers that never
    end, and bodies cut in half. Closed when the block ends."""
    ctx = ssl.create_default_context(cafile=str(ca_file))
    held: list[socket.socket] = []

    def tls(send: bytes = b"") -> None:
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        raw.settimeout(1)  # a starved server does not answer: do not wait for it
        try:
            sock = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
        except OSError:  # a server they already starved: this one is held as a bare connect
            held.append(raw)
            return
        held.append(sock)
        sock.sendall(send)

    head = b"POST /mutate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    try:
        for _ in range(each):
            held.append(socket.create_connection(("127.0.0.1", port), timeout=10))
        for _ in range(each):
            tls()
        for _ in range(each):
            tls(head)
        for _ in range(each):
            tls(head + b"Content-Length: 5000\r\n\r\n" + b'{"apiVersion": "adm')
        yield held
    finally:
        for sock in held:
            sock.close()


class HAProxy:
    """Debian's HAProxy in TCP mode in front of webhook servers, as a Service and kube-proxy
    are: it health-checks /readyz (TLS) and sends new connections to servers that pass."""

    def __init__(self, tmp: Path, port: int, servers: list[int]) -> None:
        self.port, self.servers = port, servers
        self.config, self.stats = tmp / "haproxy.cfg", tmp / "haproxy.sock"
        lines = [
            "global",
            f"  stats socket {self.stats} mode 600 level admin",
            "  maxconn 4096",
            "defaults",
            "  mode tcp",
            "  retries 0",  # as kube-proxy: a refused connection is the caller's error
            "  timeout connect 2s",
            "  timeout client 150s",  # longer than the webhook's keep-alive
            "  timeout server 150s",
            "frontend webhook",
            f"  bind 127.0.0.1:{port}",
            "  default_backend webhooks",
            "backend webhooks",
            "  option httpchk GET /readyz",
            "  http-check expect status 200",
            # About a second to notice a server is gone, as endpoint removal takes to reach
            # kube-proxy: the webhook's shutdown delay must cover it.
            "  default-server check check-ssl verify none inter 500ms fall 2 rise 2",
            *(f"  server s{i} 127.0.0.1:{p}" for i, p in enumerate(servers)),
        ]
        self.config.write_text("\n".join(lines) + "\n")
        self.log = tmp / "haproxy.log"

    @contextlib.contextmanager
    def run(self) -> Iterator[HAProxy]:
        with running(["haproxy", "-db", "-f", str(self.config)], self.log) as proc:
            wait_until(self.stats.exists, 10, "haproxy", proc)
            yield self

    def state(self) -> dict[int, str]:
        """Port -> UP or DOWN, as HAProxy's health checks see it now."""
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(self.stats))
            s.sendall(b"show stat\n")
            text = b""
            while chunk := s.recv(65536):
                text += chunk
        rows = [line.split(",") for line in text.decode().splitlines() if line.startswith("web")]
        by_name = {row[1]: row[17] for row in rows}
        return {p: by_name.get(f"s{i}", "?").split(" ")[0] for i, p in enumerate(self.servers)}
