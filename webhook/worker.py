"""The gunicorn worker that serves the webhook: gevent, one greenlet per connection.

Why our own, on top of gunicorn's gevent worker:

- A connection costs a greenlet, never a worker thread, and never forever: the TLS handshake and
  each request (headers and body) must finish within `request_timeout`, and a keep-alive
  connection may idle for `keepalive` seconds between requests (longer than the API server's
  own idle timeout, so it is the client that closes idle connections, not us).
- TLS is set up per connection from the reloading context, so renewed certificate files apply
  to new connections at once (gunicorn's gevent worker fixes one context per worker).
- A worker accepts no connection before its settings are complete (`ready_timeout` bounds the
  wait; after it, /mutate answers 503 until the settings arrive).
- An answer leaves in one write: gunicorn writes the headers and the body separately, and over
  TLS each write is its own record and system call.
- At its connection limit (which bounds memory) a worker makes room: first by closing the
  oldest connection that has sent no request head for SILENT_GRACE (a bare connect, a handshake
  or headers that do not come: no client the API server runs is that slow), checked on every
  accept and five times a second; only when there is none silent at all, the connection idle
  longest between requests (a client loses nothing with it). So neither a flood of silent
  connections nor keep-alive connections held open after a request lock the API server out,
  and a flood never costs the API server its idle keep-alive connections.
- While the server drains (SIGTERM received by the master) every answer carries
  `Connection: close`, so clients move to another replica; when the worker stops, idle
  keep-alive connections are closed at once and requests in flight finish. A SIGTERM that
  reaches the worker too (sent to the whole process group, as systemd, `tini -g`, dumb-init and
  `timeout` do) changes nothing: the master's drain decides when it stops. Only a SIGTERM to
  the worker alone (the master draining nothing within TERM_GRACE) stops it by itself.
"""

from __future__ import annotations

import contextlib
import json
import logging
import select
import time
from functools import partial
from typing import Any

import gevent
import gevent.socket
from gevent.monkey import get_original
from gevent.pool import Pool
from gevent.server import StreamServer
from gunicorn import http, util
from gunicorn.workers.base_async import AsyncWorker
from gunicorn.workers.ggevent import GeventWorker

from webhook.admission import failure
from webhook.runstate import WorkerState

log = logging.getLogger(__name__)
_poll = get_original("select", "poll")  # the system call, never the event loop's

# How long a connection may go without sending a request head before it is the first to be
# closed when the worker is at its connection limit.
SILENT_GRACE = 0.5
# How long after a SIGTERM the worker waits for the master to start draining (the signal went
# to the whole process group) before it takes the signal as its own.
TERM_GRACE = 2.0


