"""The server as an adversary meets it: workers that die, clients that hold connections and send
nothing (or too little, too slowly), and a SIGTERM while requests are in flight. A real
`mlflow-webhook serve` (gunicorn master, 2 gevent workers, TLS) on the example settings."""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import signal
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography import x509

from tests.procs import free_port, wait_until
from tests.reviews import error_message
from tests.scenarios import hostile_clients
from tests.webhookproc import WebhookProcess, serving_certs

ROOT = Path(__file__).parent.parent
REVIEW = (ROOT / "examples" / "admission-review.json").read_bytes()
# The API server's own limit for a webhook call (timeoutSeconds in manifests/base/webhook.yaml):
# an answer later than this is a failure, whatever it says.
API_SERVER_TIMEOUT = 5.0


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return serving_certs(tmp_path_factory.mktemp("serving-certs"))


def server(certs: Path, tmp: Path, *extra: str) -> WebhookProcess:
    source = ["--settings-file", str(ROOT / "examples" / "settings.yaml")]
    proc = WebhookProcess(certs, free_port(), tmp / "serve.log", source, list(extra))
    proc.start(certs / "ca.crt")
    return proc


@pytest.fixture
def webhook(certs: Path, tmp_path: Path) -> Iterator[WebhookProcess]:
    proc = server(certs, tmp_path, "--request-timeout=2", "--shutdown-delay=0", "--keepalive=90.5")
    yield proc
    proc.stop()


def tls_context(certs: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(certs / "ca.crt"))


def connect(port: int, certs: Path) -> http.client.HTTPSConnection:
    return http.client.HTTPSConnection(
        "127.0.0.1", port, context=tls_context(certs), timeout=API_SERVER_TIMEOUT
    )


def mutate(conn: http.client.HTTPSConnection) -> http.client.HTTPResponse:
    conn.request("POST", "/mutate", REVIEW, {"Content-Type": "application/json"})
    reply = conn.getresponse()
    reply.read()
    return reply


def injected(body: bytes) -> bool:
    patch = json.loads(base64.b64decode(json.loads(body)["response"]["patch"]))
    return any(
        op["value"].get("name") == "MLFLOW_TRACKING_URI" for op in patch if "env" in op["path"]
    )


def admitted_with_mlflow(port: int, certs: Path) -> bool:
    """One review over a new connection, answered within the API server's timeout."""
    conn = connect(port, certs)
    try:
        conn.request("POST", "/mutate", REVIEW, {"Content-Type": "application/json"})
        reply = conn.getresponse()
        return reply.status == 200 and injected(reply.read())
    finally:
        conn.close()


def requests_counted(webhook: WebhookProcess, certs: Path) -> float:
    text = requests.get(f"{webhook.url}/metrics", verify=certs / "ca.crt", timeout=5).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("mlflow_webhook_admission_requests_total{")
    )


def serving_workers(webhook: WebhookProcess, certs: Path) -> list[int]:
    """The two workers, once /readyz counts both as serving: /readyz is ready with one, and a
    worker still booting acts on no signal (it holds gunicorn's master handlers until its own
    are set up), so a signal sent to it would test nothing."""

    def both() -> list[int] | None:
        ready = requests.get(f"{webhook.url}/readyz", verify=certs / "ca.crt", timeout=5)
        workers = webhook.workers()
        return (
            workers if ready.json().get("workers") == {"serving": 2} and len(workers) == 2 else None
        )

    found: list[int] = wait_until(both, 30, "both workers serving")
    return found


def raw_exchange(webhook: WebhookProcess, certs: Path, sent: bytes) -> tuple[int, Any]:
    """Sends bytes as they are (what http.client would not send) and reads the answer."""
    plain = socket.create_connection(("127.0.0.1", webhook.port), timeout=10)
    with tls_context(certs).wrap_socket(plain, server_hostname="127.0.0.1") as tls:
        tls.sendall(sent)
        reply = http.client.HTTPResponse(tls)  # type: ignore[arg-type]
        reply.begin()
        return reply.status, json.loads(reply.read())


