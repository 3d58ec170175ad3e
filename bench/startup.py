"""Start-up and memory with many settings, where users feel them: the time from launching
`mlflow-webhook serve` to its first injected answer, and each worker's memory (RSS, and PSS:
RSS with the pages it shares with the master divided among those sharing them), with the
settings from a file and from the cluster (a real kube-apiserver), next to the goals.

    python -m bench.startup [--settings 10000] [--workers 2] [--no-cluster]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from bench.admission import bodies, settings_file
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
    args: list[str], body: bytes, ca: Path, port: int, reload: Path | None = None
) -> tuple[float, Memory, Memory]:
    """Time to the first injected answer and memory per worker then; with `reload` (the
    settings file), memory also after the file was replaced three times and reloaded."""
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
        for _ in range(3 if reload else 0):
            shutil.copy(reload, reload.with_suffix(".new"))
            reload.with_suffix(".new").replace(reload)  # a new inode, as a kubelet does
            time.sleep(3)  # checked every second, parsed in about one
        return took, first, memory_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(30)


def report(source: str, took: float, memory: Memory) -> None:
    rss = ", ".join(f"{r:.0f}" for r, _ in memory)
    pss = ", ".join(f"{p:.0f}" for _, p in memory)
    print(
        f"{source:<8} first answer {took:5.2f} s (goal {GOALS[source]:.0f} s)   per worker: "
        f"RSS {rss} MB, PSS {pss} MB (goal {MEMORY_GOAL_MB} MB)"
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
    body = bodies(a.settings)[0]
    settings_file(tmp / "settings.yaml", a.settings)
    took, memory, reloaded = first_answer(
        ["--settings-file", str(tmp / "settings.yaml"), *tls],
        body,
        ca,
        free_port(),
        reload=tmp / "settings.yaml",
    )
    report("file", took, memory)
    rss = ", ".join(f"{r:.0f}" for r, _ in reloaded)
    pss = ", ".join(f"{p:.0f}" for _, p in reloaded)
    print(f"{'':<8} after the file was reloaded 3 times: RSS {rss} MB, PSS {pss} MB")
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
        took, memory, _ = first_answer(args, body, ca, free_port())
        report("cluster", took, memory)


if __name__ == "__main__":
    main()
