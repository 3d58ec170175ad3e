"""The settings file (the embedded default) while the server runs: reloaded in every worker
when it changes, a bad one refused with the last good settings kept, and a worker that starts
later (a crash, an OOM kill) serving what the others serve. A real `mlflow-webhook serve`."""

from __future__ import annotations

import base64
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonpatch
import pytest
import requests
from cryptography import x509

from tests.procs import free_port, wait_until
from tests.test_serving import REVIEW, ROOT, connect, serving_workers
from tests.webhookproc import WebhookProcess, serving_certs


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return serving_certs(tmp_path_factory.mktemp("file-source-certs"))


def setting(uri: str) -> str:
    return (
        "apiVersion: mlflow.primehub.io/v1alpha1\nkind: MLflowSetting\n"
        "metadata: {name: newteam, namespace: hub}\n"
        f"spec: {{group: newteam, trackingUri: '{uri}'}}\n"
    )


@pytest.fixture
def settings(tmp_path: Path) -> Path:
    path = tmp_path / "settings.yaml"
    path.write_text((ROOT / "examples" / "settings.yaml").read_text())
    return path


@pytest.fixture
def webhook(certs: Path, tmp_path: Path, settings: Path) -> Iterator[WebhookProcess]:
    proc = WebhookProcess(
        certs,
        free_port(),
        tmp_path / "serve.log",
        ["--settings-file", str(settings)],
        ["--shutdown-delay=0", "--log-level=info"],
    )
    proc.start(certs / "ca.crt")
    yield proc
    proc.stop()


def answer(webhook: WebhookProcess, certs: Path) -> dict[str, Any]:
    """The answer for a notebook of group newteam, over a new connection (so that the answers
    come from either worker)."""
    review = json.loads(REVIEW)
    review["request"]["object"]["metadata"]["labels"]["primehub.io/group"] = "escaped-newteam"
    conn = connect(webhook.port, certs)
    conn.request("POST", "/mutate", json.dumps(review), {"Content-Type": "application/json"})
    result: dict[str, Any] = json.loads(conn.getresponse().read())["response"]
    conn.close()
    return result


def tracking_uri(webhook: WebhookProcess, certs: Path) -> str | None:
    reply = answer(webhook, certs)
    if "patch" not in reply:
        return None
    pod = json.loads(REVIEW)["request"]["object"]
    patched = jsonpatch.apply_patch(pod, json.loads(base64.b64decode(reply["patch"])))
    env = {e["name"]: e.get("value") for e in patched["spec"]["containers"][0]["env"]}
    return env.get("MLFLOW_TRACKING_URI")


def refusals(log: Path) -> int:
    return log.read_text().count("settings file changed but cannot be used")


def test_the_settings_file_is_reloaded_and_a_bad_one_keeps_the_last_good(
    webhook: WebhookProcess, certs: Path, settings: Path, tmp_path: Path
) -> None:
    assert "no MLflowSetting for group 'newteam'" in answer(webhook, certs)["warnings"][0]
    with settings.open("a") as f:
        f.write("---\n" + setting("http://mlflow.newteam:5000"))
    # Every worker reloads: ten answers in a row come from the new file.
    wait_until(
        lambda: all("patch" in answer(webhook, certs) for _ in range(10)), 15, "the new group"
    )
    settings.write_text("kind: MlflowSetting\n")  # a bad edit
    wait_until(lambda: refusals(tmp_path / "serve.log"), 15, "refusal")
    assert all("patch" in answer(webhook, certs) for _ in range(10))  # the last good stay
    text = requests.get(f"{webhook.url}/metrics", verify=certs / "ca.crt", timeout=5).text
    values = {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in text.splitlines()
        if line.startswith("mlflow_webhook_") and " " in line
    }
    assert values["mlflow_webhook_settings_reload_errors_total"] >= 1
    assert values["mlflow_webhook_ready"] == 1
    assert abs(values["mlflow_webhook_settings_last_sync_timestamp_seconds"] - time.time()) < 60
    cert = x509.load_pem_x509_certificate((certs / "tls.crt").read_bytes())
    expiry = values["mlflow_webhook_certificate_expiry_timestamp_seconds"]
    assert expiry == cert.not_valid_after_utc.timestamp()


def test_a_worker_started_after_changes_serves_what_the_others_serve(
    webhook: WebhookProcess, certs: Path, settings: Path, tmp_path: Path
) -> None:
    """File A, then a valid B (both workers reload), then an unusable C, then a worker killed:
    its replacement must answer from B like the other. Before, it answered from A, the file
    the master read at start (16 of 30 answers from A, and still 15 of 15 ten seconds later,
    while /readyz said ready)."""
    first = settings.read_text()
    settings.write_text(first + "---\n" + setting("http://a:5000"))
    wait_until(
        lambda: {tracking_uri(webhook, certs) for _ in range(10)} == {"http://a:5000"}, 15, "A"
    )
    settings.write_text(first + "---\n" + setting("http://b:5000"))
    wait_until(
        lambda: {tracking_uri(webhook, certs) for _ in range(10)} == {"http://b:5000"}, 15, "B"
    )
    settings.write_text("kind: MlflowSetting\n")
    wait_until(lambda: refusals(tmp_path / "serve.log"), 15, "C refused")
    before = serving_workers(webhook, certs)
    os.kill(before[0], signal.SIGKILL)
    wait_until(
        lambda: before[0] not in (now := serving_workers(webhook, certs)) and len(now) == 2,
        30,
        "a replacement worker serving",
    )
    assert [tracking_uri(webhook, certs) for _ in range(30)] == ["http://b:5000"] * 30
    assert refusals(tmp_path / "serve.log") == 1  # read by one process: said once, not by each


def test_a_good_version_overwritten_at_once_by_a_bad_one_leaves_every_worker_alike(
    webhook: WebhookProcess, certs: Path, settings: Path, tmp_path: Path
) -> None:
    """A valid B written, and at once an unusable C, while workers come and go: whatever was
    seen of B, every worker, a new one included, answers the same (before, a worker that had
    read B and a master that had missed it answered apart)."""
    first = settings.read_text()
    settings.write_text(first + "---\n" + setting("http://a:5000"))
    wait_until(
        lambda: {tracking_uri(webhook, certs) for _ in range(10)} == {"http://a:5000"}, 15, "A"
    )
    settings.write_text(first + "---\n" + setting("http://b:5000"))
    settings.write_text("kind: MlflowSetting\n")
    wait_until(lambda: refusals(tmp_path / "serve.log"), 15, "C refused")
    before = serving_workers(webhook, certs)
    os.kill(before[0], signal.SIGKILL)
    wait_until(
        lambda: before[0] not in (now := serving_workers(webhook, certs)) and len(now) == 2,
        30,
        "a replacement worker serving",
    )
    assert len({tracking_uri(webhook, certs) for _ in range(30)}) == 1
