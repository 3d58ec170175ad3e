"""The few Kubernetes API calls the webhook makes (list and watch MLflowSettings, PATCH their
status, a Lease, the certificate keeper's Secrets), as plain JSON over `urllib3`.

Why not the official client: importing it loads every model class of the API, about 60 MB per
process, for calls that need none of them; and objects stay plain dicts here, so fields this code
does not know survive a read-modify-write. Why not `requests`: 5 MB more per worker (its
charset detection and IDNA tables) for what urllib3, under it, does alone.

Nothing here imports `urllib3` before an Api is made (see Api.__init__).

Credentials: in a pod, the ServiceAccount's token (read again as the kubelet rotates it) and CA;
with `--kubeconfig`, its current context's server, CA and a token or client certificate.
(Kubeconfigs that log in through exec or auth-provider plugins are not supported.)
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from webhook.brief import brief
from webhook.files import FileProblem, load_yaml

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class Conflict(Exception):
    """HTTP 409: someone else wrote first (optimistic concurrency)."""


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}" if status else message)
        self.status = status


class Unreachable(ApiError):
    """No answer from the API server (refused, timed out, TLS failed): status 0."""

    def __init__(self, server: str, error: Exception) -> None:
        super().__init__(0, f"no answer from the API server {server}: {brief(error)}")


class ConfigError(ValueError):
    """No usable cluster credentials; the message says what is missing."""


@dataclass(frozen=True)
class Credentials:
    server: str
    verify: str | bool  # a CA bundle file, or True (system CAs), or False (insecure)
    token: str | None = None
    token_file: Path | None = None
    cert: tuple[str, str] | None = None  # client certificate and key files

    def bearer(self) -> str | None:
        if self.token_file is not None:
            return self.token_file.read_text().strip()  # rotated by the kubelet
        return self.token


def in_cluster() -> Credentials:
    host = os.environ.get("KUBERNETES_SERVICE_HOST")
    port = os.environ.get("KUBERNETES_SERVICE_PORT")
    if not host or not port or not (SERVICE_ACCOUNT / "token").exists():
        raise ConfigError("not running in a cluster (no service account); give --kubeconfig FILE")
    host = f"[{host}]" if ":" in host else host
    return Credentials(
        f"https://{host}:{port}",
        str(SERVICE_ACCOUNT / "ca.crt"),
        token_file=SERVICE_ACCOUNT / "token",
    )


def from_kubeconfig(path: Path) -> Credentials:
    try:
        config = load_yaml(path)
    except FileProblem as e:
        raise ConfigError(str(e)) from None
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: not a kubeconfig")

    def named(kind: str, name: Any) -> dict[str, Any]:
        for item in config.get(kind) or []:
            if isinstance(item, dict) and item.get("name") == name:
                return dict(item.get(kind[:-1]) or {})
        raise ConfigError(f"{path}: no {kind[:-1]} {name!r}")

    if not config.get("current-context"):
        raise ConfigError(f"{path}: names no current-context (no cluster)")
    context = named("contexts", config.get("current-context"))
    cluster, user = named("clusters", context.get("cluster")), named("users", context.get("user"))
    if "exec" in user or "auth-provider" in user:
        raise ConfigError(f"{path}: login plugins (exec, auth-provider) are not supported")
    files = Path(tempfile.mkdtemp(prefix="mlflow-webhook-kube-"))

    def file_of(section: dict[str, Any], key: str) -> str | None:
        """A file the kubeconfig names (relative to it), or its inline -data written to one."""
        if section.get(f"{key}-data"):
            target = files / key
            target.write_bytes(base64.b64decode(section[f"{key}-data"]))
            return str(target)
        value = section.get(key)
        return str(path.parent / value) if value else None

    ca = file_of(cluster, "certificate-authority")
    cert, key = file_of(user, "client-certificate"), file_of(user, "client-key")
    verify: str | bool = False if cluster.get("insecure-skip-tls-verify") else (ca or True)
    token_file = user.get("tokenFile")
    return Credentials(
        str(cluster.get("server") or ""),
        verify,
        token=user.get("token"),
        token_file=path.parent / token_file if token_file else None,
        cert=(cert, key) if cert and key else None,
    )


def credentials(kubeconfig: Path | None) -> Credentials:
    return from_kubeconfig(kubeconfig) if kubeconfig is not None else in_cluster()


class Api:
    """JSON in, JSON out; a GET of what does not exist is None, a 409 is Conflict, any other
    error is ApiError with its status."""

    def __init__(self, creds: Credentials, timeout: float = 30) -> None:
        # Here, not at the top: urllib3 binds ssl.SSLContext when imported, so it is imported
        # only in the worker processes, after gevent patched the standard library.
        import urllib3

        self.creds, self.timeout = creds, timeout
        tls: dict[str, Any] = {"cert_reqs": "CERT_REQUIRED"}
        if creds.verify is False:
            tls["cert_reqs"] = "CERT_NONE"
        if isinstance(creds.verify, str):
            tls["ca_certs"] = creds.verify
        if creds.cert is not None:
            tls["cert_file"], tls["key_file"] = creds.cert
        # No retries (a failed call is the caller's to retry), no proxy from the environment;
        # room for the watch, the status writer and the Lease at once (a full pool drops the
        # extra connection with a warning each time).
        self.pool = urllib3.PoolManager(retries=False, maxsize=4, **tls)
        self._transport_error = urllib3.exceptions.HTTPError

    def _headers(self, content_type: str) -> dict[str, str]:
        headers = {"Accept": "application/json", "Content-Type": content_type}
        token = self.creds.bearer()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    def _url(self, path: str, query: list[tuple[str, str]] | dict[str, Any] | None) -> str:
        return self.creds.server + path + (f"?{urlencode(query)}" if query else "")

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = "application/json",
        query: list[tuple[str, str]] | dict[str, Any] | None = None,
    ) -> dict[str, Any] | None:
        try:
            reply = self.pool.request(
                method,
                self._url(path, query),
                body=None if body is None else json.dumps(body).encode(),
                headers=self._headers(content_type),
                timeout=self.timeout,
            )
        except self._transport_error as e:
            raise Unreachable(self.creds.server, e) from None
        if reply.status == 404 and method == "GET":
            return None
        if reply.status == 409:
            raise Conflict(path)
        if reply.status >= 400:
            raise ApiError(reply.status, _message(reply.data, reply.reason))
        result: dict[str, Any] = json.loads(reply.data)
        return result

    def watch(self, path: str, query: dict[str, Any], timeout: float) -> Iterator[dict[str, Any]]:
        """The events of a watch until the server ends it (after `timeout` seconds, say); an
        ERROR event (such as 410 Gone: the version expired) is raised as ApiError."""
        from urllib3 import Timeout  # imported by __init__ already

        try:
            reply = self.pool.request(
                "GET",
                self._url(path, {**query, "watch": "true", "timeoutSeconds": int(timeout)}),
                headers=self._headers("application/json"),
                preload_content=False,
                timeout=Timeout(connect=10, read=timeout + 30),
            )
        except self._transport_error as e:
            raise Unreachable(self.creds.server, e) from None
        try:
            if reply.status >= 400:
                raise ApiError(reply.status, _message(reply.read(), reply.reason))
            yield from self._events(reply)
        except self._transport_error as e:  # the connection broke mid-watch
            raise Unreachable(self.creds.server, e) from None
        finally:
            reply.close()  # a watch left early: its connection is not reused
            reply.release_conn()

    @staticmethod
    def _events(reply: Any) -> Iterator[dict[str, Any]]:
        for line in reply:  # one event per line, as the server sends them
            if not line.strip():
                continue
            event: dict[str, Any] = json.loads(line)
            if event.get("type") == "ERROR":
                status = event.get("object") or {}
                raise ApiError(int(status.get("code") or 500), str(status.get("message")))
            yield event


def _message(body: bytes, reason: str | None) -> str:
    try:
        return str(json.loads(body).get("message") or reason)[:500]
    except (ValueError, AttributeError):
        return (body.decode("utf-8", "replace") or reason or "")[:500]