class WebhookWorker(GeventWorker):  # type: ignore[misc]
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._running = True
        self._term_at: float | None = None  # when a SIGTERM came that the master may share
        # Connections waiting for their next request (greenlet: socket), longest waiting first.
        self._idle: dict[gevent.Greenlet, Any] = {}
        # Connections whose request head has not come yet (greenlet: since when), oldest first.
        self._silent: dict[gevent.Greenlet, float] = {}
        self._pools: list[Pool] = []
        super().__init__(*args, **kwargs)

    # gunicorn reads `alive` before each answer: False makes it send `Connection: close`.
    @property
    def alive(self) -> bool:
        return self._should_run() and not self.app.runstate.draining

    @alive.setter
    def alive(self, value: bool) -> None:
        self._running = value

    def _should_run(self) -> bool:
        runstate = self.app.runstate
        term = self._term_at
        if term is not None and not runstate.draining and time.monotonic() - term > TERM_GRACE:
            self._running = False  # the SIGTERM was for this worker alone
        return self._running and not runstate.stopping

    def handle_exit(self, sig: int, frame: Any) -> None:
        """SIGTERM: see the module's docstring (gunicorn's own stops the worker at once)."""
        if self._term_at is None:
            self._term_at = time.monotonic()

    def run(self) -> None:
        self._wait_for_settings()
        servers = []
        for listener in self.sockets:
            listener.setblocking(1)
            pool = Pool(self.worker_connections)
            self._pools.append(pool)
            server = StreamServer(listener, handle=partial(self.handle, listener), spawn=pool)
            if self.cfg.workers > 1:
                server.max_accept = 1  # spread connections over the workers
            server.start()
            servers.append(server)
        while self._should_run():
            self.notify()
            self._make_room()
            gevent.sleep(0.2)
        for server in servers:
            server.close()  # no new connections; the master closed its copy of the listener
        gevent.killall(list(self._idle), block=False)  # nothing in flight on those
        deadline = time.monotonic() + self.cfg.graceful_timeout
        while time.monotonic() < deadline and any(
            s.pool.free_count() != s.pool.size for s in servers
        ):
            self.notify()
            gevent.sleep(0.05)
        with gevent.Timeout(2, False):  # e.g. give the status lease up: another writes at once
            self.app.runtime.stop()

    def _wait_for_settings(self) -> None:
        """Accept nothing before the settings are complete; bounded, so a server whose API
        server is away still answers (503) and `failurePolicy` decides quickly."""
        runtime, runstate = self.app.runtime, self.app.runstate
        deadline = time.monotonic() + self.app.opts.ready_timeout
        while self._should_run() and not runtime.wait_synced(0.5):
            self.notify()
            if time.monotonic() >= deadline:
                log.error(
                    "settings not loaded after %.0f s; answering 503 until they are",
                    self.app.opts.ready_timeout,
                )
                runstate.set(self.slot, WorkerState.STALLED)

                def serving_when_synced() -> None:
                    while not runtime.wait_synced(60):
                        pass
                    runstate.set(self.slot, WorkerState.SERVING)
                    log.info("settings loaded; serving")

                gevent.spawn(serving_when_synced)
                return
        runstate.set(self.slot, WorkerState.SERVING)

    def handle(self, listener: Any, client: Any, addr: Any) -> None:
        self._make_room()  # this connection may have taken the last place
        me = gevent.getcurrent()
        self._silent[me] = time.monotonic()
        client.setblocking(1)
        timeout = self.app.opts.request_timeout
        conn = client
        try:
            with gevent.Timeout(timeout):
                conn = self.app.tls.get().wrap_socket(
                    client, server_side=True, do_handshake_on_connect=False
                )
                conn.do_handshake()
            parser = http.get_parser(self.cfg, conn, addr)
            name = listener.getsockname()
            while True:
                with gevent.Timeout(timeout):  # headers, body and answer
                    request = next(parser)
                    self._silent.pop(me, None)
                    out = _OneWrite(conn)
                    try:
                        # gunicorn's gevent worker drops this answer (keep the connection?).
                        if not AsyncWorker.handle_request(self, name, request, out, addr):
                            return
                    finally:
                        out.flush()
                if not self._next_request_arrives(conn, parser):
                    return
                self._silent[me] = time.monotonic()  # until the next request's head is here
        except gevent.Timeout:
            log.debug("closing a connection from %s: too slow", addr)
        except (StopIteration, http.errors.NoMoreData, OSError, gevent.GreenletExit):
            pass  # the client closed, or asked us to, or we are stopping
        except Exception as e:
            self.handle_error(None, conn, addr, e)
        finally:
            self._silent.pop(me, None)
            util.close(conn)

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        """A request gunicorn could not read or answer: its verdict (status and log line), sent
        as a Kubernetes Status like every other error of this server instead of its HTML page."""
        page = _OneWrite(client)
        super().handle_error(req, page, addr, exc)
        head = page.written.split(b"\r\n", 1)[0].decode("latin-1")  # HTTP/1.1 400 Bad Request
        _, code, reason = head.split(" ", 2)
        message = "internal error (logged)" if code == "500" else str(exc)
        body = json.dumps(failure(int(code), message)).encode()
        with contextlib.suppress(OSError):
            client.sendall(
                f"HTTP/1.1 {code} {reason}\r\nConnection: close\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                + body
            )

    def _make_room(self) -> None:
        """At the connection limit: closes the oldest silent connection past SILENT_GRACE, or,
        when none is silent, the one idle longest (see the module's docstring)."""
        if not any(pool.free_count() == 0 for pool in self._pools):
            return
        if self._silent:
            oldest, since = next(iter(self._silent.items()))
            if time.monotonic() - since > SILENT_GRACE:
                oldest.kill(block=False)
            return
        for greenlet, conn in list(self._idle.items()):
            if not _has_input(conn):
                greenlet.kill(block=False)
                return

    def _next_request_arrives(self, conn: Any, parser: Any) -> bool:
        """Waits (up to the keep-alive time) for the next request's first byte; an idle wait is
        the only place where a stopping worker may drop the connection."""
        if parser.unreader.buf.getbuffer().nbytes or conn.pending():
            return True  # already here (pipelined)
        if not self._should_run():
            return False  # a request that finished after the idle ones were closed
        me = gevent.getcurrent()
        self._idle[me] = conn
        try:
            gevent.socket.wait_read(conn.fileno(), timeout=self.app.opts.keepalive)
            return True  # even when stopping: it is answered, with `Connection: close`
        except (gevent.GreenletExit, OSError):
            return False
        finally:
            self._idle.pop(me, None)


def _has_input(conn: Any) -> bool:
    """Whether bytes of a next request wait on the connection (in the TLS layer or the socket),
    whatever its descriptor number: `select()` refuses those past 1,023, and gevent's own
    `poll` would yield to the other greenlets in the middle of the choice. A socket that cannot
    be asked (closed meanwhile) has nothing to lose."""
    try:
        if conn.pending():
            return True
        poller = _poll()
        poller.register(conn.fileno(), select.POLLIN | select.POLLPRI)
        return bool(poller.poll(0))
    except (OSError, ValueError):
        return False


class _OneWrite:
    """The socket as gunicorn's response writer sees it: what it writes for one answer is kept
    and sent at once by `flush`."""

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._parts: list[bytes] = []

    def sendall(self, data: bytes) -> None:
        self._parts.append(data)

    @property
    def written(self) -> bytes:
        return b"".join(self._parts)

    def flush(self) -> None:
        if self._parts:
            data, self._parts = b"".join(self._parts), []
            self._sock.sendall(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)
