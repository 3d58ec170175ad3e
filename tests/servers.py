"""Real MLflow tracking servers and real S3-compatible servers on 127.0.0.1, for the
copy-artifacts tests: moto (started once per test session by the fixtures in conftest.py), and
gofakes3 (tests/controlplane/build.sh), which sends fast enough for a copy of gigabytes."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import requests

from tests.procs import BIN, free_port, running, wait_until

MLFLOW_BIN = Path(
    os.environ.get("MLFLOW_SERVER_BIN")
    or Path.home() / ".cache/primehub-mlflow-webhook/mlflow-server-3.17.2/bin"
)
S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing-key",
    "AWS_SECRET_ACCESS_KEY": "testing-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@dataclass(frozen=True)
class S3:
    url: str
    bucket: str

    @property
    def env(self) -> dict[str, str]:
        return {**S3_ENV, "MLFLOW_S3_ENDPOINT_URL": self.url}


@dataclass(frozen=True)
class Mlflow:
    url: str
    proc: subprocess.Popen[bytes]
    env: dict[str, str]  # what a client needs (tracking URI, credentials)


@contextlib.contextmanager
def moto_server(tmp: Path) -> Iterator[S3]:
    port = free_port()
    moto = shutil.which("moto_server", path=os.path.dirname(sys.executable)) or "moto_server"
    with running([moto, "-H", "127.0.0.1", "-p", str(port)], tmp / "moto.log") as proc:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: requests.get(f"{url}/moto-api/", timeout=2).ok, 30, "moto", proc)
        import boto3

        boto3.client("s3", endpoint_url=url, **_boto_kwargs()).create_bucket(Bucket="mlflow")
        yield S3(url, "mlflow")


@contextlib.contextmanager
def gofakes3_server(tmp: Path) -> Iterator[S3]:
    """gofakes3's filesystem backend (objects in files under `tmp`, its RSS stays small)."""
    port = free_port()
    args = [str(BIN / "gofakes3"), "-backend", "fs", "-fs.path", str(tmp / "gofakes3")]
    args += ["-fs.create", "-initialbucket", "mlflow", "-host", f"127.0.0.1:{port}"]
    with running(args, tmp / "gofakes3.log") as proc:
        wait_until(
            lambda: socket.create_connection(("127.0.0.1", port), timeout=1).close() or True,
            30,
            "gofakes3",
            proc,
        )
        yield S3(f"http://127.0.0.1:{port}", "mlflow")


def _boto_kwargs() -> dict[str, str]:
    return {
        "aws_access_key_id": S3_ENV["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": S3_ENV["AWS_SECRET_ACCESS_KEY"],
        "region_name": S3_ENV["AWS_DEFAULT_REGION"],
    }


ADMIN = ("admin", "Adm1n-password-for-tests!")


def launch_mlflow(
    stack: contextlib.ExitStack, root: Path, name: str, *, auth: bool = False
) -> Mlflow:
    """Starts `mlflow server` with a sqlite registry in `root`, serving artifacts from
    root/artifacts; call `wait_mlflow` before use (start several, then wait: each takes 10-30 s).
    Several servers may share one root: the same store behind different processes."""
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    args = [
        str(MLFLOW_BIN / "mlflow"),
        "server",
        "--backend-store-uri",
        f"sqlite:///{root}/mlflow.db",
        "--artifacts-destination",
        str(root / "artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    env = {"MLFLOW_FLASK_SERVER_SECRET_KEY": "tests-only"}
    client_env = {"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{port}"}
    if auth:
        args += ["--app-name", "basic-auth"]
        env.update(MLFLOW_AUTH_ADMIN_USERNAME=ADMIN[0], MLFLOW_AUTH_ADMIN_PASSWORD=ADMIN[1])
        client_env.update(MLFLOW_TRACKING_USERNAME=ADMIN[0], MLFLOW_TRACKING_PASSWORD=ADMIN[1])
    proc = stack.enter_context(running(args, root / f"{name}.log", env=env, cwd=root))
    return Mlflow(f"http://127.0.0.1:{port}", proc, client_env)


def wait_mlflow(server: Mlflow) -> Mlflow:
    wait_until(
        lambda: requests.get(f"{server.url}/health", timeout=2).ok,
        120,
        "mlflow server",
        server.proc,
    )
    return server


@contextlib.contextmanager
def tls_in_front(tmp: Path, backends: list[str], pem: bytes) -> Iterator[list[str]]:
    """Debian's HAProxy terminating TLS (certificate and key in `pem`) in front of plain HTTP
    servers (`http://host:port`, each): yields their https:// URLs. For servers that serve no
    TLS themselves, as a corporate proxy or ingress with a private CA does."""
    (tmp / "tls.pem").write_bytes(pem)
    lines = [
        "defaults",
        "  mode tcp",
        "  timeout connect 2s",
        "  timeout client 60s",
        "  timeout server 60s",
    ]
    urls = []
    for i, backend in enumerate(backends):
        port = free_port()
        target = backend.split("://", 1)[1].rstrip("/")
        lines += [
            f"frontend f{i}",
            f"  bind 127.0.0.1:{port} ssl crt {tmp / 'tls.pem'}",
            f"  default_backend b{i}",
            f"backend b{i}",
            f"  server s{i} {target}",
        ]
        urls.append(f"https://127.0.0.1:{port}")
    (tmp / "tls-haproxy.cfg").write_text("\n".join(lines) + "\n")
    with running(
        ["haproxy", "-db", "-f", str(tmp / "tls-haproxy.cfg")], tmp / "tls-haproxy.log"
    ) as proc:
        host, port = urls[-1].rsplit(":", 1)[0][8:], int(urls[-1].rsplit(":", 1)[1])
        wait_until(
            lambda: socket.create_connection((host, port), timeout=1).close() or True,
            10,
            "haproxy (TLS)",
            proc,
        )
        yield urls