def chunked(body: bytes, size: int = 1 << 16) -> bytes:
    pieces = [body[i : i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (chunked(REVIEW), None),
        (b"zz\r\nabc\r\n0\r\n\r\n", "body could not be read: InvalidChunkSize"),
        (chunked(b'{"a": "' + b"x" * (9 << 20) + b'"}'), "body of 8388608 bytes or more"),
    ],
    ids=["whole", "broken-chunk", "over-the-limit"],
)
def test_a_chunked_body_is_read_whole_or_refused_with_a_reason(
    webhook: WebhookProcess, certs: Path, body: bytes, reason: str | None
) -> None:
    head = b"POST /mutate HTTP/1.1\r\nHost: webhook\r\nContent-Type: application/json\r\n"
    status, answer = raw_exchange(
        webhook, certs, head + b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + body
    )
    if reason is None:
        assert (status, injected(json.dumps(answer).encode())) == (200, True)
    else:
        assert (status, error_message(answer, 400)) == (400, reason)
    assert admitted_with_mlflow(webhook.port, certs)


@pytest.mark.parametrize(
    ("head", "status", "reason"),
    [
        (b"POST /mutate HTTP/1.1\r\nContent-Length: -1\r\n", 400, "CONTENT-LENGTH"),
        (b"POST /mutate HTTP/1.1\r\nTransfer-Encoding: gzip\r\n", 400, "TRANSFER-ENCODING"),
        (b"GARBAGE\r\n", 400, "Invalid HTTP request line: 'GARBAGE'"),
        (b"POST /mutate HTTP/1.1\r\nX: " + b"a" * 20_000 + b"\r\n", 431, "headers"),
        (b"POST /mutate?" + b"a" * 9_000 + b" HTTP/1.1\r\n", 414, "Request Line is too large"),
    ],
    ids=["content-length", "transfer-coding", "request-line", "headers-too-large", "uri-too-long"],
)
def test_a_request_the_http_server_cannot_read_gets_a_status_with_the_reason(
    webhook: WebhookProcess, certs: Path, head: bytes, status: int, reason: str
) -> None:
    """The HTTP parser's refusals (before the app sees anything) are JSON like every other
    error, not gunicorn's HTML page, and the worker goes on serving."""
    got, answer = raw_exchange(webhook, certs, head + b"Host: webhook\r\n\r\n{}")
    assert got == status
    assert reason in error_message(answer, status)
    assert admitted_with_mlflow(webhook.port, certs)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGABRT, signal.SIGKILL])
def test_a_worker_exit_never_stops_the_server(
    webhook: WebhookProcess, certs: Path, sig: signal.Signals
) -> None:
    before = serving_workers(webhook, certs)
    victim = before[0]
    # ABRT is what gunicorn's master sends a worker that stopped answering; it exits at once,
    # so what it had accepted is lost: the assertions start once it is gone.
    os.kill(victim, sig)
    wait_until(lambda: victim not in webhook.workers(), 30, "the worker to exit")
    answers = [admitted_with_mlflow(webhook.port, certs) for _ in range(30)]
    assert answers == [True] * 30

    def replaced() -> list[int] | None:
        workers = webhook.workers()
        return workers if len(workers) == 2 else None

    now = wait_until(replaced, 30, "a replacement worker")
    assert before[1] in now and victim not in now
    # The replacement serves too, and the counters kept what the dead worker counted.
    os.kill(before[1], signal.SIGKILL)
    wait_until(lambda: before[1] not in webhook.workers(), 30, "the other worker to exit")
    answers = [admitted_with_mlflow(webhook.port, certs) for _ in range(30)]
    assert answers == [True] * 30
    assert requests_counted(webhook, certs) == 60


