"""The server through cold starts, worker deaths and a rolling restart, judged by what the API
server's callers see (or, for the cold start, by every answer the webhook gives while it boots).
Real kube-apiserver + etcd, real webhook processes, and Debian's HAProxy standing in for the
Service in front of two replicas."""

from __future__ import annotations

import base64
import json
import os
import signal
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.cluster import ControlPlane, Installed
from tests.procs import free_port, wait_until
from tests.scenarios import HAProxy, bulk_settings, group_namespace, pod_load, wait_for_pods
from tests.webhookproc import WebhookProcess, serving_certs
from webhook.groups import escape_group

pytestmark = pytest.mark.cluster
ROOT = Path(__file__).parent.parent
SETTINGS = "/apis/mlflow.primehub.io/v1alpha1/namespaces/{}/mlflowsettings"
INJECTED = "mlflow.primehub.io/injected"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return serving_certs(tmp_path_factory.mktemp("rollout-certs"))


def replica(cp: ControlPlane, certs: Path, log: Path, *extra: str) -> WebhookProcess:
    return WebhookProcess(
        certs,
        free_port(),
        log,
        ["--cluster", f"--kubeconfig={cp.webhook_kubeconfig}"],
        list(extra),
    )


@pytest.fixture(scope="module")
def cp(installed: Installed) -> ControlPlane:
    """The control plane with manifests/ applied (the CRD, the webhook's identity)."""
    return installed.cp


@pytest.fixture(scope="module")
def bulk(cp: ControlPlane) -> Iterator[str]:
    """2,000 settings in one namespace: long enough to list that a worker answering before its
    list is complete would be caught."""
    namespace = "bulk"
    cp.request("POST", "/api/v1/namespaces", {"metadata": {"name": namespace}})
    bulk_settings(cp, namespace, 2000)
    yield namespace
    cp.request("DELETE", SETTINGS.format(namespace))


def test_no_answer_before_the_settings_are_listed_at_start_or_after_a_worker_dies(
    cp: ControlPlane, certs: Path, tmp_path: Path, bulk: str
) -> None:
    review = json.loads((ROOT / "examples" / "admission-review.json").read_text())
    review["request"]["namespace"] = bulk
    review["request"]["object"]["metadata"]["labels"]["primehub.io/group"] = escape_group(
        "bulk_1999"
    )
    body = json.dumps(review)
    seen: Counter[str] = Counter()
    wrong: list[str] = []
    stop = threading.Event()
    webhook = replica(cp, certs, tmp_path / "webhook.log", "--shutdown-delay=0")

    def ask() -> None:
        while not stop.is_set():
            try:
                reply = requests.post(
                    f"{webhook.url}/mutate",
                    data=body,
                    headers={"Content-Type": "application/json"},
                    verify=certs / "ca.crt",
                    timeout=5,
                )
            except requests.RequestException:
                seen["unavailable"] += 1  # failurePolicy decides: never a wrong answer
                continue
            if reply.status_code == 503:
                seen["unavailable"] += 1
                continue
            answer = reply.json()["response"]
            patch = json.loads(base64.b64decode(answer.get("patch", "") or b"W10="))
            if any(op["value"] == {INJECTED: f"{bulk}/bulk-1999"} for op in patch):
                seen["correct"] += 1
            else:
                seen["wrong"] += 1
                wrong.append(json.dumps(answer)[:300])

    askers = [threading.Thread(target=ask) for _ in range(2)]
    webhook.launch()
    for t in askers:
        t.start()
    try:
        wait_until(lambda: seen["correct"] >= 100, 60, "correct answers after the start")
        victim = webhook.workers()[0]
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: len(w := webhook.workers()) == 2 and victim not in w, 60, "a new worker")
        count = seen["correct"]
        wait_until(lambda: seen["correct"] >= count + 300, 60, "answers after the respawn")
    finally:
        stop.set()
        for t in askers:
            t.join()
        webhook.stop()
    assert seen["wrong"] == 0, wrong[:3]


def test_a_rolling_restart_behind_a_load_balancer_loses_nothing(
    cp: ControlPlane, certs: Path, tmp_path: Path
) -> None:
    replicas = [
        replica(cp, certs, tmp_path / f"webhook-{i}.log", "--shutdown-delay=2") for i in range(2)
    ]
    for r in replicas:
        r.start(certs / "ca.crt")
    lb = HAProxy(tmp_path, free_port(), [r.port for r in replicas])
    try:
        with lb.run():
            wait_until(lambda: set(lb.state().values()) == {"UP"}, 30, "both replicas UP")
            ca_pem = (certs / "ca.crt").read_bytes()
            group_namespace(cp, "rollout", f"https://127.0.0.1:{lb.port}/mutate", ca_pem)
            with pod_load(cp, "rollout", threads=8) as tally:
                wait_for_pods(tally, 30)
                for r in replicas:  # as a Deployment's rolling update does, one at a time
                    r.terminate()
                    wait_until(lambda r=r: lb.state()[r.port] == "DOWN", 30, "marked down")
                    assert r.proc is not None and r.proc.wait(60) == 0
                    r.start(certs / "ca.crt")  # the new pod, on the same address
                    wait_until(lambda r=r: lb.state()[r.port] == "UP", 30, "marked up")
                    wait_for_pods(tally, 30)
            assert tally.bad == 0, (tally.line(), tally.examples)
    finally:
        for r in replicas:
            r.stop()
