"""The webhook as a local process for the control-plane tests: started and stopped at will on a
fixed port, serving the certificate files in its folder (which a test may replace, as a kubelet
does when the Secret changes)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import requests

from tests.procs import stop, wait_until


class WebhookProcess:
    def __init__(self, cert_dir: Path, kubeconfig: Path, port: int, log: Path) -> None:
        self.cert_dir, self.kubeconfig, self.port, self.log = cert_dir, kubeconfig, port, log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self, ca_file: Path) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "webhook",
                    "serve",
                    "--cluster",
                    f"--kubeconfig={self.kubeconfig}",
                    f"--port={self.port}",
                    f"--cert-file={self.cert_dir / 'tls.crt'}",
                    f"--key-file={self.cert_dir / 'tls.key'}",
                    "--log-level=warning",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_until(
            lambda: requests.get(f"{self.url}/readyz", verify=ca_file, timeout=2).ok,
            30,
            "webhook",
            self.proc,
        )

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)
            self.proc = None
