"""The webhook as a local process for the tests: `mlflow-webhook serve` started and stopped at
will on a fixed port, serving the certificate files in its folder (which a test may replace, as
a kubelet does when the Secret changes), from a settings file or from the cluster."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import requests

from tests.procs import stop, wait_until
from webhook.tls import make_ca, make_serving_cert


def serving_certs(folder: Path, name: str = "test-webhook-ca") -> Path:
    """A CA and a serving certificate for 127.0.0.1 in `folder` (tls.crt, tls.key, ca.crt), as
    WebhookProcess serves them; returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    ca = make_ca(name)
    pair = make_serving_cert(ca, ["127.0.0.1", "localhost"])
    (folder / "tls.crt").write_bytes(pair.cert_pem())
    (folder / "tls.key").write_bytes(pair.key_pem())
    (folder / "ca.crt").write_bytes(ca.cert_pem())
    return folder


class WebhookProcess:
    def __init__(
        self,
        cert_dir: Path,
        port: int,
        log: Path,
        source: list[str],
        extra: list[str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        """`source`: ["--settings-file", F] or ["--cluster", "--kubeconfig=K"]; `cwd`: another
        checkout of the project to run (the benchmarks compare against an older one)."""
        self.cert_dir, self.port, self.log = cert_dir, port, log
        self.source, self.extra, self.cwd = source, extra or [], cwd
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def launch(self) -> subprocess.Popen[bytes]:
        """Starts the server and returns at once (a test may want to talk to it while it boots)."""
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "webhook",
                    "serve",
                    *self.source,
                    f"--port={self.port}",
                    f"--cert-file={self.cert_dir / 'tls.crt'}",
                    f"--key-file={self.cert_dir / 'tls.key'}",
                    "--log-level=warning",
                    *self.extra,
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=self.cwd,
            )
        return self.proc

    def start(self, ca_file: Path) -> None:
        self.launch()
        self.wait_ready(ca_file)

    def wait_ready(self, ca_file: Path, timeout: float = 60) -> None:
        wait_until(
            lambda: requests.get(f"{self.url}/readyz", verify=ca_file, timeout=2).ok,
            timeout,
            "webhook",
            self.proc,
        )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def workers(self) -> list[int]:
        assert self.proc is not None
        pid = self.proc.pid
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]

    def terminate(self) -> None:
        """SIGTERM to the master only, as a kubelet sends it to the container's first process."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGTERM)

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)
            self.proc = None
