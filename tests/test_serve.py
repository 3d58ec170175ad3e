"""`mlflow-webhook serve` for real: gunicorn, TLS with the generated dev certificate, keep-alive."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import jsonpatch
import pytest
import requests

from tests.procs import free_port, running, wait_until
from webhook.tls import make_ca, make_serving_cert, write_atomic

ROOT = Path(__file__).parent.parent
REVIEW = json.loads((ROOT / "examples" / "admission-review.json").read_text())


@contextlib.contextmanager
def start(tmp: Path) -> Iterator[tuple[str, Path, subprocess.Popen[bytes]]]:
    port = free_port()
    args = [
        sys.executable,
        "-m",
        "webhook",
        "serve",
        "--settings-file",
        str(ROOT / "examples" / "settings.yaml"),
        "--port",
        str(port),
        "--cert-dir",
        str(tmp),
    ]
    with running(args, tmp / "serve.log") as proc:
        url = f"https://127.0.0.1:{port}"
        wait_until(
            lambda: requests.get(f"{url}/readyz", verify=tmp / "ca.crt").ok, 30, "webhook", proc
        )
        yield url, tmp, proc


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, Path, subprocess.Popen[bytes]]]:
    with start(tmp_path_factory.mktemp("serve")) as started:
        yield started


def test_serves_the_example_review_over_verified_tls_with_keep_alive(
    server: tuple[str, Path, subprocess.Popen[bytes]],
) -> None:
    url, certs, _ = server
    with requests.Session() as session:  # verify per call: REQUESTS_CA_BUNDLE beats session.verify
        answers = [
            session.post(f"{url}/mutate", json=REVIEW, verify=certs / "ca.crt") for _ in range(3)
        ]
    assert all(a.status_code == 200 for a in answers)
    patch = json.loads(base64.b64decode(answers[0].json()["response"]["patch"]))
    patched = jsonpatch.apply_patch(REVIEW["request"]["object"], patch)
    names = {e["name"] for e in patched["spec"]["containers"][0]["env"]}
    assert {"MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_PASSWORD"} <= names
    metrics = requests.get(f"{url}/metrics", verify=certs / "ca.crt").text
    assert 'outcome="injected",pod_kind="notebook"' in metrics  # summed over the workers
    # The log says what is served: gunicorn alone would say http:// (the TLS is the worker's).
    assert f"Listening at: {url} (" in (certs / "serve.log").read_text()


def renewal(certs: Path) -> tuple[bytes, bytes]:
    """A new CA (written as new-ca.crt) and a serving pair it signed: (key, certificate)."""
    ca = make_ca("renewed-ca")
    pair = make_serving_cert(ca, ["localhost", "127.0.0.1"])
    (certs / "new-ca.crt").write_bytes(ca.cert_pem())
    return pair.key_pem(), pair.cert_pem()


def served_by(url: str, ca: Path) -> bool:
    """Whether a new connection gets a certificate `ca` signed."""
    try:
        return requests.get(f"{url}/healthz", verify=ca, timeout=5).ok
    except requests.exceptions.SSLError:
        return False


def test_renewed_certificate_files_are_served_without_a_restart(
    server: tuple[str, Path, subprocess.Popen[bytes]],
) -> None:
    url, certs, proc = server
    old_ca = certs / "old-ca.crt"
    shutil.copy(certs / "ca.crt", old_ca)
    key, cert = renewal(certs)
    write_atomic(certs / "tls.key", key)
    write_atomic(certs / "tls.crt", cert)

    # Each worker notices within a second (on its next connection): soon every connection gets
    # the new certificate, and none the old one.
    new_ca = certs / "new-ca.crt"
    wait_until(lambda: all(served_by(url, new_ca) for _ in range(6)), 10, "renewed", proc)
    wait_until(lambda: not any(served_by(url, old_ca) for _ in range(6)), 10, "old gone", proc)


def test_a_worker_started_halfway_through_a_renewal_waits_for_the_pair(tmp_path: Path) -> None:
    """`mlflow-webhook certs` writes the key, then the certificate (a kubelet swaps a Secret's
    files at once; other writers need not): a worker started between the two must wait for a
    pair that matches. One that failed to boot made gunicorn stop the whole server, every
    worker with it."""
    with start(tmp_path) as (url, certs, proc):
        key, cert = renewal(certs)
        write_atomic(certs / "tls.key", key)  # the certificate is still the old one
        master = proc.pid
        victim = int(Path(f"/proc/{master}/task/{master}/children").read_text().split()[0])
        os.kill(victim, signal.SIGKILL)
        log = certs / "serve.log"
        wait_until(lambda: "waiting for a matching pair" in log.read_text(), 10, "wait", proc)
        write_atomic(certs / "tls.crt", cert)
        new_ca = certs / "new-ca.crt"
        wait_until(lambda: all(served_by(url, new_ca) for _ in range(6)), 10, "renewed", proc)
        assert proc.poll() is None


def test_an_invalid_settings_file_stops_start_up_with_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: mlflow.primehub.io/v1alpha1\nkind: MLflowSetting\n"
        "metadata: {name: x, namespace: hub}\n"
        "spec: {group: x, trackingUri: http://m,\n"
        "       artifactEnv: [{name: AWS_SECRET_ACCESS_KEY, value: k}]}\n"
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "webhook",
            "serve",
            "--settings-file",
            str(bad),
            "--port",
            str(free_port()),
            "--cert-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert (
        "MLflowSetting hub/x: spec.artifactEnv[0].value: AWS_SECRET_ACCESS_KEY looks like a "
        "credential" in result.stderr
    )
    assert "Traceback" not in result.stderr
