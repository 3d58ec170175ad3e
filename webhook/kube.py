"""The few Kubernetes API calls the webhook makes (list and watch MLflowSettings, PATCH their
status, a Lease, the certificate keeper's Secrets), as plain JSON over `urllib3`.

Why not the official client: importing it loads every model class of the API, about 60 MB per
process, for calls that need none of them; and objects stay plain dicts here, so fields this code
does not know survive a read-modify-write. Why not `requests`: 5 MB more per worker (its
charset detection and IDNA tables) for what urllib3, under it, does alone.

Nothing here imports `urllib3` before an Api is made (see Api.__init__).

Credentials: in a pod, the ServiceAccount's token (read again as the kubelet rotates it) and CA;
with `--kubeconfig`, its current context's server, CA and a token, a client certificate, or an
exec login plugin (client.authentication.k8s.io, as `aws eks get-token` or
`gke-gcloud-auth-plugin`) that gives a token: run when one is first needed, again when it expires
or the API server refuses it. (Plugins that give client certificates, and the older
auth-provider section, are not supported.)
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from webhook.brief import brief
from webhook.files import FileProblem, load_yaml
from webhook.scratch import private_folder, write_private

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


class LoginFailed(ApiError):
    """The kubeconfig's login plugin gave no token: status 0, the message says why."""

    def __init__(self, message: str) -> None:
        super().__init__(0, message)


EXEC_VERSIONS = ("client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1")


class ExecLogin:
    """A kubeconfig's exec login plugin, run as kubectl runs it: the kubeconfig's args and env,
    KUBERNETES_EXEC_INFO describing the call (never interactive: no terminal here), an
    ExecCredential read from its output. The token is kept until it expires (a minute early,
    so no request goes out with a token about to lapse) or the API server refuses it."""

    def __init__(
        self, command: str, args: list[str], env: dict[str, str], api_version: str, cluster: Any
    ) -> None:
        self.command, self.args, self.env = command, args, env
        self.api_version, self.cluster = api_version, cluster
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires: float | None = None

    def token(self) -> str:
        with self._lock:
            if self._token is None or (self._expires is not None and time.time() >= self._expires):
                self._token, self._expires = self._run()
            return self._token

    def forget(self) -> None:
        """The API server refused the token (401): the next call runs the plugin again."""
        with self._lock:
            self._token = None

    def _run(self) -> tuple[str, float | None]:
        spec: dict[str, Any] = {"interactive": False}
        if self.cluster is not None:
            spec["cluster"] = self.cluster
        info = {"apiVersion": self.api_version, "kind": "ExecCredential", "spec": spec}
        name = f"login plugin {self.command!r}"
        try:
            done = subprocess.run(
                [self.command, *self.args],
                env={**os.environ, **self.env, "KUBERNETES_EXEC_INFO": json.dumps(info)},
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=60,
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            raise LoginFailed(f"{name}: {brief(e)}") from None
        if done.returncode != 0:
            said = brief(done.stderr.decode("utf-8", "replace").strip() or "no message", 300)
            raise LoginFailed(f"{name} failed (exit {done.returncode}): {said}")
        try:
            credential = json.loads(done.stdout)
            status = credential["status"]
            if credential.get("apiVersion") != self.api_version:
                raise ValueError(f"apiVersion {credential.get('apiVersion')!r}")
            token, expiry = status.get("token"), status.get("expirationTimestamp")
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise LoginFailed(f"{name}: not an ExecCredential ({brief(e)})") from None
        if not isinstance(token, str) or not token:
            raise LoginFailed(f"{name} gave no token (client certificates are not supported)")
        if not expiry:
            return token, None
        try:
            when = datetime.datetime.fromisoformat(str(expiry).replace("Z", "+00:00"))
        except ValueError:
            raise LoginFailed(f"{name}: expirationTimestamp {expiry!r} is not a time") from None
        return token, when.timestamp() - 60


@dataclass(frozen=True)
class Credentials:
    server: str
    verify: str | bool  # a CA bundle file, or True (system CAs), or False (insecure)
    token: str | None = None
    token_file: Path | None = None
    cert: tuple[str, str] | None = None  # client certificate and key files
    login: ExecLogin | None = None

    def bearer(self) -> str | None:
        if self.login is not None:
            return self.login.token()
        if self.token_file is not None:
            return self.token_file.read_text().strip()  # rotated by the kubelet
        return self.token

    def refused(self) -> None:
        """The API server answered 401: a plugin's token is fetched again next time."""
        if self.login is not None:
            self.login.forget()


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


class _InlineFiles:
    """Where a kubeconfig's inline `*-data` goes (Python's ssl reads a client key, and a CA
    bundle, only from files): one private folder (webhook/scratch.py), made when the first file
    is written. The webhook reads its kubeconfig once, in the master: its workers use the same
    files, and the folder goes when the master exits."""

    def __init__(self) -> None:
        self.folder: Path | None = None

    def write(self, name: str, data: bytes) -> str:
        if self.folder is None:
            self.folder = private_folder("mlflow-webhook-kube-")
        write_private(self.folder / name, data)
        return str(self.folder / name)


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
    if "auth-provider" in user:
        raise ConfigError(f"{path}: auth-provider login is not supported (use an exec plugin)")
    inline = _InlineFiles()

    def file_of(section: dict[str, Any], key: str) -> str | None:
        """A file the kubeconfig names (relative to it), or its inline -data written to one."""
        if section.get(f"{key}-data"):
            try:
                data = base64.b64decode(section[f"{key}-data"])
            except (ValueError, TypeError):
                raise ConfigError(f"{path}: {key}-data is not base64") from None
            return inline.write(key, data)
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
        login=_exec_login(path, user.get("exec"), cluster) if "exec" in user else None,
    )


