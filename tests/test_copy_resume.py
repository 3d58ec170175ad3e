"""A copy-artifacts that is killed midway (an OOM kill, a node under pressure) and run again in
the same pod, whose emptyDir survived: it fetches only what the first run had not fetched whole,
verified against the store's sizes and ETags, and the result is MLflow's own download. And a
model of gigabytes is streamed: the copier's memory stays far below an init container's limit."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.conftest import Stores
from tests.procs import wait_until
from tests.registry import register, sharded_model, tree
from tests.servers import gofakes3_server
from tests.tcpproxy import TcpProxy
from tests.test_copy import clean_env, copy
from webhook.copier import s3
from webhook.copier.staging import COMPLETE, JOURNAL

MB = 1 << 20


def journal_records(dest: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (dest / JOURNAL).read_text().splitlines()[1:]]


def journal_entries(dest: Path) -> int:
    """Files the journal vouches for (its first line names the source)."""
    try:
        return max(len((dest / JOURNAL).read_text().splitlines()) - 1, 0)
    except OSError:
        return 0


def test_a_killed_copy_fetches_only_what_is_missing(stores: Stores, tmp_path: Path) -> None:
    rng = random.Random(3)
    src = tmp_path / "src"
    (src / "tokenizer").mkdir(parents=True)
    (src / "MLmodel").write_text("flavors: {}\n")
    small = {f"tokenizer/t{i:02d}.json": rng.randbytes(50_000) for i in range(20)}
    large = {f"shard-{i}.bin": rng.randbytes(24 * MB) for i in range(4)}
    for rel, data in {**small, **large}.items():
        (src / rel).write_bytes(data)
    version = register(stores.mlflow.url, "s3", "s3://mlflow/mlruns", "resumable", src)
    uri, dest = f"models:/resumable/{version}", tmp_path / "m"
    host, port = stores.s3.url.removeprefix("http://").split(":")
    env = {**stores.mlflow.env, **stores.s3.env}
    with TcpProxy((host, int(port)), rate=20 * MB).run() as slow:
        # A network of 20 MB/s, shared by the four shards: the small files are whole long before.
        env["MLFLOW_S3_ENDPOINT_URL"] = f"http://127.0.0.1:{slow.port}"
        args = [sys.executable, "-m", "webhook", "copy-artifacts", uri, str(dest)]
        first = subprocess.Popen(args, env=clean_env(**env), start_new_session=True)
        wait_until(lambda: journal_entries(dest) >= len(small) + 1, 120, "small files", first)
        slow.stall()
        os.killpg(first.pid, signal.SIGKILL)  # the copier and s5cmd, as an OOM kill of the pod's
        first.wait()  # container does (memory.oom.group)
    vouched = {e["path"]: e["size"] for e in journal_records(dest)}
    assert len(small) < len(vouched) < len(small) + len(large) + 1, "killed too late"
    with TcpProxy((host, int(port))).run() as counting:  # nothing of the first run in its count
        env["MLFLOW_S3_ENDPOINT_URL"] = f"http://127.0.0.1:{counting.port}"
        second, term = copy(uri, dest, env)
        fetched = counting.received
    assert second.returncode == 0, second.stderr + term
    assert f"kept {len(vouched)} files" in second.stderr
    everything = sum(p.stat().st_size for p in src.rglob("*") if p.is_file())
    missing = everything - sum(vouched.values())
    # What was missing, and a few KB of listing and headers: nothing vouched for came again,
    # and a shard the kill cut short (s5cmd's temporary file) was fetched whole.
    assert missing <= fetched < missing + 256 * 1024, (fetched, missing)
    import mlflow

    mlflow.set_tracking_uri(stores.mlflow.url)
    theirs = Path(mlflow.artifacts.download_artifacts(uri, dst_path=str(tmp_path / "mlflow")))
    ours = {k: v for k, v in tree(dest).items() if k != COMPLETE}
    assert ours == tree(theirs)
    assert not (dest / JOURNAL).exists() and not (dest / ".mlflow-staging").exists()


def test_a_copy_out_of_time_says_so_and_the_next_attempt_resumes(
    stores: Stores, tmp_path: Path
) -> None:
    """`--timeout` ends an S3 copy on a slow network: exit 6 (unavailable, as after retries),
    nothing a model server could load, and what came whole is kept for the next attempt."""
    src = sharded_model(tmp_path / "src", 3, 40 * MB, seed=4)
    version = register(stores.mlflow.url, "s3", "s3://mlflow/mlruns", "out-of-time", src)
    uri, dest = f"models:/out-of-time/{version}", tmp_path / "m"
    host, port = stores.s3.url.removeprefix("http://").split(":")
    env = {**stores.mlflow.env, **stores.s3.env}
    with TcpProxy((host, int(port)), rate=10 * MB).run() as slow:  # 120 MB: 12 s at best
        env["MLFLOW_S3_ENDPOINT_URL"] = f"http://127.0.0.1:{slow.port}"
        first, term = copy(uri, dest, env, "--timeout", "4")
    assert first.returncode == 6, first.stderr + term
    assert "time limit" in term, term
    assert sorted(p.name for p in dest.iterdir()) == [JOURNAL, ".mlflow-staging"]
    assert [r["path"] for r in journal_records(dest)] == ["MLmodel"]
    env["MLFLOW_S3_ENDPOINT_URL"] = stores.s3.url
    second, term = copy(uri, dest, env)
    assert second.returncode == 0, second.stderr + term
    assert "kept 1 files" in second.stderr
    assert {k: v for k, v in tree(dest).items() if k != "registered_model_meta"} == tree(src)


def test_a_model_of_gigabytes_is_streamed_in_bounded_memory(stores: Stores, tmp_path: Path) -> None:
    """2.5 GB in one file and some small ones, from a store fast enough to send it in seconds
    (gofakes3): the copier's own peak and s5cmd's stay well under 256 MB together."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "MLmodel").write_text("flavors: {}\n")
    chunk = random.Random(5).randbytes(MB)
    with open(src / "weights.bin", "wb") as f:
        for i in range(2560):
            f.write(chunk[i % 7 :] + chunk[: i % 7])
    for i in range(50):
        (src / f"vocab-{i}.txt").write_text(f"{i}\n" * 1000)
    with gofakes3_server(tmp_path) as store:
        env = {**stores.mlflow.env, **stores.s3.env, "MLFLOW_S3_ENDPOINT_URL": store.url}
        upload = [
            str(s3.s5cmd_binary()),
            "--endpoint-url",
            store.url,
            "cp",
            f"{src}/",
            "s3://mlflow/big/model/",
        ]
        subprocess.run(upload, env=clean_env(**env), check=True, capture_output=True)
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=stores.mlflow.url)
        client.create_registered_model("gigabytes")
        client.create_model_version("gigabytes", source="s3://mlflow/big/model")
        result, term = copy("models:/gigabytes/1", tmp_path / "m", env)
    assert result.returncode == 0, result.stderr + term
    peaks = re.search(r"peak memory ([0-9.]+) MB \(copy-artifacts\) \+ ([0-9.]+) MB", result.stderr)
    assert peaks, result.stderr
    assert float(peaks[1]) + float(peaks[2]) < 256, peaks[0]
    assert (tmp_path / "m" / "weights.bin").stat().st_size == 2560 * MB
    ours = {
        k: v
        for k, v in tree(tmp_path / "m").items()
        if k not in (COMPLETE, "registered_model_meta")
    }
    assert ours == tree(src)
