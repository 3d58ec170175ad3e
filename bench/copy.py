"""Copy benchmark: `mlflow-webhook copy-artifacts` on a model of about 1 GB (many small files,
a few large ones), against `cp -r` of the same folder (local artifact root), and on S3 (moto)
against a plain boto3 download of the same objects with its default transfer settings and
against KServe's storage initializer (PyPI `kserve-storage`, bench/peers.sh) downloading the
version's `s3://` location, in the same run, interleaved. Prints medians, ratios (peer's time /
our time: 1.0 is as fast), and the command's start-up (imports) separately.

    python -m bench.copy [--rounds 3] [--small 2000] [--large 4] [--large-mb 220]
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
from pathlib import Path

from tests.procs import environ
from tests.registry import register
from tests.servers import launch_mlflow, moto_server, wait_mlflow

BOTO_BASELINE = """
import sys, boto3, os
bucket, prefix, dest = sys.argv[1:4]
s3 = boto3.client("s3", endpoint_url=os.environ["MLFLOW_S3_ENDPOINT_URL"])
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
    for obj in page.get("Contents", []):
        target = os.path.join(dest, obj["Key"][len(prefix):].lstrip("/"))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        s3.download_file(bucket, obj["Key"], target)
"""


KSERVE_PEER = """
import sys
from kserve_storage import Storage
Storage.download(sys.argv[1], sys.argv[2])
"""


def make_model(root: Path, small: int, large: int, large_mb: int) -> int:
    rng = random.Random(7)
    chunk = rng.randbytes(1 << 20)
    (root / "data").mkdir(parents=True)
    for i in range(small):
        sub = root / "data" / f"part-{i % 20:02d}"
        sub.mkdir(exist_ok=True)
        (sub / f"f{i:05d}.bin").write_bytes(rng.randbytes(64 * 1024))
    for i in range(large):
        with open(root / f"weights-{i}.bin", "wb") as f:
            for _ in range(large_mb):
                f.write(chunk)
    (root / "MLmodel").write_text("flavors: {}\n")
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def timed(args: list[str], env: dict[str, str] | None = None) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(args, check=True, env=env, capture_output=True, text=True)
    return time.perf_counter() - start, done.stderr


def phase(log: str, pattern: str) -> float:
    """A duration copy-artifacts logged (resolution, or the copy itself)."""
    return float(re.findall(pattern, log)[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--small", type=int, default=2000)
    p.add_argument("--large", type=int, default=4)
    p.add_argument("--large-mb", type=int, default=220)
    a = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-copy-"))
    try:
        with contextlib.ExitStack() as stack:
            s3 = stack.enter_context(moto_server(tmp))
            stack.enter_context(environ(s3.env))
            server = wait_mlflow(launch_mlflow(stack, tmp / "mlflow", "mlflow"))
            size = make_model(tmp / "src", a.small, a.large, a.large_mb)
            files = a.small + a.large + 1
            print(f"model: {files} files, {size / 1e9:.2f} GB", file=sys.stderr)
            root = tmp / "artifact-root"
            t0 = time.perf_counter()
            register(server.url, "local", str(root), "bench-local", tmp / "src")
            register(server.url, "s3", "s3://mlflow/mlruns", "bench-s3", tmp / "src")
            print(f"registered in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
            local_src = next(root.rglob("artifacts/model"))
            s3_prefix = _s3_prefix(server.url)
            env = {**os.environ, "MLFLOW_TRACKING_URI": server.url, **s3.env}
            cmd = [sys.executable, "-m", "webhook", "copy-artifacts"]
            peers = Path(
                subprocess.run(
                    [str(Path(__file__).parent / "peers.sh")],
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout.strip()
            )
            # KServe's initializer finds a store other than AWS by AWS_ENDPOINT_URL.
            kserve_env = {**env, "AWS_ENDPOINT_URL": s3.url, "AWS_DEFAULT_REGION": "us-east-1"}
            runs: dict[str, list[float]] = {
                k: []
                for k in (
                    "cp -r",
                    "copy local",
                    "boto3",
                    "kserve-storage",
                    "copy s3",
                    "imports",
                    "resolve",
                    "copy local (copy phase)",
                    "copy s3 (copy phase)",
                )
            }
            for r in range(a.rounds):
                for name, args in (
                    ("cp -r", ["cp", "-r", str(local_src), str(tmp / "out")]),
                    ("copy local", [*cmd, "models:/bench-local/1", str(tmp / "out")]),
                    (
                        "boto3",
                        [
                            sys.executable,
                            "-c",
                            BOTO_BASELINE,
                            "mlflow",
                            s3_prefix,
                            str(tmp / "out"),
                        ],
                    ),
                    (
                        "kserve-storage",
                        [
                            str(peers / "bin" / "python"),
                            "-c",
                            KSERVE_PEER,
                            f"s3://mlflow/{s3_prefix}",
                            str(tmp / "out"),
                        ],
                    ),
                    ("copy s3", [*cmd, "models:/bench-s3/1", str(tmp / "out")]),
                    (
                        "imports",
                        [
                            sys.executable,
                            "-c",
                            "import webhook.copier.command, mlflow.artifacts, boto3",
                        ],
                    ),
                ):
                    seconds, log = timed(args, kserve_env if name == "kserve-storage" else env)
                    runs[name].append(seconds)
                    if name.startswith("copy "):
                        runs[f"{name} (copy phase)"].append(phase(log, r"in ([0-9.]+) s \("))
                        runs["resolve"].append(phase(log, r"resolved .* in ([0-9.]+) s"))
                    shutil.rmtree(tmp / "out", ignore_errors=True)
                print(f"round {r + 1}/{a.rounds} done", file=sys.stderr)
            med = {k: statistics.median(v) for k, v in runs.items()}
            print(
                f"{'copy':<26}{'median s':>10}{'MB/s':>10}   ({files} files, "
                f"{size / 1e9:.2f} GB; {a.rounds} rounds)"
            )
            for name in (
                "cp -r",
                "copy local",
                "copy local (copy phase)",
                "boto3",
                "kserve-storage",
                "copy s3",
                "copy s3 (copy phase)",
            ):
                print(f"{name:<26}{med[name]:>10.2f}{size / 1e6 / med[name]:>10.0f}")
            print(
                f"copy-artifacts start-up (interpreter + imports): {med['imports']:.2f} s; "
                f"registry resolution: {med['resolve']:.2f} s"
            )
            print(
                f"local: cp -r / copy-artifacts = {med['cp -r'] / med['copy local']:.2f} whole "
                f"command, {med['cp -r'] / med['copy local (copy phase)']:.2f} copy phase"
            )
            for peer in ("boto3", "kserve-storage"):
                print(
                    f"s3: {peer} / copy-artifacts = {med[peer] / med['copy s3']:.2f} whole "
                    f"command, {med[peer] / med['copy s3 (copy phase)']:.2f} copy phase"
                )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _s3_prefix(tracking_uri: str) -> str:
    from mlflow import MlflowClient

    uri = MlflowClient(tracking_uri=tracking_uri).get_model_version_download_uri("bench-s3", "1")
    return str(uri).removeprefix("s3://mlflow/")


if __name__ == "__main__":
    main()
