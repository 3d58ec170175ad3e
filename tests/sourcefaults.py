"""The settings source hurt while pods keep coming (issues 20 and 29), shared by the tests
(tests/test_source_faults.py: never a wrong answer) and `bench/faults.py` (the figures).

One webhook replica reaches the API server through a TCP relay (tests/tcpproxy.py) and serves
its own namespace under a steady pod load (tests/scenarios.py sorts each answer). Then:
  stall    the relay stops carrying bytes without closing; once every worker has noticed, and
           for `settle` seconds more, the settings source is failing; then it carries again
  restart  the API server restarted
  etcd     etcd stopped for `etcd_down` seconds
  rbac     the webhook's identity may list settings but not watch them, all along
At the fault's onset (for a stall: once it is noticed, since a silent watch cannot be told from
a quiet one before that) the scenario's setting is changed and a setting for a new group is
created, and pods of that group join the load: the webhook does not know that setting until it
lists again, and must not answer "no setting" meanwhile.
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import requests
import yaml

from tests.cluster import EXAMPLES, PLAIN_USER, ControlPlane
from tests.procs import free_port, wait_until
from tests.promtext import total
from tests.scenarios import (
    Tally,
    group_namespace,
    pod_load,
    remove_namespace,
    scenario_pod,
    wait_for_pods,
)
from tests.tcpproxy import TcpProxy
from tests.webhookproc import WebhookProcess

# The settings the scenario's pods (group Research_Team) get, before and after the change.
BEFORE, AFTER = "https://mlflow.research.example.com", "https://mlflow-after.example.com"
NEW_GROUP = "Fault_Team"  # whose setting is created at the fault's onset
WORKERS = 2  # the webhook's default
LIST_ONLY = """
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: faults-settings-list-only}
rules: [{apiGroups: [mlflow.primehub.io], resources: [mlflowsettings], verbs: [get, list]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: faults-settings-list-only}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: faults-settings-list-only}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: "%s"}]
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
    lists: float = 0  # LIST calls for MLflowSettings the API server counted
    minutes: float = 0  # over how long
    new_group: Tally = field(default_factory=Tally)  # its pods' answers, once it exists

    def line(self) -> str:
        def s(x: float | None) -> str:
            return "never" if x is None else f"{x:.1f} s"

        rate = self.lists / self.minutes if self.minutes else 0
        return (
            f"detect {s(self.detect)}  recover {s(self.recover)}  "
            f"lists {self.lists:.0f} ({rate:.1f}/min)"
        )


def research_setting(namespace: str, uri: str, group: str = "Research_Team") -> dict[str, Any]:
    """The example setting of Research_Team in `namespace` (its Secrets come with
    group_namespace), for `group`, with this tracking URI."""
    docs = yaml.safe_load_all((EXAMPLES / "settings.yaml").read_text())
    setting = copy.deepcopy(next(d for d in docs if d["metadata"]["name"] == "research-team"))
    setting["metadata"]["namespace"] = namespace
    setting["metadata"]["name"] = group.lower().replace("_", "-")
    setting["spec"]["group"] = group
    setting["spec"]["trackingUri"] = uri
    return setting


def first_warning(log: Path, since: float) -> float | None:
    """Seconds from `since` (epoch) to the webhook's first warning about its settings."""
    for m in SOURCE_WARNING.finditer(log.read_text()):
        at = datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S").timestamp()
        at += int(m.group(2)) / 1000
        if at >= since:
            return at - since
    return None


