"""A TCP relay in front of a real server (the kube-apiserver), standing for the network path
between the webhook and it: `stall()` stops relaying bytes without closing anything, as a
half-open connection or a hung proxy does (connections are still accepted, and then carry
nothing); `resume()` carries on with what was held. TLS passes through untouched. `received`
counts the bytes the server sent to clients (what a download fetched, headers included); `rate`
(bytes per second, all connections together) makes it a slow network."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

from tests.procs import free_port


class TcpProxy:
    def __init__(self, target: tuple[str, int], rate: float = 0) -> None:
        self.target, self.rate = target, rate
        self._started = time.monotonic()
        self.port = free_port()
        self._flowing = threading.Event()
        self._flowing.set()
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self.received = 0

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def stall(self) -> None:
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    @contextlib.contextmanager
    def run(self) -> Iterator[TcpProxy]:
        listener = socket.create_server(("127.0.0.1", self.port))
        self._keep(listener)
        thread = threading.Thread(target=self._accept, args=(listener,), daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._closed.set()
            self._flowing.set()
            with self._lock:
                for sock in self._sockets:
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)
                    sock.close()

    def _keep(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)

    def _accept(self, listener: socket.socket) -> None:
        while not self._closed.is_set():
            try:
                client, _ = listener.accept()
                server = socket.create_connection(self.target)
            except OSError:
                return
            self._keep(client)
            self._keep(server)
            for src, dst, counted in ((client, server, False), (server, client, True)):
                pump = threading.Thread(target=self._pump, args=(src, dst, counted), daemon=True)
                pump.start()

    def _pump(self, src: socket.socket, dst: socket.socket, counted: bool) -> None:
        try:
            while True:
                self._flowing.wait()
                data = src.recv(65536)
                if not data:
                    break
                self._flowing.wait()  # held while stalled, sent when resumed
                if self._closed.is_set():
                    break
                dst.sendall(data)
                if counted:
                    with self._lock:
                        self.received += len(data)
                        due = self._started + self.received / self.rate if self.rate else 0
                    time.sleep(max(due - time.monotonic(), 0))  # the network's pace
        except OSError:
            pass
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)
