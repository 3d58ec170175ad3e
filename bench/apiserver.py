"""Pod creation through a real kube-apiserver, as users feel the webhook: notebooks created (and
stored) at a fixed concurrency in three namespaces, interleaved round by round:
  none   no webhook at all
  noop   a no-op webhook (bench/noop.py: the same gunicorn/gevent/TLS stack, parses the review
         and admits) registered exactly as ours is
  ours   the webhook, from the cluster, injecting every pod
Prints medians of throughput, p50 and p99 per namespace, and ours against the no-op.

    python -m bench.apiserver [--rounds 3] [--pods 300] [--concurrency 12]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from bench.load import pct
from tests.cluster import ControlPlane, control_plane, install
from tests.procs import free_port, running, wait_until
from tests.scenarios import group_namespace, scenario_pod
from tests.webhookproc import WebhookProcess, serving_certs


def create_many(cp: ControlPlane, namespace: str, pods: int, concurrency: int) -> list[float]:
    """Latencies (s) of `pods` notebook creations; raises if any is not created and, where a
    webhook is registered, injected."""
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {cp.admin_token}"
    pod = scenario_pod("notebook", namespace)
    url = f"{cp.url}/api/v1/namespaces/{namespace}/pods"

    def one(_: int) -> float:
        start = time.perf_counter()
        reply = session.post(url, json=pod, verify=cp.ca_file, timeout=30)
        elapsed = time.perf_counter() - start
        if reply.status_code != 201:
            raise RuntimeError(f"{namespace}: {reply.status_code} {reply.text[:200]}")
        return elapsed

    with ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(one, range(pods)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--pods", type=int, default=300)
    p.add_argument("--concurrency", type=int, default=12)
    a = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-apiserver-"))
    for folder in ("cluster", "install"):
        (tmp / folder).mkdir()
    serving_certs(tmp / "certs")
    with control_plane(tmp / "cluster") as cp, install(cp, tmp / "install") as inst:
        inst.webhook.stop()  # the install's replica: its configuration would call it too
        cp.kubectl("delete", "mutatingwebhookconfiguration", "mlflow-webhook")
        cp.kubectl("delete", "validatingwebhookconfiguration", "mlflow-webhook")
        noop_port = free_port()
        noop = [
            sys.executable, "-m", "bench.noop",
            str(tmp / "certs" / "tls.crt"), str(tmp / "certs" / "tls.key"), str(noop_port), "2",
        ]  # fmt: skip
        ours = WebhookProcess(
            tmp / "certs",
            free_port(),
            tmp / "ours.log",
            ["--cluster", f"--kubeconfig={cp.webhook_kubeconfig}"],
            ["--shutdown-delay=0"],
        )
        with running(noop, tmp / "noop.log") as noop_proc:
            ca_file = tmp / "certs" / "ca.crt"
            wait_until(
                lambda: (
                    requests.get(
                        f"https://127.0.0.1:{noop_port}/readyz", verify=ca_file, timeout=2
                    ).ok
                ),
                30,
                "noop",
                noop_proc,
            )
            ours.start(ca_file)
            try:
                cp.request("POST", "/api/v1/namespaces", {"metadata": {"name": "bench-none"}})
                # The no-op's namespace: the same configuration, pointed at the no-op server (it
                # injects nothing, so group_namespace's check for an injection cannot be used).
                noop_ns = "bench-noop"
                group_namespace(cp, "bench-ours", f"{ours.url}/mutate", ca_file.read_bytes())
                config = (
                    cp.kubectl(
                        "get",
                        "mutatingwebhookconfiguration",
                        "mlflow-webhook-bench-ours",
                        "-o",
                        "yaml",
                    )
                    .stdout.replace("bench-ours", noop_ns)
                    .replace(ours.url, f"https://127.0.0.1:{noop_port}")
                )
                cp.request("POST", "/api/v1/namespaces", {"metadata": {"name": noop_ns}})
                applied = cp.kubectl("apply", "-f", "-", input=config, check=False)
                assert applied.returncode == 0, applied.stderr
                time.sleep(2)  # a new webhook configuration takes a moment to be used
                results: dict[str, dict[str, list[float]]] = {
                    n: {"rps": [], "p50": [], "p99": []} for n in ("none", "noop", "ours")
                }
                for r in range(a.rounds):
                    for name in results:
                        start = time.perf_counter()
                        lat = create_many(cp, f"bench-{name}", a.pods, a.concurrency)
                        took = time.perf_counter() - start
                        results[name]["rps"].append(a.pods / took)
                        results[name]["p50"].append(pct(lat, 0.5) * 1000)
                        results[name]["p99"].append(pct(lat, 0.99) * 1000)
                    print(f"round {r + 1}/{a.rounds} done", file=sys.stderr)
            finally:
                ours.stop()
    med = {n: {k: statistics.median(v) for k, v in m.items()} for n, m in results.items()}
    print(
        f"{'webhook':<8}{'pods/s':>9}{'p50 ms':>9}{'p99 ms':>9}   ({a.pods} notebooks at "
        f"concurrency {a.concurrency}; medians of {a.rounds} interleaved rounds)"
    )
    for name, m in med.items():
        print(f"{name:<8}{m['rps']:>9.0f}{m['p50']:>9.1f}{m['p99']:>9.1f}")
    print(
        f"ours vs no-op: throughput {med['ours']['rps'] / med['noop']['rps']:.2f} (goal >= 0.9), "
        f"p99 {med['ours']['p99'] / med['noop']['p99']:.2f} (goal <= 1.1)"
    )


if __name__ == "__main__":
    main()
