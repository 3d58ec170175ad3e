"""Pod creation through a real kube-apiserver, as users feel the webhook: notebooks created (and
stored) at a fixed concurrency in four namespaces, interleaved round by round, each round in
another order:
  none    no webhook at all
  noop    a no-op webhook (bench/noop.py: the same gunicorn/gevent/TLS stack, parses the review
          and admits) registered exactly as ours is
  touch   the same stack answering every pod with the least change a mutating webhook can
          make (one annotation): what the API server pays for any change at all (it encodes,
          patches and decodes the pod, then runs its whole admission chain again)
  replay  the same stack answering every pod with the patch ours gives it, computing nothing:
          what the API server pays to apply and store the injected fields, whoever computes them
  ours    the webhook, from the cluster, injecting every pod
Prints medians of throughput, p50 and p99 per namespace, CPU time per pod of the webhook's
processes and of the API server (steadier than throughput on a busy machine), ours against the
no-op (the goal), touch against the no-op (the best any mutating webhook can do), and ours
against the replay (what our rules cost on top of the change they make).
With --pod kubeflow, the pods are Kubeflow notebooks (tests/kubeflow.py: no group label, served
by the namespace's own MLflowSetting, which names no group), which no release before namespace
settings sent to the webhook at all: `none` is then what they cost before, `ours` what they cost
now; the same with --pod job, argo, ray or spark (a Kubernetes Job's, an Argo Workflow step's, a
Ray head's, a Spark driver's pod). With --profile SECONDS, then profiles the API server (its own
pprof endpoint, read with `go tool pprof`) while each webhook's namespace gets pods for that
long, and prints its CPU per pod in the phases where a webhook's answer costs it something: where
the API server's time goes.

    python -m bench.apiserver [--rounds 4] [--pods 300] [--concurrency 12] [--profile 0]
                              [--pod notebook|kubeflow|job|argo|ray|spark]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import functools
import http.client
import json
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

from bench.load import cpu_seconds, pct
from tests.cluster import ControlPlane, control_plane, install
from tests.golden import GOLDEN, load_case
from tests.kubeflow import notebook_pod
from tests.procs import free_port, running, wait_until
from tests.reviews import pod_review
from tests.scenarios import INJECTED, group_namespace, scenario_pod
from tests.webhookproc import WebhookProcess, serving_certs

NAMES = ("none", "noop", "touch", "replay", "ours")
TOUCHED = "bench/touched"
# What the API server spends on a webhook's answer: (phase, the function of the API server whose
# cumulative CPU time it is; None: all of it). Functions as named in kube-apiserver v1.35.
PHASES: tuple[tuple[str, str | None], ...] = (
    ("all of the API server", None),
    ("mutating webhooks, both passes", "webhook/mutating.(*Plugin).Admit"),
    ("  matchConditions (CEL)", "matchconditions.(*matcher).Match"),
    ("  call, patch applied", "(*mutatingDispatcher).callAttrMutatingHook"),
    ("    the patch itself", "json-patch%2ev4.Patch.Apply"),
    ("  changed since? (DeepEqual)", "IsOutputChangedSinceLastWebhookInvocation"),
    ("all admission, both passes", "admission.(*reinvoker).Admit"),
    ("storing the pod", "registry.(*Store).Create"),
    ("garbage collection", "runtime.gcBgMarkWorker"),
)


def apiserver_pid(cp: ControlPlane) -> int:
    """The running kube-apiserver of this control plane (found by its data folder)."""
    for proc in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
            if cmd[0].endswith(b"kube-apiserver") and str(cp.dir).encode() in b"".join(cmd):
                return int(proc.name)
    raise RuntimeError("no kube-apiserver running")


# The batch engines' pods, as their programs make them (the golden cases, which
# tests/test_builtin_controllers.py and tests/test_batch_engines.py hold to the real programs).
ENGINE_PODS = {
    "job": "team-kubernetes-job",
    "argo": "team-argo-step",
    "ray": "team-ray-head",
    "spark": "team-spark-driver",
}


def bench_pod(kind: str, namespace: str) -> dict[str, Any]:
    """PrimeHub's notebook (its group label), or Kubeflow's or a batch engine's (none), with a
    generated name."""
    if kind == "notebook":
        return scenario_pod("notebook", namespace)
    if kind in ENGINE_PODS:
        pod = load_case(GOLDEN / "cases" / f"{ENGINE_PODS[kind]}.yaml")["pod"]
        pod["metadata"].pop("ownerReferences", None)  # no such owner here
    else:
        pod = notebook_pod("bench", namespace, {})
    pod["metadata"].pop("name", None)
    pod["metadata"]["generateName"] = "bench-"
    return pod


def namespace_setting(cp: ControlPlane, namespace: str) -> None:
    """A setting for every pod of the namespace that no group's setting matches."""
    setting = {
        "apiVersion": "mlflow.primehub.io/v1alpha1",
        "kind": "MLflowSetting",
        "metadata": {"name": "whole-namespace", "namespace": namespace},
        "spec": {"trackingUri": "http://mlflow.team.svc:5000"},
    }
    applied = cp.kubectl("apply", "-f", "-", input=json.dumps(setting), check=False)
    assert applied.returncode == 0, applied.stderr