def test_slow_and_idle_clients_cannot_starve_it(webhook: WebhookProcess, certs: Path) -> None:
    with hostile_clients(webhook.port, certs / "ca.crt", each=64) as held:
        # While they hold on: every review is answered, within the API server's time.
        answers = [admitted_with_mlflow(webhook.port, certs) for _ in range(50)]
        assert answers == [True] * 50
        # And none of them holds on forever: each is closed by the server at its deadline.
        for sock in held[::16]:
            sock.settimeout(30)
            with contextlib.suppress(ConnectionResetError, ssl.SSLError):
                assert sock.recv(1) == b""


def test_connections_left_open_after_a_request_cannot_lock_clients_out(
    certs: Path, tmp_path: Path
) -> None:
    """One client opens more keep-alive connections than the workers take (20 each here, 1,000
    by default), sends a review on each and keeps them: at the limit the connection idle
    longest is closed, so new clients (the API server) are still answered in time."""
    webhook = server(certs, tmp_path, "--connections=20", "--shutdown-delay=0")
    held: list[http.client.HTTPSConnection] = []
    try:
        for _ in range(60):
            conn = connect(webhook.port, certs)
            assert mutate(conn).status == 200
            held.append(conn)
        answers = [admitted_with_mlflow(webhook.port, certs) for _ in range(20)]
        assert answers == [True] * 20
        # Idle ones were closed to make room (the longest idle of each worker; how connections
        # spread over the two workers is the kernel's choice), the most recent still serves.
        assert mutate(held[-1]).status == 200
        still_open = 0
        for conn in held[:-1]:
            with contextlib.suppress(http.client.HTTPException, OSError):
                still_open += mutate(conn).status == 200
        assert still_open < 2 * 20
    finally:
        for conn in held:
            conn.close()
        webhook.stop()


def test_a_flood_of_silent_connections_costs_no_client_its_place(
    certs: Path, tmp_path: Path
) -> None:
    """More bare TCP connects than the workers take (20 each here), never sending a byte: the
    oldest silent ones are closed to make room, so new clients are answered in time (before:
    the first waited out the API server's timeout), and a keep-alive connection that is idle
    between reviews, as the API server's are, is not the one that goes."""
    webhook = server(certs, tmp_path, "--connections=20", "--shutdown-delay=0")
    api_server = connect(webhook.port, certs)
    flood: list[socket.socket] = []
    try:
        assert mutate(api_server).status == 200
        flood = [socket.create_connection(("127.0.0.1", webhook.port)) for _ in range(60)]
        answers = [admitted_with_mlflow(webhook.port, certs) for _ in range(10)]
        assert answers == [True] * 10
        assert mutate(api_server).status == 200
    finally:
        for sock in flood:
            sock.close()
        api_server.close()
        webhook.stop()


def test_a_keep_alive_connection_serves_many_reviews(webhook: WebhookProcess, certs: Path) -> None:
    conn = connect(webhook.port, certs)
    replies = [mutate(conn) for _ in range(20)]
    assert [r.status for r in replies] == [200] * 20
    assert all(r.getheader("Connection") != "close" for r in replies)
    conn.close()


def test_sigterm_drains_then_stops_without_dropping_requests(certs: Path, tmp_path: Path) -> None:
    webhook = server(certs, tmp_path, "--shutdown-delay=2", "--request-timeout=60")
    try:
        port = webhook.port
        kept = connect(port, certs)
        assert mutate(kept).status == 200
        # A request in flight across the whole shutdown: headers and half its body now.
        slow = tls_context(certs).wrap_socket(
            socket.create_connection(("127.0.0.1", port), timeout=30), server_hostname="127.0.0.1"
        )
        slow.sendall(
            b"POST /mutate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(REVIEW) + REVIEW[:200]
        )
        webhook.terminate()

        def readyz() -> int:
            return requests.get(
                f"{webhook.url}/readyz", verify=certs / "ca.crt", timeout=5
            ).status_code

        wait_until(lambda: readyz() == 503, 10, "readyz 503 after SIGTERM")
        # Still serving: the kept connection gets its answer, told to close; new ones are served.
        reply = mutate(kept)
        assert reply.status == 200 and reply.getheader("Connection") == "close"
        assert admitted_with_mlflow(port, certs)

        def refused() -> bool:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
            except ConnectionRefusedError:
                return True
            return False

        wait_until(refused, 30, "the listener to close after the delay")
        slow.sendall(REVIEW[200:])  # the request in flight still completes
        answer = slow.recv(65536)
        assert answer.startswith(b"HTTP/1.1 200 ")
        assert webhook.proc is not None
        assert webhook.proc.wait(30) == 0
    finally:
        webhook.stop()


