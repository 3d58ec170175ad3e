"""Start-up and memory with many settings, where users feel them: the time from launching
`mlflow-webhook serve` to its first injected answer, and each worker's memory (RSS, and PSS:
RSS with the pages it shares with the master divided among those sharing them), with the
settings from a file and from the cluster (a real kube-apiserver), next to the goals. Then the
settings are read again while requests keep coming (200 per second): the file replaced three
times, the API server restarted (every worker lists again); answer latency meanwhile, and
memory after.

    python -m bench.startup [--settings 10000] [--workers 2] [--no-cluster]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from bench.admission import bodies, settings_file
from bench.load import Target, at_rate, pct
from tests.procs import free_port
from webhook.tls import ensure_dev_certs

GOALS = {"file": 3.0, "cluster": 2.0}
MEMORY_GOAL_MB = 60


def memory_mb(master: int) -> list[tuple[float, float]]:
    out = []
    for pid in Path(f"/proc/{master}/task/{master}/children").read_text().split():
        fields = {
            line.split(":")[0]: int(line.split()[1]) / 1024
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]
        }
        out.append((fields["Rss"], fields["Pss"]))
    return out


Memory = list[tuple[float, float]]


def first_answer(
    args: list[str], target: Target, reread: Callable[[], None]
) -> tuple[float, Memory, Memory, list[float]]:
    """Time to the first injected answer and memory per worker then; latencies of answers
    while `reread` makes the server read its settings again, and memory after."""
    body, ca, port = target.bodies[0], target.ca_file, target.port
    start = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "webhook", "serve", *args, f"--port={port}", "--shutdown-delay=0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the server exited with {proc.returncode}")
            try:
                reply = requests.post(
                    f"https://127.0.0.1:{port}/mutate",
                    data=body,
                    headers={"Content-Type": "application/json"},
                    verify=ca,
                    timeout=2,
                )
                if reply.ok and "patch" in reply.json()["response"]:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.02)
        took = time.monotonic() - start
        time.sleep(1)  # both workers up and settled
        first = memory_mb(proc.pid)
        with ThreadPoolExecutor(1) as pool:
            load = pool.submit(at_rate, target, 200, 12)
            reread()
            latencies = load.result()
        return took, first, memory_mb(proc.pid), latencies
    finally:
        proc.terminate()
        proc.wait(30)


def replace_file(path: Path) -> Callable[[], None]:
    def reread() -> None:
        for _ in range(3):
            shutil.copy(path, path.with_suffix(".new"))
            path.with_suffix(".new").replace(path)  # a new inode, as a kubelet does
            time.sleep(3)  # checked every second, parsed in about one

    return reread


def report(
    source: str, took: float, memory: Memory, after: Memory, latencies: list[float], what: str
) -> None:
    def mb(m: Memory) -> str:
        rss = ", ".join(f"{r:.0f}" for r, _ in m)
        pss = ", ".join(f"{p:.0f}" for _, p in m)
        return f"RSS {rss} MB, PSS {pss} MB"

    print(
        f"{source:<8} first answer {took:5.2f} s (goal {GOALS[source]:.0f} s)   per worker: "
        f"{mb(memory)} (goal {MEMORY_GOAL_MB} MB)"
    )
    print(
        f"{'':<8} {what}: answers p50 {pct(latencies, 0.5) * 1000:.1f} ms, p99 "
        f"{pct(latencies, 0.99) * 1000:.1f} ms, max {max(latencies) * 1000:.0f} ms; "
        f"then {mb(after)}"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--settings", type=int, default=10_000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--no-cluster", action="store_true")
    a = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-startup-"))
    cert, key, ca = ensure_dev_certs(tmp / "certs")
    tls = [
        f"--cert-file={cert}",
        f"--key-file={key}",
        f"--workers={a.workers}",
        "--log-level=warning",
    ]
    reviews = bodies(a.settings)

    def target() -> Target:
        return Target("127.0.0.1", free_port(), str(ca), "/mutate", reviews)

    settings_file(tmp / "settings.yaml", a.settings)
    args = ["--settings-file", str(tmp / "settings.yaml"), *tls]
    measured = first_answer(args, target(), replace_file(tmp / "settings.yaml"))
    report("file", *measured, "while the file was replaced 3 times")
    if a.no_cluster:
        return
    from tests.cluster import control_plane, install

    for folder in ("cluster", "install"):
        (tmp / folder).mkdir()
    with control_plane(tmp / "cluster") as cp, install(cp, tmp / "install") as inst:
        inst.webhook.stop()
        for n in range(10):  # settings_file spreads the groups over ns-0 .. ns-9
            cp.request("POST", "/api/v1/namespaces", {"metadata": {"name": f"ns-{n}"}})
        result = cp.kubectl("apply", "--server-side", "-f", str(tmp / "settings.yaml"), check=False)
        assert result.returncode == 0, result.stderr[:500]
        args = ["--cluster", f"--kubeconfig={cp.webhook_kubeconfig}", "--status-namespace=", *tls]

        def restart() -> None:
            cp.restart_apiserver()
            time.sleep(4)  # the watches fail, back off and list again

        measured = first_answer(args, target(), restart)
        report("cluster", *measured, "while the API server restarted")


if __name__ == "__main__":
    main()