def create_many(
    cp: ControlPlane, namespace: str, pods: int, concurrency: int, mark: str | None, kind: str
) -> list[float]:
    """Latencies (s) of `pods` notebook creations over keep-alive connections (http.client: the
    client shares the machine, so it should cost little); raises if any is not created, or
    lacks the annotation `mark` that its webhook adds."""
    body = json.dumps(bench_pod(kind, namespace)).encode()
    path = f"/api/v1/namespaces/{namespace}/pods"
    headers = {"Authorization": f"Bearer {cp.admin_token}", "Content-Type": "application/json"}
    host, port = cp.url.removeprefix("https://").rsplit(":", 1)
    context = ssl.create_default_context(cafile=str(cp.ca_file))
    local = threading.local()
    expected = json.dumps(mark).encode() if mark else b""

    def one(_: int) -> float:
        if not hasattr(local, "conn"):
            local.conn = http.client.HTTPSConnection(host, int(port), context=context, timeout=30)
        start = time.perf_counter()
        local.conn.request("POST", path, body, headers)
        reply = local.conn.getresponse()
        text = reply.read()
        elapsed = time.perf_counter() - start
        if reply.status != 201 or expected not in text:
            raise RuntimeError(f"{namespace}: {reply.status} {text[:300]!r}")
        return elapsed

    with ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(one, range(pods)))


def answered_patch(cp: ControlPlane, ours: str, ca_file: Path, kind: str) -> list[Any]:
    """Ours' patch for the benchmark's pod as the API server sends it (defaulted, with its
    service account's volume: read back from a dry run where no webhook is registered)."""
    pod = bench_pod(kind, "bench-none")
    seen = cp.request("POST", "/api/v1/namespaces/bench-none/pods", pod, dryRun="All").json()
    review = pod_review(seen, namespace="bench-ours")
    reply = requests.post(f"{ours}/mutate", json=review, verify=ca_file, timeout=10)
    patch: list[Any] = json.loads(base64.b64decode(reply.json()["response"]["patch"]))
    return patch


def cumulative_seconds(profile: bytes, go: str) -> dict[str | None, float]:
    """CPU seconds per PHASES function in a Go CPU profile (None: all samples)."""
    with tempfile.NamedTemporaryFile(suffix=".pprof") as f:
        f.write(profile)
        f.flush()
        top = subprocess.run(
            [go, "tool", "pprof", "-top", "-cum", "-nodecount=100000", f.name],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
    unit = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}

    def seconds(text: str) -> float:
        number = text.rstrip("µnmus")
        return float(number) * unit[text[len(number) :] or "s"]

    out: dict[str | None, float] = {}
    for line in top.splitlines():
        if line.startswith("Duration:"):  # Duration: 20s, Total samples = 21.43s (107%)
            out[None] = seconds(line.split("= ")[1].split()[0])
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and fields[1].endswith("%") and fields[4].endswith("%"):
            name = fields[5].removesuffix(" (inline)")
            for _, frame in PHASES:
                if frame and name.endswith(frame):
                    out[frame] = out.get(frame, 0.0) + seconds(fields[3])
    return out