def test_no_metrics_folder_is_left_behind(
    certs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Its own temporary folder: other servers on the machine make and remove theirs meanwhile.
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setenv("TMPDIR", str(temporary))
    webhook = server(certs, tmp_path, "--shutdown-delay=0")
    assert [p.name[:15] for p in temporary.iterdir()] == ["mlflow-webhook-"]
    os.kill(webhook.workers()[0], signal.SIGKILL)
    assert admitted_with_mlflow(webhook.port, certs)
    webhook.terminate()
    assert webhook.proc is not None and webhook.proc.wait(30) == 0
    assert list(temporary.iterdir()) == []


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


def test_huge_distinct_labels_do_not_grow_a_worker(certs: Path, tmp_path: Path) -> None:
    webhook = server(certs, tmp_path, "--workers=1", "--shutdown-delay=0")
    try:
        (worker,) = webhook.workers()
        conn = connect(webhook.port, certs)
        review = json.loads(REVIEW)
        labels = review["request"]["object"]["metadata"]["labels"]
        mutate(conn)  # warm up: imports, first-request allocations
        before = rss_mib(worker)
        for i in range(30):
            labels["primehub.io/group"] = f"escaped-{i:02d}" + "x" * 1_000_000
            conn.request(
                "POST", "/mutate", json.dumps(review), {"Content-Type": "application/json"}
            )
            reply = conn.getresponse()
            answer = json.loads(reply.read())["response"]
            assert answer["allowed"] and "patch" not in answer
            assert "primehub.io/group is not a valid label value" in answer["warnings"][0]
        grown = rss_mib(worker) - before
        assert grown < 32, f"a worker grew by {grown:.0f} MiB"  # it was 250 MiB
    finally:
        webhook.stop()


def test_the_settings_file_is_reloaded_and_a_bad_one_keeps_the_last_good(
    certs: Path, tmp_path: Path
) -> None:
    settings = tmp_path / "settings.yaml"
    settings.write_text((ROOT / "examples" / "settings.yaml").read_text())
    webhook = WebhookProcess(
        certs,
        free_port(),
        tmp_path / "serve.log",
        ["--settings-file", str(settings)],
        ["--shutdown-delay=0", "--log-level=info"],
    )
    webhook.start(certs / "ca.crt")
    review = json.loads(REVIEW)
    review["request"]["object"]["metadata"]["labels"]["primehub.io/group"] = "escaped-newteam"

    def answer() -> dict[str, Any]:
        conn = connect(webhook.port, certs)
        conn.request("POST", "/mutate", json.dumps(review), {"Content-Type": "application/json"})
        result: dict[str, Any] = json.loads(conn.getresponse().read())["response"]
        conn.close()
        return result

    try:
        assert "no MLflowSetting for group 'newteam'" in answer()["warnings"][0]
        with settings.open("a") as f:
            f.write(
                "---\napiVersion: mlflow.primehub.io/v1alpha1\nkind: MLflowSetting\n"
                "metadata: {name: newteam, namespace: hub}\n"
                "spec: {group: newteam, trackingUri: 'http://mlflow.newteam:5000'}\n"
            )
        # Every worker reloads: ten answers in a row come from the new file.
        wait_until(lambda: all("patch" in answer() for _ in range(10)), 15, "the new group")
        settings.write_text("kind: MlflowSetting\n")  # a bad edit
        wait_until(lambda: "cannot be used" in (tmp_path / "serve.log").read_text(), 15, "refusal")
        assert all("patch" in answer() for _ in range(10))  # the last good settings stay
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
    finally:
        webhook.stop()
