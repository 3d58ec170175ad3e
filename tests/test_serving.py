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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.procs import free_port, wait_until
from tests.reviews import error_message
from tests.scenarios import hostile_clients
from tests.webhookproc import WebhookProcess, serving_certs

ROOT = Path(__file__).parent.parent
REVIEW = (ROOT / "examples" / "admission-review.json").read_bytes()
# The API server's own limit for a webhook call (timeoutSeconds in manifests/base/webhook.yaml):
# an answer later than this is a failure, whatever it says.
API_SERVER_TIMEOUT = 5.0
SETTINGS_FOLDER = "mlflow-webhook-settings-"  # the settings file's versions (sources.py)


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


def test_a_keep_alive_connection_serves_many_reviews(webhook: WebhookProcess, certs: Path) -> None:
    conn = connect(webhook.port, certs)
    replies = [mutate(conn) for _ in range(20)]
    assert [r.status for r in replies] == [200] * 20
    assert all(r.getheader("Connection") != "close" for r in replies)
    conn.close()


@pytest.mark.parametrize("to", ["master", "process-group"])
def test_sigterm_drains_then_stops_without_dropping_requests(
    certs: Path, tmp_path: Path, to: str
) -> None:
    """The same drain whether the master alone gets SIGTERM (a kubelet: the container's first
    process) or every process does (systemd, `tini -g`, dumb-init, `timeout`): before, the
    workers then stopped at once, cutting the kept-alive connection, and the master booted
    replacements during the drain."""
    webhook = server(certs, tmp_path, "--shutdown-delay=2", "--request-timeout=60")
    try:
        port = webhook.port
        workers = set(serving_workers(webhook, certs))
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
        if to == "master":
            webhook.terminate()
        else:
            assert webhook.proc is not None
            os.killpg(webhook.proc.pid, signal.SIGTERM)

        def readyz() -> int:
            return requests.get(
                f"{webhook.url}/readyz", verify=certs / "ca.crt", timeout=5
            ).status_code

        wait_until(lambda: readyz() == 503, 10, "readyz 503 after SIGTERM")
        # Still serving: the kept connection gets its answer, told to close; new ones are served.
        reply = mutate(kept)
        assert reply.status == 200 and reply.getheader("Connection") == "close"
        assert admitted_with_mlflow(port, certs)
        assert set(webhook.workers()) == workers  # none stopped early, none booted

        def refused() -> bool:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
            except ConnectionRefusedError:
                return True
            return False

        wait_until(refused, 30, "the listener to close after the delay")
        assert set(webhook.workers()) <= workers
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
    made = list(temporary.iterdir())  # the master's: the metrics, the settings file's versions
    assert all(p.name.startswith("mlflow-webhook-") for p in made)
    assert sorted(p.name.startswith(SETTINGS_FOLDER) for p in made) == [False, True]
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


def test_the_metrics_folder_stays_bounded_across_hundreds_of_worker_restarts(
    certs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Workers killed 200 times over: the folder holds the files of the live workers and one
    archive per kind, not those of every worker that ever ran (before: 2 more files a worker,
    read by every scrape), and the counters keep every request counted."""
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setenv("TMPDIR", str(temporary))
    webhook = server(certs, tmp_path, "--shutdown-delay=0")
    try:
        (folder,) = (p for p in temporary.iterdir() if not p.name.startswith(SETTINGS_FOLDER))
        answered = 0
        for round in range(100):
            before = serving_workers(webhook, certs)
            for pid in before:
                os.kill(pid, signal.SIGKILL)
            wait_until(
                lambda before=before: not set(before) & set(serving_workers(webhook, certs)),
                30,
                "two new workers",
            )
            if round % 10 == 0:
                answered += admitted_with_mlflow(webhook.port, certs)
        files = sorted(p.name for p in folder.glob("*.db"))
        assert webhook.proc is not None
        live = {str(pid) for pid in [webhook.proc.pid, *webhook.workers()]}  # the master too
        assert all(f.split("_")[-1][:-3] in live | {"archive"} for f in files), files
        assert len(files) <= 2 * 5 + 1 + 2, files
        assert answered == 10 and requests_counted(webhook, certs) == answered
    finally:
        webhook.stop()