def profile_phases(
    cp: ControlPlane, names: tuple[str, ...], seconds: int, concurrency: int,
    marks: dict[str, str | None], go: str, kind: str,
) -> dict[str, dict[str | None, float]]:  # fmt: skip
    """The API server's CPU µs per pod in each of PHASES, from its own profiles while pods are
    created in each namespace: three windows of `seconds` each, in turn, each started with no
    pods stored (the API server's heap, and so its garbage collection, grows with the pods it
    keeps: the configuration profiled last would pay for the others' pods)."""
    spent = {n: dict.fromkeys([frame for _, frame in PHASES], 0.0) for n in names}
    pods = dict.fromkeys(names, 0)
    with ThreadPoolExecutor(1) as sampler:
        for turn in range(3):
            for name in names[turn:] + names[:turn]:
                for each in NAMES:
                    cp.request("DELETE", f"/api/v1/namespaces/bench-{each}/pods")
                profile = sampler.submit(
                    cp.request, "GET", "/debug/pprof/profile", seconds=str(seconds)
                )
                while not profile.done():
                    made = create_many(cp, f"bench-{name}", 100, concurrency, marks[name], kind)
                    pods[name] += len(made)
                for frame, cpu in cumulative_seconds(profile.result().content, go).items():
                    spent[name][frame] += cpu
    return {n: {k: v * 1e6 / pods[n] for k, v in spent[n].items()} for n in names}


def print_phases(per_pod: dict[str, dict[str | None, float]], seconds: int) -> None:
    names = list(per_pod)
    print(f"\nAPI server CPU µs per pod, by phase (pprof; 3 x {seconds} s of pod creation each)")
    print(f"{'phase':<34}" + "".join(f"{n:>8}" for n in names))
    for label, frame in PHASES:
        print(f"{label:<34}" + "".join(f"{per_pod[n].get(frame, 0.0):>8.0f}" for n in names))