class SourceFaults:
    """The scenarios of the module's docstring, against `cp`; the webhook runs from `src` (another
    checkout, for figures before a change) with `extra` flags."""

    def __init__(
        self,
        cp: ControlPlane,
        tmp: Path,
        certs: Path,
        *,
        src: Path | None = None,
        extra: list[str] | None = None,
        pods: int = 300,
        stall: float = 400,
        settle: float = 10,
        etcd_down: float = 30,
        rbac: float = 60,
    ) -> None:
        self.cp, self.tmp, self.certs, self.src = cp, tmp, certs, src
        self.extra, self.pods = extra or [], pods
        self.stall_for, self.settle, self.etcd_down, self.rbac_for = stall, settle, etcd_down, rbac
        self.proxy: TcpProxy | None = None
        self.webhook: WebhookProcess | None = None

    @property
    def ca(self) -> Path:
        return self.certs / "ca.crt"

    def uri(self, namespace: str) -> str | None:
        """The tracking URI a notebook of Research_Team gets now; None also when the API server
        cannot answer (the probe polls through the faults it measures)."""
        pod = scenario_pod("notebook", namespace)
        try:
            reply = self.cp.request(
                "POST", f"/api/v1/namespaces/{namespace}/pods", pod, dryRun="All"
            )
            if reply.status_code != 201:
                return None
            env = reply.json()["spec"]["containers"][0].get("env") or []
        except (requests.RequestException, ValueError, KeyError, IndexError):
            return None
        return next((e.get("value") for e in env if e["name"] == "MLFLOW_TRACKING_URI"), None)

    def apply(self, setting: dict[str, Any], timeout: float = 120) -> None:
        """Applies the setting, retrying while the API server or etcd is away."""
        text = yaml.safe_dump(setting)
        deadline = time.monotonic() + timeout
        while self.cp.kubectl("apply", "-f", "-", input=text, check=False).returncode:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{setting['metadata']['name']} could not be applied")
            time.sleep(0.5)

    def watch_failures(self) -> float:
        assert self.webhook is not None
        text = requests.get(f"{self.webhook.url}/metrics", verify=self.ca, timeout=5).text
        return total(text, "mlflow_webhook_settings_source_failures_total", verb="watch")

    @contextlib.contextmanager
    def _replica(self, name: str, identity: str) -> Iterator[WebhookProcess]:
        self.proxy = TcpProxy(("127.0.0.1", urlparse(self.cp.url).port or 443))
        kubeconfig = self.cp.kubeconfig_via(
            self.proxy.url, identity, self.tmp / f"{name}.kubeconfig"
        )
        self.webhook = WebhookProcess(
            self.certs,
            free_port(),
            self.tmp / f"{name}.log",
            ["--cluster", f"--kubeconfig={kubeconfig}"],
            self.extra,
            cwd=self.src,
        )
        with self.proxy.run():
            self.webhook.start(self.ca)
            try:
                yield self.webhook
            finally:
                self.webhook.stop()

    def run(
        self,
        name: str,
        hurt: Callable[[], None],
        heal: Callable[[], None],
        identity: str = "webhook",
    ) -> tuple[Tally, SourceFault]:
        """One replica through one fault: `hurt` returns at its onset, `heal` at its end. The
        tally holds every pod's answer, those of the new group's pods included."""
        namespace = f"faults-{name}"
        figures = SourceFault()
        fresh = figures.new_group
        with self._replica(name, identity) as webhook:
            ca_pem = self.ca.read_bytes()
            group_namespace(self.cp, namespace, f"{webhook.url}/mutate", ca_pem)
            try:
                with pod_load(self.cp, namespace, threads=4) as tally:
                    self._through(namespace, tally, fresh, figures, hurt, heal)
            finally:
                remove_namespace(self.cp, namespace)
        tally.counts.update(fresh.counts)
        tally.examples = (tally.examples + fresh.examples)[:5]
        return tally, figures

    def _through(
        self,
        namespace: str,
        tally: Tally,
        fresh: Tally,
        figures: SourceFault,
        hurt: Callable[[], None],
        heal: Callable[[], None],
    ) -> None:
        assert self.webhook is not None
        wait_for_pods(tally, self.pods, 120)
        self.apply(research_setting(namespace, BEFORE))
        wait_until(lambda: self.uri(namespace) == BEFORE, 60, "the first setting")
        lists, started, start = self.cp.settings_calls("list"), time.time(), time.monotonic()
        hurt()
        changed: list[float] = []
        loads: list[Tally] = []  # the new group's pods, once its setting exists
        stop = threading.Event()

        def change() -> None:  # at the onset
            self.apply(research_setting(namespace, AFTER))
            changed.append(time.monotonic())
            self.apply(research_setting(namespace, BEFORE, NEW_GROUP))
            with pod_load(self.cp, namespace, threads=2, group=NEW_GROUP) as load:
                loads.append(load)
                stop.wait()

        seen: list[float] = []

        def probe() -> None:  # pods get the change from when on? (it survives the fault)
            while not stop.is_set() and not seen:
                if self.uri(namespace) == AFTER:
                    seen.append(time.monotonic())
                time.sleep(0.1)

        changer, prober = threading.Thread(target=change), threading.Thread(target=probe)
        changer.start()
        prober.start()
        try:
            heal()
            healed = time.monotonic()
            prober.join(180)
            if seen and changed:
                figures.recover = max(0.0, seen[0] - max(changed[0], healed))
            wait_until(lambda: loads, 120, "the new group's setting")
            wait_for_pods(loads[0], self.pods, 120)  # its pods, and the others', go on
            wait_for_pods(tally, self.pods, 120)
        finally:
            stop.set()
            prober.join()
            changer.join()
        for load in loads:
            fresh.counts.update(load.counts)
            fresh.examples.extend(load.examples)
        figures.lists = self.cp.settings_calls("list") - lists
        figures.minutes = (time.monotonic() - start) / 60
        figures.detect = first_warning(self.webhook.log, started)

    def stall(self) -> tuple[Tally, SourceFault]:
        def hurt() -> None:
            assert self.proxy is not None
            before = self.watch_failures()
            self.proxy.stall()
            with contextlib.suppress(TimeoutError):  # every worker's watch dropped as stalled
                wait_until(
                    lambda: self.watch_failures() >= before + WORKERS,
                    self.stall_for,
                    "the stall noticed",
                )

        def heal() -> None:
            assert self.proxy is not None
            time.sleep(self.settle)  # the fault lasts this long, whatever happens
            self.proxy.resume()

        return self.run("stall", hurt, heal)

    def restart(self) -> tuple[Tally, SourceFault]:
        return self.run("restart", self.cp.restart_apiserver, _nothing)

    def etcd(self) -> tuple[Tally, SourceFault]:
        def heal() -> None:
            time.sleep(self.etcd_down)  # the fault lasts this long, whatever happens
            self.cp.start_etcd()

        return self.run("etcd", self.cp.stop_etcd, heal)

    def rbac(self) -> tuple[Tally, SourceFault]:
        result = self.cp.kubectl("apply", "-f", "-", input=LIST_ONLY % PLAIN_USER, check=False)
        assert result.returncode == 0, result.stderr
        return self.run("rbac", _nothing, lambda: time.sleep(self.rbac_for), identity="plain")


def _nothing() -> None:
    pass
