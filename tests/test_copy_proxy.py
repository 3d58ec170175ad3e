"""copy-artifacts through the tracking server's artifact proxy (`mlflow-artifacts:`, what
`mlflow server` serves by default): over the REST API, without MLflow in the init container's
memory, many folders and files at once, and never a file outside the destination whatever the
server lists. (Copies of served artifacts by version, alias and stage, odd names, credentials and
a server dying midway are in test_copy.py.)"""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from mlflow import MlflowClient
from mlflow.store.artifact.mlflow_artifacts_repo import MlflowArtifactsRepository

from tests.conftest import Stores
from tests.procs import wait_until
from tests.registry import register, sharded_model, tree
from tests.tcpproxy import TcpProxy
from tests.test_copy import clean_env, copy
from webhook.copier.proxy import ARTIFACTS, locate
from webhook.copier.staging import COMPLETE

MB = 1 << 20


@pytest.mark.parametrize(
    ("source", "tracking"),
    [
        ("mlflow-artifacts:/1/abc/artifacts/model", "http://mlflow.ns:5000"),
        ("mlflow-artifacts:/1/abc/artifacts/model/", "https://example.com/mlflow/"),
        ("mlflow-artifacts://artifacts.ns:8080/2/x/artifacts", "http://user:pw@mlflow.ns"),
        ("mlflow-artifacts:///3/y/artifacts/m", "https://example.com/a/b"),
    ],
)
def test_the_proxy_is_found_where_mlflow_finds_it(source: str, tracking: str) -> None:
    """Where the folder is: the same URL as MLflow's own client resolves (its host if the URI
    names one, the tracking server's scheme and path prefix)."""
    base, path = locate(source, tracking)
    assert f"{base}/{path}" == MlflowArtifactsRepository.resolve_uri(source, tracking)


def test_a_large_model_is_streamed_without_mlflow_in_memory(stores: Stores, tmp_path: Path) -> None:
    """300 MB in one file and 120 more in nested folders: the copier stays near the size of the
    interpreter (MLflow's own download imports MLflow first: about 100 MB)."""
    rng = random.Random(9)
    src = tmp_path / "src"
    for i in range(120):
        (src / f"tokenizer/part-{i % 7}").mkdir(parents=True, exist_ok=True)
        (src / f"tokenizer/part-{i % 7}/piece-{i}.json").write_bytes(rng.randbytes(i * 97))
    with open(src / "weights.bin", "wb") as f:
        chunk = rng.randbytes(MB)
        for i in range(300):
            f.write(chunk[i:] + chunk[:i])
    (src / "MLmodel").write_text("flavors: {}\n")
    version = register(stores.mlflow.url, "proxied", None, "proxied-big", src)
    result, term = copy(f"models:/proxied-big/{version}", tmp_path / "m", stores.mlflow.env)
    assert result.returncode == 0, result.stderr + term
    assert "from mlflow-artifacts:/" in result.stderr
    peak = re.search(r"peak memory ([0-9.]+) MB \(copy-artifacts\)", result.stderr)
    assert peak and float(peak[1]) < 64, result.stderr[-500:]
    copied = {k: v for k, v in tree(tmp_path / "m").items() if k != "registered_model_meta"}
    assert copied == tree(src)


class _Liar(BaseHTTPRequestHandler):
    """A server that no MLflow release is: a registry whose artifact proxy lists a path out of
    the version's folder. A fake, because the real server refuses such paths."""

    listed = "../../escaped.txt"

    def do_GET(self) -> None:
        url = urlparse(self.path)
        if url.path.endswith("/model-versions/get"):
            body = {"model_version": {"name": "m", "version": "1"}}
        elif url.path.endswith("/model-versions/get-download-uri"):
            body = {"artifact_uri": "mlflow-artifacts:/1/run/artifacts/model"}
        elif url.path == ARTIFACTS and parse_qs(url.query).get("path") == ["1/run/artifacts/model"]:
            body = {"files": [{"path": self.listed, "is_dir": False, "file_size": 3}]}
        elif url.path.startswith(ARTIFACTS + "/"):
            self.send_response(200)
            self.send_header("Content-Length", "3")
            self.end_headers()
            self.wfile.write(b"bad")
            return
        else:
            self.send_error(404)
            return
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_: object) -> None:
        pass


@contextmanager
def liar() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Liar)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def test_a_listed_path_out_of_the_destination_is_refused(tmp_path: Path) -> None:
    dest = tmp_path / "a" / "m"
    with liar() as url:
        result, term = copy("models:/m/1", dest, {"MLFLOW_TRACKING_URI": url})
    assert result.returncode == 1, result.stderr
    assert "unsafe path: '../../escaped.txt'" in term
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "a/escaped.txt").exists()
    assert list(dest.iterdir()) == []


def test_an_empty_folder_is_not_a_model(stores: Stores, tmp_path: Path) -> None:
    client = MlflowClient(tracking_uri=stores.mlflow.url)
    run = client.create_run(client.create_experiment("proxied-hollow"))  # nothing logged
    client.create_registered_model("proxied-hollow")
    source = f"{run.info.artifact_uri}/model"
    client.create_model_version("proxied-hollow", source=source, run_id=run.info.run_id)
    result, term = copy("models:/proxied-hollow/1", tmp_path / "m", stores.mlflow.env)
    assert result.returncode == 3, result.stderr
    assert "there are no artifacts for version 1 of model" in term
    assert not (tmp_path / "m" / COMPLETE).exists()


def test_sigterm_mid_download_stops_every_file_and_leaves_nothing(
    stores: Stores, tmp_path: Path
) -> None:
    """The pod is deleted while its model comes through the proxy at 2 MB/s (50 s for these 100
    MB): the copier stops at once, all eight downloads with it, and leaves nothing."""
    src = sharded_model(tmp_path / "src", 10, 10 * MB, seed=12)
    version = register(stores.mlflow.url, "proxied", None, "proxied-stopped", src)
    host, port = stores.mlflow.url.removeprefix("http://").split(":")
    dest = tmp_path / "m"
    with TcpProxy((host, int(port)), rate=2 * MB).run() as slow:
        env = {**stores.mlflow.env, "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{slow.port}"}
        args = [sys.executable, "-m", "webhook", "copy-artifacts"]
        copier = subprocess.Popen(
            [*args, f"models:/proxied-stopped/{version}", str(dest)],
            env=clean_env(**env),
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_until(lambda: tree_bytes(dest) > MB, 60, "the download's first MB", copier)
        copier.terminate()
        _, stderr = copier.communicate(timeout=15)  # not the 50 s the downloads would take
    assert copier.returncode == 1, stderr
    assert "the copy was interrupted; nothing was left in place" in stderr
    assert list(dest.iterdir()) == []


def tree_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
