"""A worker at its connection limit (`--connections`) makes room, and only from connections
that lose nothing: the oldest that has sent no request head for half a second, or, when none
is that silent, the one idle longest between requests, never one whose next request has
arrived, whatever its descriptor number. A real `mlflow-webhook serve`."""

from __future__ import annotations

import contextlib
import http.client
import os
import resource
import signal
import socket
import ssl
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.test_serving import REVIEW, admitted_with_mlflow, connect, mutate, server
from tests.webhookproc import serving_certs
from webhook.worker import _has_input


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return serving_certs(tmp_path_factory.mktemp("connection-limit-certs"))


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


def _more_descriptors() -> None:
    """Room for this test's connections and the server's (which inherits the limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4096:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))


def test_whether_a_connection_has_a_request_waiting_is_seen_past_descriptor_1023(
    certs: Path,
) -> None:
    """What the worker asks of an idle connection before closing it to make room
    (`_has_input`), asked of real TLS connections whose descriptors are numbered past 1,023.
    Before, it asked `select()`, which refuses such descriptors: the error was ignored and the
    connection closed whatever had arrived on it."""
    _more_descriptors()
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(certs / "tls.crt", certs / "tls.key")
    client_tls = ssl.create_default_context(cafile=str(certs / "ca.crt"))
    listener = socket.create_server(("127.0.0.1", 0))
    filler: list[socket.socket] = []
    pairs: list[tuple[ssl.SSLSocket, ssl.SSLSocket]] = []
    try:
        while len(filler) < 1100:  # plain connections, until the next ones number past 1,023
            filler.append(socket.create_connection(listener.getsockname()))
            filler.append(listener.accept()[0])
        for _ in range(6):
            raw = socket.create_connection(listener.getsockname())
            accepted = listener.accept()[0]
            with ThreadPoolExecutor(1) as pool:
                client = pool.submit(client_tls.wrap_socket, raw, server_hostname="127.0.0.1")
                server_side = server_tls.wrap_socket(accepted, server_side=True)
                pairs.append((client.result(), server_side))
        assert min(server_side.fileno() for _, server_side in pairs) > 1023
        for client, _ in pairs[:3]:
            client.sendall(b"POST /mutate HTTP/1.1\r\n")
        waiting = [_has_input(server_side) for _, server_side in pairs]
        assert waiting == [True] * 3 + [False] * 3
    finally:
        for sock in [*filler, *(s for pair in pairs for s in pair), listener]:
            sock.close()


def test_a_worker_past_1024_descriptors_keeps_the_request_that_arrived(
    certs: Path, tmp_path: Path
) -> None:
    """The same through the server: 1,099 keep-alive connections fill a worker of 1,100
    places (its descriptors pass 1,023; the oldest idle connections are numbered highest);
    the worker is paused while a client sends its next review on the oldest idle connection
    and a newcomer takes the last place, which makes the worker close an idle connection.
    The review is answered and the newcomer served."""
    _more_descriptors()
    places = 1100
    webhook = server(
        certs,
        tmp_path,
        "--workers=1",
        f"--connections={places}",
        "--keepalive=300",
        "--request-timeout=60",
        "--shutdown-delay=0",
    )
    held: list[http.client.HTTPSConnection] = []
    newcomer: socket.socket | None = None
    try:
        for _ in range(places - 1):  # the last place: a connection that takes it makes room
            conn = connect(webhook.port, certs)
            conn.timeout = 60
            assert mutate(conn).status == 200
            held.append(conn)
        # The earliest connections (lowest descriptors) answer again: now the latest ones
        # (descriptors past 1,023) are the idle ones the worker would close first.
        for conn in held[:1050]:
            assert mutate(conn).status == 200
        (worker,) = webhook.workers()
        os.kill(worker, signal.SIGSTOP)
        try:
            oldest_idle = held[1050]
            oldest_idle.request("POST", "/mutate", REVIEW, {"Content-Type": "application/json"})
            newcomer = socket.create_connection(("127.0.0.1", webhook.port))  # the last place
            # The worker's own 0.2 s round (which makes room when it is full) comes due while
            # it is paused: on waking it finds that round and the review at once.
            time.sleep(0.5)
        finally:
            os.kill(worker, signal.SIGCONT)
        reply = oldest_idle.getresponse()
        assert reply.status == 200
        reply.read()
        assert admitted_with_mlflow(webhook.port, certs)  # and room was made for others
    finally:
        if newcomer is not None:
            newcomer.close()
        for conn in held:
            conn.close()
        webhook.stop()