def register_like_ours(cp: ControlPlane, namespace: str, url: str, ours: str) -> None:
    """`namespace` served by a copy of ours' configuration pointed at `url` (it may inject
    nothing, so group_namespace's check for an injection cannot be used)."""
    config = (
        cp.kubectl("get", "mutatingwebhookconfiguration", "mlflow-webhook-bench-ours", "-o", "yaml")
        .stdout.replace("bench-ours", namespace)
        .replace(ours, url)
    )
    cp.request("POST", "/api/v1/namespaces", {"metadata": {"name": namespace}})
    applied = cp.kubectl("apply", "-f", "-", input=config, check=False)
    assert applied.returncode == 0, applied.stderr


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rounds", type=int, default=4, help="4: each configuration in each place")
    p.add_argument("--pods", type=int, default=300)
    p.add_argument("--concurrency", type=int, default=12)
    p.add_argument("--pod", choices=("notebook", "kubeflow", *ENGINE_PODS), default="notebook")
    p.add_argument(
        "--profile", type=int, default=0, metavar="SECONDS",
        help="0: then profile the API server for SECONDS per webhook (needs Go)",
    )  # fmt: skip
    a = p.parse_args()
    go = shutil.which("go") or "/usr/local/go/bin/go"
    if a.profile and not Path(go).exists():
        p.error("--profile needs Go (go tool pprof)")
    tmp = Path(tempfile.mkdtemp(prefix="bench-apiserver-"))
    for folder in ("cluster", "install"):
        (tmp / folder).mkdir()
    serving_certs(tmp / "certs")
    certs = tmp / "certs"
    ca_file = certs / "ca.crt"
    with contextlib.ExitStack() as stack:
        cp = stack.enter_context(control_plane(tmp / "cluster"))
        inst = stack.enter_context(install(cp, tmp / "install"))
        inst.webhook.stop()  # the install's replica: its configuration would call it too
        cp.kubectl("delete", "mutatingwebhookconfiguration", "mlflow-webhook")
        cp.kubectl("delete", "validatingwebhookconfiguration", "mlflow-webhook")
        ours = WebhookProcess(
            certs,
            free_port(),
            tmp / "ours.log",
            ["--cluster", f"--kubeconfig={cp.webhook_kubeconfig}"],
            ["--shutdown-delay=0"],
        )
        ours.start(ca_file)
        stack.callback(ours.stop)
        cp.request("POST", "/api/v1/namespaces", {"metadata": {"name": "bench-none"}})
        group_namespace(cp, "bench-ours", f"{ours.url}/mutate", ca_file.read_bytes())
        if a.pod != "notebook":  # served by the namespace's setting
            namespace_setting(cp, "bench-ours")

            def served() -> bool:
                pod = bench_pod(a.pod, "bench-ours")
                path = "/api/v1/namespaces/bench-ours/pods"
                reply = cp.request("POST", path, pod, dryRun="All").json()
                return INJECTED in (reply["metadata"].get("annotations") or {})

            wait_until(served, 60, "the namespace's setting in the webhook")
        patch = answered_patch(cp, ours.url, ca_file, a.pod)
        path = "/metadata/annotations/" + TOUCHED.replace("/", "~1")
        touch = [{"op": "add", "path": path, "value": "1"}]
        if not bench_pod(a.pod, "bench-ours")["metadata"].get("annotations"):  # add them all
            touch = [{"op": "add", "path": "/metadata/annotations", "value": {TOUCHED: "1"}}]
        marks = {"none": None, "noop": None, "touch": TOUCHED, "replay": INJECTED, "ours": INJECTED}
        (tmp / "patch.json").write_text(json.dumps(patch))
        (tmp / "touch.json").write_text(json.dumps(touch))
        pids = {"ours": ours.proc.pid}
        for name, extra in (
            ("noop", []),
            ("touch", [str(tmp / "touch.json")]),
            ("replay", [str(tmp / "patch.json")]),
        ):
            port = free_port()
            args = [sys.executable, "-m", "bench.noop", str(certs / "tls.crt"),
                    str(certs / "tls.key"), str(port), "2", *extra]  # fmt: skip
            proc = stack.enter_context(running(args, tmp / f"{name}.log"))
            pids[name] = proc.pid
            url = f"https://127.0.0.1:{port}"
            wait_until(
                lambda u=url: requests.get(f"{u}/readyz", verify=ca_file, timeout=2).ok,
                30,
                name,
                proc,
            )
            register_like_ours(cp, f"bench-{name}", url, ours.url)
        time.sleep(2)  # a new webhook configuration takes a moment to be used
        results: dict[str, dict[str, list[float]]] = {
            n: {"rps": [], "p50": [], "p99": [], "hook": [], "api": []} for n in NAMES
        }
        api = apiserver_pid(cp)
        for r in range(a.rounds):
            # Each round in another order: pods pile up in etcd as the run goes on, and the
            # one always created last would be judged on the largest store.
            for name in NAMES[r % len(NAMES) :] + NAMES[: r % len(NAMES)]:
                hook_cpu = functools.partial(cpu_seconds, pids[name]) if name in pids else float
                hook, spent = hook_cpu(), cpu_seconds(api)
                start = time.perf_counter()
                lat = create_many(cp, f"bench-{name}", a.pods, a.concurrency, marks[name], a.pod)
                took = time.perf_counter() - start
                per_pod = 1000 / a.pods  # s per run -> ms per pod
                results[name]["api"].append((cpu_seconds(api) - spent) * per_pod)
                results[name]["hook"].append((hook_cpu() - hook) * per_pod)
                results[name]["rps"].append(a.pods / took)
                results[name]["p50"].append(pct(lat, 0.5) * 1000)
                results[name]["p99"].append(pct(lat, 0.99) * 1000)
            print(f"round {r + 1}/{a.rounds} done", file=sys.stderr)
        phases = a.profile and profile_phases(cp, NAMES, a.profile, a.concurrency, marks, go, a.pod)
    med = {n: {k: statistics.median(v) for k, v in m.items()} for n, m in results.items()}
    print(
        f"{'webhook':<8}{'pods/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'CPU ms/pod: webhook':>21}"
        f"{'API server':>12}   ({a.pods} {a.pod} pods at concurrency {a.concurrency}; "
        f"medians of {a.rounds} interleaved rounds)"
    )
    for name, m in med.items():
        print(
            f"{name:<8}{m['rps']:>9.0f}{m['p50']:>9.1f}{m['p99']:>9.1f}{m['hook']:>21.3f}"
            f"{m['api']:>12.3f}"
        )
    for name, base, goal in (
        ("ours", "noop", " (goal >= 0.9, <= 1.1)"),
        ("touch", "noop", " (the best any mutating webhook can do here)"),
        ("ours", "touch", ""),
        ("ours", "replay", " (what our rules cost on top of the change they make)"),
    ):
        print(
            f"{name} vs {base}: throughput {med[name]['rps'] / med[base]['rps']:.2f}, "
            f"p99 {med[name]['p99'] / med[base]['p99']:.2f}{goal}"
        )
    if phases:
        print_phases(phases, a.profile)


if __name__ == "__main__":
    main()
