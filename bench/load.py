"""A small HTTPS load generator over keep-alive connections (stdlib only), for the benchmarks.

Closed loop (`throughput`): each connection sends its next request when the last one returns.
Open loop (`at_rate`): requests go out on a fixed schedule; latency counts from the scheduled
time, so a server that falls behind is not flattered (no coordinated omission).
"""

from __future__ import annotations

import contextlib
import http.client
import multiprocessing
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    ca_file: str
    path: str
    bodies: tuple[bytes, ...]


def pct(values: list[float], q: float) -> float:
    """The q-quantile (0.99: p99) of the values."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def cpu_seconds(pid: int) -> float:
    """CPU time of a process, its threads and its descendants, to the nanosecond (schedstat):
    the clock-tick counters of /proc/PID/stat are too coarse for a few hundred pods."""
    total = 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            total += int((task / "schedstat").read_text().split()[0]) / 1e9
        with contextlib.suppress(OSError):
            total += sum(cpu_seconds(int(c)) for c in (task / "children").read_text().split())
    return total


def _connection(t: Target) -> http.client.HTTPSConnection:
    ctx = ssl.create_default_context(cafile=t.ca_file)
    return http.client.HTTPSConnection(t.host, t.port, context=ctx, timeout=30)


def _send(conn: http.client.HTTPSConnection, t: Target, body: bytes) -> None:
    conn.request("POST", t.path, body, {"Content-Type": "application/json"})
    reply = conn.getresponse()
    reply.read()
    if reply.status != 200:
        raise RuntimeError(f"HTTP {reply.status}")


def _closed_loop(t: Target, seconds: float, threads: int, out: multiprocessing.Queue) -> None:
    counts: list[int] = []

    def worker(offset: int) -> None:
        conn = _connection(t)
        _send(conn, t, t.bodies[0])  # handshake outside the measured window
        n, i = 0, offset
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            _send(conn, t, t.bodies[i % len(t.bodies)])
            n += 1
            i += 1
        counts.append(n)

    pool = [threading.Thread(target=worker, args=(k * 7,)) for k in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    out.put(sum(counts))


def throughput(t: Target, seconds: float, processes: int = 2, threads: int = 2) -> float:
    """Requests per second with processes x threads keep-alive connections."""
    queue: multiprocessing.Queue = multiprocessing.Queue()
    procs = [
        multiprocessing.Process(target=_closed_loop, args=(t, seconds, threads, queue))
        for _ in range(processes)
    ]
    for p in procs:
        p.start()
    total = sum(queue.get() for _ in procs)
    for p in procs:
        p.join()
    return total / seconds


def at_rate(t: Target, rate: float, seconds: float, connections: int = 4) -> list[float]:
    """Latencies (seconds) of requests sent at `rate` per second over `connections`."""
    latencies: list[float] = []
    lock = threading.Lock()
    start = time.perf_counter() + 0.2
    per_conn = rate / connections
    count = int(seconds * per_conn)

    def worker(k: int) -> None:
        conn = _connection(t)
        _send(conn, t, t.bodies[0])
        mine = []
        for i in range(count):
            due = start + (i + k / connections) / per_conn
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            _send(conn, t, t.bodies[(i * connections + k) % len(t.bodies)])
            mine.append(time.perf_counter() - due)
        with lock:
            latencies.extend(mine)

    pool = [threading.Thread(target=worker, args=(k,)) for k in range(connections)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    return latencies
