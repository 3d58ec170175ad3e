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
And the settings source hurt (issue 20), the replica reaching the API server through a TCP
relay, a setting changed during the fault:
  stall        the relay stops carrying bytes without closing (a half-open connection, a hung
               proxy) for --stall seconds at most (resumed once the webhook noticed)
  restart      the API server restarted
  etcd         etcd stopped for --etcd-down seconds (the setting changed once it is back)
  rbac         the webhook's identity may list settings but not watch them, for --rbac seconds
For these it also prints: detect (from the fault to the webhook's first warning about the
settings), recover (from when the change could be seen, the later of the change and the end of
the fault, until pods get it) and lists (the LIST calls for MLflowSettings that the API server
counted meanwhile).

    python -m bench.faults [--settings 10000] [--pods 300] [--webhook-src DIR] [--only NAME]

--webhook-src runs the webhook from another checkout (e.g. `git worktree add /tmp/before
<commit>`), so figures before and after a change come from the same harness. Needs the control
plane built by tests/controlplane/build.sh and Debian's haproxy.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import yaml

from tests.cluster import PLAIN_USER, ControlPlane, control_plane, install
from tests.procs import free_port, wait_until
from tests.scenarios import (
    HAProxy,
    Tally,
    bulk_settings,
    group_namespace,
    hostile_clients,
    pod_load,
    remove_namespace,
    scenario_pod,
    wait_for_pods,
)
from tests.tcpproxy import TcpProxy
from tests.webhookproc import WebhookProcess, serving_certs

# The settings the scenario pods (group Research_Team) get, before and after the change.
BEFORE, AFTER = "https://mlflow.research.example.com", "https://mlflow-after.example.com"
LIST_ONLY = f"""
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {{name: bench-settings-list-only}}
rules: [{{apiGroups: [mlflow.primehub.io], resources: [mlflowsettings], verbs: [get, list]}}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: bench-settings-list-only}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: bench-settings-list-only}}
subjects: [{{apiGroup: rbac.authorization.k8s.io, kind: User, name: "{PLAIN_USER}"}}]
"""
# The first warning about the settings (this version's logger, and the one before it).
SOURCE_WARNING = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) WARNING webhook\.settings\.(watch|sources) ",
    re.M,
)


@dataclass
class SourceFault:
    """What happened to the settings of one replica through one fault."""

    detect: float | None = None  # seconds from the fault to the first warning
    recover: float | None = None  # seconds until pods got the change, once it could be seen
    lists: float = 0  # LIST calls the API server counted

    def line(self) -> str:
        def s(x: float | None) -> str:
            return "never" if x is None else f"{x:.1f} s"

        return f"detect {s(self.detect)}  recover {s(self.recover)}  lists {self.lists:.0f}"


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


