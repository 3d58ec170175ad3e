"""Fault benchmark: the webhook hurt the ways issue 7 lists, while pods are created without pause
through a real kube-apiserver (server-side dry run), each creation sorted by what its user sees
(tests/scenarios.py: correct, wrong, uninjected, refused, error).

Scenarios, each in its own namespace with its own webhook configuration:
  worker-exit  one replica; its workers killed with TERM, ABRT and KILL in turn
  cold-start   --settings MLflowSettings in the cluster; the replica restarted, and later a worker
               killed, while pods keep coming
  slow-clients 64 each of idle TCP, idle TLS, endless headers and half bodies held open for
               --hold seconds
  rollout      two replicas behind HAProxy (a Service), restarted one after the other
And the settings source hurt (issues 20 and 29; tests/sourcefaults.py tells how), the replica
reaching the API server through a TCP relay, a setting changed and one created at the fault's
onset:
  stall        the relay stops carrying bytes without closing (a half-open connection, a hung
               proxy) until every worker noticed (--stall seconds at most), then --settle more
  restart      the API server restarted
  etcd         etcd stopped for --etcd-down seconds
  rbac         the webhook's identity may list settings but not watch them, for --rbac seconds
For these it also prints: detect (from the fault to the webhook's first warning about the
settings), recover (from when the change could be seen, the later of the change and the end of
the fault, until pods get it) and lists (the LIST calls for MLflowSettings that the API server
counted meanwhile, and per minute).

    python -m bench.faults [--settings 10000] [--pods 300] [--webhook-src DIR] [--only NAME]

--webhook-src runs the webhook from another checkout (e.g. `git worktree add /tmp/before
<commit>`), so figures before and after a change come from the same harness. Needs the control
plane built by tests/controlplane/build.sh and Debian's haproxy.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from tests.cluster import ControlPlane, control_plane, install
from tests.procs import free_port, wait_until
from tests.scenarios import (
    HAProxy,
    Tally,
    bulk_settings,
    group_namespace,
    hostile_clients,
    pod_load,
    remove_namespace,
    wait_for_pods,
)
from tests.sourcefaults import SourceFault, SourceFaults
from tests.webhookproc import WebhookProcess, serving_certs


class Bench:
    def __init__(
        self, cp: ControlPlane, tmp: Path, src: Path | None, pods: int, hold: float
    ) -> None:
        self.cp, self.tmp, self.src, self.pods, self.hold = cp, tmp, src, pods, hold
        self.certs = serving_certs(tmp / "certs")
        self.help = help_text = subprocess.run(
            [sys.executable, "-m", "webhook", "serve", "--help"],
            capture_output=True,
            text=True,
            cwd=src,
        ).stdout
        self.delay = ["--shutdown-delay=5"] if "--shutdown-delay" in help_text else []

    def replica(self, name: str) -> WebhookProcess:
        return WebhookProcess(
            self.certs,
            free_port(),
            self.tmp / f"{name}.log",
            ["--cluster", f"--kubeconfig={self.cp.webhook_kubeconfig}"],
            self.delay,
            cwd=self.src,
        )

    def ca(self) -> Path:
        return self.certs / "ca.crt"

    @contextlib.contextmanager
    def served(self, namespace: str, port: int) -> Iterator[None]:
        group_namespace(
            self.cp, namespace, f"https://127.0.0.1:{port}/mutate", self.ca().read_bytes()
        )
        try:
            yield
        finally:
            remove_namespace(self.cp, namespace)

    @contextlib.contextmanager
    def one_replica(self, name: str) -> Iterator[tuple[WebhookProcess, Tally]]:
        """One server under pod load (in namespace faults-<name>), already past its first
        pods; stopped on the way out."""
        webhook = self.replica(name)
        webhook.start(self.ca())
        try:
            with (
                self.served(f"faults-{name}", webhook.port),
                pod_load(self.cp, f"faults-{name}", threads=4) as tally,
            ):
                wait_for_pods(tally, self.pods)
                yield webhook, tally
        finally:
            webhook.stop()

    def worker_exit(self) -> Tally:
        with self.one_replica("worker-exit") as (webhook, tally):
            for sig in (signal.SIGTERM, signal.SIGABRT, signal.SIGKILL):
                workers = webhook.workers() if webhook.alive() else []
                if not workers:
                    tally.examples.append(f"the server had exited before {sig.name}")
                else:
                    os.kill(workers[0], sig)
                wait_for_pods(tally, self.pods)
        return tally

    def cold_start(self) -> Tally:
        with self.one_replica("cold-start") as (webhook, tally):
            webhook.stop()
            webhook.launch()  # a restart: pods keep coming while it lists the settings
            webhook.wait_ready(self.ca(), timeout=120)
            wait_for_pods(tally, self.pods)
            victim = webhook.workers()[0]
            os.kill(victim, signal.SIGKILL)  # its replacement lists again
            wait_for_pods(tally, self.pods)
        return tally

    def slow_clients(self) -> Tally:
        with (
            self.one_replica("slow-clients") as (webhook, tally),
            hostile_clients(webhook.port, self.ca(), each=64),
        ):
            time.sleep(self.hold)  # a fixed time with them attached: old and new alike
        return tally

    def rollout(self) -> Tally:
        replicas = [self.replica(f"rollout-{i}") for i in range(2)]
        for r in replicas:
            r.start(self.ca())
        lb = HAProxy(self.tmp, free_port(), [r.port for r in replicas])
        try:
            with (
                lb.run(),
                self.served("faults-rollout", lb.port),
                pod_load(self.cp, "faults-rollout", threads=8) as tally,
            ):
                wait_until(lambda: set(lb.state().values()) == {"UP"}, 30, "replicas UP")
                wait_for_pods(tally, self.pods)
                for r in replicas:
                    r.terminate()
                    assert r.proc is not None
                    r.proc.wait(120)
                    r.start(self.ca())
                    wait_until(lambda r=r: lb.state()[r.port] == "UP", 60, "replica UP")
                    wait_for_pods(tally, self.pods)
        finally:
            for r in replicas:
                r.stop()
        return tally


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--settings", type=int, default=10_000, help="settings for cold-start")
    p.add_argument("--pods", type=int, default=300, help="pods between two faults")
    p.add_argument("--hold", type=float, default=60, help="seconds the slow clients stay")
    p.add_argument("--webhook-src", type=Path, help="run the webhook from this checkout")
    p.add_argument("--only", action="append", help="run only these scenarios")
    p.add_argument("--stall", type=float, default=400, help="longest stall, seconds")
    p.add_argument("--settle", type=float, default=10, help="seconds stalled once noticed")
    p.add_argument("--etcd-down", type=float, default=30, help="seconds etcd is stopped")
    p.add_argument("--rbac", type=float, default=60, help="seconds with a refused watch")
    a = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-faults-"))
    for folder in ("cluster", "install"):
        (tmp / folder).mkdir()
    with control_plane(tmp / "cluster") as cp, install(cp, tmp / "install") as inst:
        inst.webhook.stop()  # the install's own replica: not part of any scenario
        cp.kubectl("delete", "mutatingwebhookconfiguration", "mlflow-webhook")
        bench = Bench(cp, tmp, a.webhook_src, a.pods, a.hold)
        scenarios: dict[str, Callable[[], Tally]] = {
            "worker-exit": bench.worker_exit,
            "cold-start": bench.cold_start,
            "slow-clients": bench.slow_clients,
            "rollout": bench.rollout,
        }
        status = ["--status-namespace="] if "--status-namespace" in bench.help else []
        source = SourceFaults(
            cp,
            tmp,
            bench.certs,
            src=a.webhook_src,
            extra=[*bench.delay, *status],
            pods=a.pods,
            stall=a.stall,
            settle=a.settle,
            etcd_down=a.etcd_down,
            rbac=a.rbac,
        )
        sources: dict[str, Callable[[], tuple[Tally, SourceFault]]] = {
            "stall": source.stall,
            "restart": source.restart,
            "etcd": source.etcd,
            "rbac": source.rbac,
        }
        if not a.only or "cold-start" in a.only:
            cp.request("POST", "/api/v1/namespaces", {"metadata": {"name": "faults-bulk"}})
            bulk_settings(cp, "faults-bulk", a.settings)
        print(
            f"webhook from {a.webhook_src or 'this checkout'}; pods created through the API server"
        )
        for name, run in scenarios.items():
            if a.only and name not in a.only:
                continue
            report(name, run())
        for name, hurt in sources.items():
            if a.only and name not in a.only:
                continue
            tally, figures = hurt()
            report(name, tally, figures)


def report(name: str, tally: Tally, figures: SourceFault | None = None) -> None:
    """One line of counts (and figures), then up to five answers that were not right."""
    print(f"{name:<14}{tally.line()}{f'  {figures.line()}' if figures else ''}", flush=True)
    for example in tally.examples[:5]:
        print(f"{'':<14}e.g. {example[:300]}")


if __name__ == "__main__":
    main()
