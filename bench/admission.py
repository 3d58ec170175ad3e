"""Admission benchmark: the real webhook under gunicorn with TLS over keep-alive connections,
against a no-op endpoint (same server settings; parses the review and admits) in the same run.

Prints, as medians over interleaved rounds: throughput (closed loop), p50/p99 latency at a fixed
rate, with 10 and with 10,000 settings loaded, the ratios, resident memory per worker, and the
server's CPU time per request (master and workers, from schedstat), both flat out and at the
fixed rate: steadier than throughput on a shared machine, since it ignores who else ran.

With --baseline-src DIR (another checkout, e.g. `git worktree add /tmp/before <commit>`), the
no-op and the webhook with 10 settings of that checkout run in the same rounds, and the ratio
of the two throughput ratios is printed: how much of its lead over its own no-op the webhook kept.

    python -m bench.admission [--rounds 3] [--seconds 5] [--rate 200] [--workers 2]
                              [--baseline-src DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import requests
import yaml

from bench.load import Target, at_rate, cpu_seconds, pct, throughput
from tests.procs import free_port, running, wait_until
from webhook.groups import escape_group
from webhook.tls import ensure_dev_certs

ROOT = Path(__file__).parent.parent
REVIEW = json.loads((ROOT / "examples" / "admission-review.json").read_text())


def settings_file(path: Path, n: int) -> list[str]:
    """n settings for groups across 10 namespaces, half of them with secret refs and a group
    volume; returns the groups."""
    docs, groups = [], []
    for i in range(n):
        group = f"Group_{i}"
        spec: dict[str, Any] = {"group": group, "trackingUri": f"http://mlflow-{i}:5000"}
        if i % 2:
            spec["trackingEnv"] = [
                {
                    "name": "MLFLOW_TRACKING_PASSWORD",
                    "valueFrom": {"secretKeyRef": {"name": f"login-{i}", "key": "password"}},
                }
            ]
            spec["artifactVolume"] = {
                "claimName": f"project-group-{i}",
                "mountPath": f"/project/group_{i}",
            }
        docs.append(
            {
                "apiVersion": "mlflow.primehub.io/v1alpha1",
                "kind": "MLflowSetting",
                "metadata": {"name": f"group-{i}", "namespace": f"ns-{i % 10}"},
                "spec": spec,
            }
        )
        groups.append(group)
    path.write_text(yaml.safe_dump_all(docs))
    return groups


def bodies(n: int) -> tuple[bytes, ...]:
    """Reviews of notebook pods spread over the loaded groups (every lookup hits a setting)."""
    out = []
    for k in range(64):
        i = (k * 7919) % n
        review = json.loads(json.dumps(REVIEW))
        review["request"]["namespace"] = f"ns-{i % 10}"
        review["request"]["object"]["metadata"]["labels"]["primehub.io/group"] = escape_group(
            f"Group_{i}"
        )
        out.append(json.dumps(review).encode())
    return tuple(out)


def worker_rss_mb(master: int) -> list[float]:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    sizes = []
    for pid in children:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                sizes.append(int(line.split()[1]) / 1024)
    return sizes


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=5)
    p.add_argument("--rate", type=float, default=200)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--baseline-src", type=Path, help="also run this checkout's no-op and webhook")
    a = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-admission-"))
    cert, key, ca = ensure_dev_certs(tmp / "certs")
    servers: dict[str, tuple[subprocess.Popen[bytes], Target]] = {}
    plan: list[tuple[str, int, Path | None]] = [
        ("noop", 10, None),
        ("webhook-10", 10, None),
        ("webhook-10000", 10_000, None),
    ]
    if a.baseline_src:
        plan += [("noop-base", 10, a.baseline_src), ("webhook-10-base", 10, a.baseline_src)]
    with contextlib.ExitStack() as stack:
        for name, n, src in plan:
            port = free_port()
            if name.startswith("noop"):
                args = [
                    sys.executable,
                    "-m",
                    "bench.noop",
                    str(cert),
                    str(key),
                    str(port),
                    str(a.workers),
                ]
            else:
                settings_file(tmp / f"{name}.yaml", n)
                args = [
                    sys.executable,
                    "-m",
                    "webhook",
                    "serve",
                    "--settings-file",
                    str(tmp / f"{name}.yaml"),
                    "--cert-file",
                    str(cert),
                    "--key-file",
                    str(key),
                    "--port",
                    str(port),
                    "--workers",
                    str(a.workers),
                    "--log-level",
                    "warning",
                ]
            proc = stack.enter_context(running(args, tmp / f"{name}.log", cwd=src))
            url = f"https://127.0.0.1:{port}/readyz"
            wait_until(lambda u=url: requests.get(u, verify=ca, timeout=2).ok, 120, name, proc)
            servers[name] = (proc, Target("127.0.0.1", port, str(ca), "/mutate", bodies(n)))
        results: dict[str, dict[str, list[float]]] = {
            n: {"rps": [], "p50": [], "p99": [], "busy": [], "calm": []} for n in servers
        }
        for r in range(a.rounds):
            for name, (proc, target) in servers.items():  # interleaved: noise hits all alike
                spent = cpu_seconds(proc.pid)
                rps = throughput(target, a.seconds)
                results[name]["rps"].append(rps)
                results[name]["busy"].append((cpu_seconds(proc.pid) - spent) / (rps * a.seconds))
                spent = cpu_seconds(proc.pid)
                lat = at_rate(target, a.rate, a.seconds)
                results[name]["calm"].append((cpu_seconds(proc.pid) - spent) / len(lat))
                results[name]["p50"].append(pct(lat, 0.50) * 1000)
                results[name]["p99"].append(pct(lat, 0.99) * 1000)
            print(f"round {r + 1}/{a.rounds} done", file=sys.stderr)
        med = {n: {k: statistics.median(v) for k, v in m.items()} for n, m in results.items()}
        print(
            f"{'server':<16}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'CPU us/req':>12}"
            f"{'at rate':>9}   (latency and 'at rate' at {a.rate:.0f} req/s; medians of "
            f"{a.rounds} rounds, {a.workers} workers)"
        )
        for name, m in med.items():
            print(
                f"{name:<16}{m['rps']:>10.0f}{m['p50']:>10.2f}{m['p99']:>10.2f}"
                f"{m['busy'] * 1e6:>12.0f}{m['calm'] * 1e6:>9.0f}"
            )
        base = med["noop"]["rps"]
        print(
            f"throughput vs no-op: 10 settings {med['webhook-10']['rps'] / base:.2f}, "
            f"10,000 settings {med['webhook-10000']['rps'] / base:.2f}; our CPU per request "
            f"beyond the no-op's: {(med['webhook-10']['busy'] - med['noop']['busy']) * 1e6:.0f} us"
        )
        if a.baseline_src:
            now = med["webhook-10"]["rps"] / base
            then = med["webhook-10-base"]["rps"] / med["noop-base"]["rps"]
            print(
                f"throughput vs its own no-op: this checkout {now:.2f}, {a.baseline_src} "
                f"{then:.2f}; kept {now / then:.2f} of it (goal >= 0.9)"
            )
        print(
            f"10,000 vs 10 settings: throughput "
            f"{med['webhook-10000']['rps'] / med['webhook-10']['rps']:.3f}, p99 "
            f"{med['webhook-10000']['p99'] / med['webhook-10']['p99']:.3f}"
        )
        for name, (proc, _) in servers.items():
            rss = worker_rss_mb(proc.pid)
            print(f"resident memory per worker, {name}: " + ", ".join(f"{mb:.0f} MB" for mb in rss))


if __name__ == "__main__":
    main()