class SourceBench:
    """The settings source hurt while pods keep coming (see the module's docstring)."""

    def __init__(self, bench: Bench, stall: float, etcd_down: float, rbac: float) -> None:
        self.b, self.cp = bench, bench.cp
        self.stall_for, self.etcd_down, self.rbac_for = stall, etcd_down, rbac
        self.status = ["--status-namespace="] if "--status-namespace" in bench.help else []

    def uri(self, namespace: str) -> str | None:
        pod = scenario_pod("notebook", namespace)
        reply = self.cp.request("POST", f"/api/v1/namespaces/{namespace}/pods", pod, dryRun="All")
        env = reply.json().get("spec", {}).get("containers", [{}])[0].get("env") or []
        return next((e.get("value") for e in env if e["name"] == "MLFLOW_TRACKING_URI"), None)

    def change(self, namespace: str, uri: str) -> None:
        docs = yaml.safe_load_all(
            (Path(__file__).parent.parent / "examples/settings.yaml").read_text()
        )
        setting = next(d for d in docs if d["metadata"]["name"] == "research-team")
        setting["metadata"]["namespace"] = namespace
        setting["spec"]["trackingUri"] = uri
        text = yaml.safe_dump(setting)
        for _ in range(60):  # the API server may be coming back
            if self.cp.kubectl("apply", "-f", "-", input=text, check=False).returncode == 0:
                return
            time.sleep(1)
        raise RuntimeError("the setting could not be changed")

    @staticmethod
    def detected(log: Path, since: float) -> float | None:
        for m in SOURCE_WARNING.finditer(log.read_text()):
            at = datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S").timestamp()
            at += int(m.group(2)) / 1000
            if at >= since:
                return at - since
        return None

    def run(
        self,
        name: str,
        fault: Callable[[WebhookProcess, float], None],
        identity: str = "webhook",
        change_during: bool = True,
        heals: bool = True,
    ) -> tuple[Tally, SourceFault]:
        """One replica through the relay; `fault(webhook, started)` hurts and heals (or, not
        `heals`, lasts: recovery is then counted from the change)."""
        namespace = f"faults-{name}"
        proxy = TcpProxy(("127.0.0.1", urlparse(self.cp.url).port or 443))
        kubeconfig = self.cp.kubeconfig_via(proxy.url, identity, self.b.tmp / f"{name}.kubeconfig")
        log = self.b.tmp / f"{name}.log"
        webhook = WebhookProcess(
            self.b.certs, free_port(), log, ["--cluster", f"--kubeconfig={kubeconfig}"],
            [*self.b.delay, *self.status], cwd=self.b.src,
        )  # fmt: skip
        self.proxy, figures = proxy, SourceFault()
        with proxy.run():
            webhook.start(self.b.ca())
            try:
                with (
                    self.b.served(namespace, webhook.port),
                    pod_load(self.cp, namespace, threads=4) as tally,
                ):
                    wait_for_pods(tally, self.b.pods)
                    self.change(namespace, BEFORE)
                    wait_until(lambda: self.uri(namespace) == BEFORE, 60, "the first setting")
                    lists = self.cp.settings_calls("list")
                    started = time.time()
                    changed: list[float] = []
                    seen = threading.Event()
                    seen_at: list[float] = []

                    def change() -> None:
                        self.change(namespace, AFTER)
                        changed.append(time.monotonic())

                    def watch_for_it() -> None:  # pods get the change from when on?
                        while not seen.is_set():
                            if self.uri(namespace) == AFTER:
                                seen_at.append(time.monotonic())
                                seen.set()
                            time.sleep(0.1)

                    probe = threading.Thread(target=watch_for_it)
                    probe.start()
                    if change_during:
                        threading.Timer(2, change).start()
                    fault(webhook, started)
                    healed = time.monotonic() if heals else 0.0
                    if not change_during:
                        change()
                    if seen.wait(180):
                        figures.recover = max(0.0, seen_at[0] - max(changed[0], healed))
                    seen.set()
                    probe.join()
                    figures.lists = self.cp.settings_calls("list") - lists
                    figures.detect = self.detected(log, started)
            finally:
                webhook.stop()
        return tally, figures

    def stall(self) -> tuple[Tally, SourceFault]:
        def fault(webhook: WebhookProcess, started: float) -> None:
            self.proxy.stall()
            with contextlib.suppress(TimeoutError):
                wait_until(
                    lambda: SourceBench.detected(webhook.log, started) is not None,
                    self.stall_for,
                    "the stall noticed",
                )
            self.proxy.resume()

        return self.run("stall", fault)

    def restart(self) -> tuple[Tally, SourceFault]:
        return self.run("restart", lambda _w, _s: self.cp.restart_apiserver(), change_during=False)

    def etcd(self) -> tuple[Tally, SourceFault]:
        def fault(_webhook: WebhookProcess, _started: float) -> None:
            self.cp.stop_etcd()
            time.sleep(self.etcd_down)  # the fault lasts this long, whatever happens
            self.cp.start_etcd()

        return self.run("etcd", fault, change_during=False)

    def rbac(self) -> tuple[Tally, SourceFault]:
        result = self.cp.kubectl("apply", "-f", "-", input=LIST_ONLY, check=False)
        assert result.returncode == 0, result.stderr
        hold = self.rbac_for
        return self.run("rbac", lambda _w, _s: time.sleep(hold), identity="plain", heals=False)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--settings", type=int, default=10_000, help="settings for cold-start")
    p.add_argument("--pods", type=int, default=300, help="pods between two faults")
    p.add_argument("--hold", type=float, default=60, help="seconds the slow clients stay")
    p.add_argument("--webhook-src", type=Path, help="run the webhook from this checkout")
    p.add_argument("--only", action="append", help="run only these scenarios")
    p.add_argument("--stall", type=float, default=400, help="longest stall, seconds")
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
        source = SourceBench(bench, a.stall, a.etcd_down, a.rbac)
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
            tally = run()
            print(f"{name:<14}{tally.line()}", flush=True)
            for example in tally.examples[:3]:
                print(f"{'':<14}e.g. {example[:200]}")
        for name, hurt in sources.items():
            if a.only and name not in a.only:
                continue
            tally, figures = hurt()
            print(f"{name:<14}{tally.line()}  {figures.line()}", flush=True)


if __name__ == "__main__":
    main()
