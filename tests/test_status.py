"""MLflowSetting status through the real API server: `kubectl get` shows READY and the reason
within 2 s of a change, and of two webhook servers only one (the Lease holder) ever writes."""

from __future__ import annotations

import json
import os
import signal
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.cluster import Installed
from tests.procs import free_port, wait_until
from tests.webhookproc import WebhookProcess, serving_certs
from webhook.settings.status import LEASE_SECONDS

pytestmark = pytest.mark.cluster
NS = "status"
PATH = f"/apis/mlflow.primehub.io/v1alpha1/namespaces/{NS}/mlflowsettings"
STRICT = (
    "credentials:\n  artifact: [AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION]\n"
)


def setting(name: str, group: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "mlflow.primehub.io/v1alpha1",
        "kind": "MLflowSetting",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"group": group, "trackingUri": "http://mlflow:5000", **spec},
    }


def ready(installed: Installed, name: str) -> tuple[str, str, str] | None:
    obj = installed.cp.request("GET", f"{PATH}/{name}").json()
    status = obj.get("status") or {}
    if status.get("observedGeneration") != obj["metadata"]["generation"]:
        return None
    (c,) = [c for c in status.get("conditions", []) if c["type"] == "Ready"]
    return c["status"], c["reason"], c["message"]


def holds(installed: Installed, server: WebhookProcess) -> bool:
    """Whether one of the server's workers holds the status Lease now."""
    lease = installed.cp.request(
        "GET", "/apis/coordination.k8s.io/v1/namespaces/mlflow-webhook/leases/mlflow-webhook-status"
    )
    holder = lease.json().get("spec", {}).get("holderIdentity") if lease.ok else None
    return holder in {f"{socket.gethostname()}/{pid}" for pid in server.workers()}


@pytest.fixture
def two_servers(installed: Installed, tmp_path: Path) -> Iterator[list[WebhookProcess]]:
    """The session's webhook stopped; two others (not called by the API server: they only
    write status), the first with a stricter configuration."""
    installed.webhook.stop()
    (tmp_path / "strict.yaml").write_text(STRICT)
    serving_certs(tmp_path)
    servers = [
        WebhookProcess(
            tmp_path,
            free_port(),
            tmp_path / f"webhook-{i}.log",
            ["--cluster", f"--kubeconfig={installed.cp.webhook_kubeconfig}"],
            ["--shutdown-delay=0", *([f"--config={tmp_path / 'strict.yaml'}"] if i == 0 else [])],
        )
        for i in range(2)
    ]
    try:
        servers[0].start(tmp_path / "ca.crt")
        # The first holds the Lease before the second starts: its verdicts are the ones written.
        # (A holder that did not give it up, stopped without a clean exit, lets it expire.)
        wait_until(lambda: holds(installed, servers[0]), LEASE_SECONDS + 10, "the status lease")
        servers[1].start(tmp_path / "ca.crt")
        yield servers
    finally:
        for s in servers:
            s.stop()
        installed.webhook.start(installed.trusted_ca())


def test_ready_and_its_reason_follow_the_settings_and_one_server_writes(
    installed: Installed, two_servers: list[WebhookProcess]
) -> None:
    installed.cp.request("POST", "/api/v1/namespaces", {"metadata": {"name": NS}})
    region = [{"name": "AWS_DEFAULT_REGION", "value": "us-east-1"}]
    for obj in (
        setting("good", "g1"),
        setting("dup-a", "g2"),
        setting("dup-b", "g2"),
        setting("strict", "g3", artifactEnv=region),
    ):
        r = installed.cp.request("POST", PATH, obj)
        assert r.status_code == 201, r.text

    def converged() -> bool:
        return all(ready(installed, n) for n in ("good", "dup-a", "dup-b", "strict"))

    wait_until(converged, 2, "status of every setting")
    assert ready(installed, "good") == ("True", "Valid", "serving group 'g1'")
    conflict = ready(installed, "dup-a")
    assert conflict is not None and conflict[:2] == ("False", "Conflict")
    assert "also claimed by status/dup-b" in conflict[2]
    # The stricter server holds the Lease: its verdict is written, the other's never.
    invalid = ready(installed, "strict")
    assert invalid is not None and invalid[:2] == ("False", "Invalid")
    assert "spec.artifactEnv[0].value: AWS_DEFAULT_REGION looks like a credential" in invalid[2]
    # Nothing flaps: no write at all while both servers run on.
    version = installed.cp.request("GET", f"{PATH}/strict").json()["metadata"]["resourceVersion"]
    events = installed.cp.request(
        "GET", PATH, watch="true", resourceVersion=version, timeoutSeconds="3"
    ).text.splitlines()
    assert [json.loads(e)["type"] for e in events if e] == []

    out = installed.cp.kubectl("get", "mlflowsettings", "-n", NS).stdout
    header, *rows = out.splitlines()
    assert header.split() == [
        "NAME",
        "GROUP",
        "TRACKING",
        "URI",
        "WORKSPACE",
        "READY",
        "REASON",
        "AGE",
    ]
    assert any(
        r.split()[:5] == ["dup-b", "g2", "http://mlflow:5000", "False", "Conflict"] for r in rows
    )

    # Fixing them turns them Ready.
    assert installed.cp.request("DELETE", f"{PATH}/dup-b").ok
    fixed = [
        {
            "name": "AWS_DEFAULT_REGION",
            "valueFrom": {"configMapKeyRef": {"name": "s3", "key": "region"}},
        }
    ]
    r = requests.patch(
        f"{installed.cp.url}{PATH}/strict",
        json={"spec": {"artifactEnv": fixed}},
        headers={
            "Authorization": f"Bearer {installed.cp.admin_token}",
            "Content-Type": "application/merge-patch+json",
        },
        verify=installed.cp.ca_file,
        timeout=10,
    )
    assert r.ok, r.text
    wait_until(
        lambda: (
            ready(installed, "dup-a") == ("True", "Valid", "serving group 'g2'")
            and (ready(installed, "strict") or ("",))[0] == "True"
        ),
        2,
        "fixed settings to turn Ready",
    )
    # The watch, the status writes and the Lease at once: no connection churn in the logs.
    for server in two_servers:
        assert "urllib3" not in server.log.read_text()


def test_another_server_takes_over_the_writing_when_the_writer_stops_or_dies(
    installed: Installed, two_servers: list[WebhookProcess], tmp_path: Path
) -> None:
    """The status goes on being written through a rollout (the writer gives the Lease up as it
    stops) and after a crash (the Lease expires): the two servers judge one setting differently,
    so the status shows whose verdict is written."""
    strict, lenient = two_servers
    installed.cp.request("POST", "/api/v1/namespaces", {"metadata": {"name": NS}})
    region = [{"name": "AWS_DEFAULT_REGION", "value": "us-east-1"}]
    r = installed.cp.request("POST", PATH, setting("regional", "g9", artifactEnv=region))
    assert r.status_code == 201, r.text

    def reason() -> str | None:
        return (ready(installed, "regional") or (None, None))[1]

    wait_until(lambda: reason() == "Invalid", 2, "the strict server's verdict")
    strict.stop()  # SIGTERM: the Lease is given up at once
    wait_until(lambda: reason() == "Valid", 4, "the lenient server's verdict after a rollout")
    assert holds(installed, lenient)

    strict.start(tmp_path / "ca.crt")
    assert lenient.proc is not None
    os.killpg(lenient.proc.pid, signal.SIGKILL)  # a crash: nothing is given up
    lenient.proc.wait()
    wait_until(lambda: reason() == "Invalid", LEASE_SECONDS + 4, "a takeover after a crash")