def _exec_login(path: Path, section: Any, cluster: dict[str, Any]) -> ExecLogin:
    """The kubeconfig's `exec` section, checked as client-go checks it."""
    if not isinstance(section, dict):
        raise ConfigError(f"{path}: user.exec must be a mapping")
    command, version = section.get("command"), section.get("apiVersion")
    if not isinstance(command, str) or not command:
        raise ConfigError(f"{path}: user.exec.command is required")
    if version not in EXEC_VERSIONS:
        raise ConfigError(f"{path}: user.exec.apiVersion must be one of {', '.join(EXEC_VERSIONS)}")
    if section.get("interactiveMode") == "Always":
        raise ConfigError(f"{path}: user.exec needs a terminal (interactiveMode Always)")
    args, env = section.get("args") or [], section.get("env") or []
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise ConfigError(f"{path}: user.exec.args must be a list of strings")
    if not isinstance(env, list) or not all(
        isinstance(e, dict) and isinstance(e.get("name"), str) and isinstance(e.get("value"), str)
        for e in env
    ):
        raise ConfigError(f"{path}: user.exec.env must be a list of {{name, value}}")
    if os.sep in command and not os.path.isabs(command):  # as kubectl: next to the kubeconfig
        command = str(path.parent / command)
    about = None
    if section.get("provideClusterInfo"):
        about = {
            "server": cluster.get("server"),
            "certificate-authority-data": cluster.get("certificate-authority-data"),
            "insecure-skip-tls-verify": bool(cluster.get("insecure-skip-tls-verify")),
        }
    return ExecLogin(command, args, {e["name"]: e["value"] for e in env}, version, about)


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
            raise self._failure(reply.status, reply.data, reply.reason)
        result: dict[str, Any] = json.loads(reply.data)
        return result

    def watch(
        self, path: str, query: dict[str, Any], seconds: int, silence: float
    ) -> Iterator[dict[str, Any]]:
        """The events of a watch until the server ends it (asked to after `seconds`); an ERROR
        event (such as 410 Gone: the version expired) is raised as ApiError, and so is a
        connection silent for `silence` seconds (Unreachable: a stalled watch)."""
        from urllib3 import Timeout  # imported by __init__ already

        try:
            reply = self.pool.request(
                "GET",
                self._url(path, {**query, "watch": "true", "timeoutSeconds": seconds}),
                headers=self._headers("application/json"),
                preload_content=False,
                timeout=Timeout(connect=10, read=silence),
            )
        except self._transport_error as e:
            raise Unreachable(self.creds.server, e) from None
        try:
            if reply.status >= 400:
                raise self._failure(reply.status, reply.read(), reply.reason)
            yield from self._events(reply)
        except self._transport_error as e:  # the connection broke mid-watch
            raise Unreachable(self.creds.server, e) from None
        finally:
            reply.close()  # a watch left early: its connection is not reused
            reply.release_conn()

    def _failure(self, status: int, body: bytes, reason: str | None) -> ApiError:
        """The error to raise; after a 401 a login plugin's token is fetched again."""
        if status == 401:
            self.creds.refused()
        return ApiError(status, _message(body, reason))

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
