"""`mlflow-webhook check`: is a group's MLflow setting usable, the way its pods will use it?

Run it in a pod of the group (README: a pod with the label `mlflow.primehub.io/group` gets the
very env and mounts the webhook gives that group's pods), or anywhere with the same variables.
One line per check, ok or failed and why; never a secret value; exit 1 when anything failed.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from webhook.brief import brief
from webhook.copier.client_env import quiet_client, tracking_uri_problem
from webhook.copier.errors import CopyError, Exit, classify, redact
from webhook.modeluri import ModelUri, ModelUriError, parse_model_uri


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'ok' if self.ok else 'failed':<8}{self.name:<18}{redact(self.detail)}"


class Failed(Exception):
    """A check failed; the message says why, in words."""


def _why(error: BaseException, uri: ModelUri, where: str) -> str:
    from webhook.copier.resolve import explain_missing

    verdict = classify(error, uri, where, "resolve")
    if isinstance(verdict, CopyError) and verdict.code is Exit.NOT_FOUND:
        verdict = explain_missing(uri) or verdict  # the model, or only that version?
    text = str(verdict) if isinstance(verdict, CopyError) else f"unreachable: {verdict}"
    return brief(text)


def _get(tracking_uri: str, path: str, **params: Any) -> Any:
    """A GET to the tracking server with the login and TLS settings MLflow's client uses."""
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    creds = get_default_host_creds(tracking_uri)  # type: ignore[no-untyped-call]
    reply = http_request(  # type: ignore[no-untyped-call]
        creds, path, "GET", max_retries=0, timeout=10, params=params or None
    )
    return reply, creds


def _tracking_server(tracking_uri: str) -> str:
    reply, _ = _get(tracking_uri, "/health")
    if reply.status_code != 200:
        raise Failed(f"{tracking_uri}/health answered HTTP {reply.status_code}")
    version, _ = _get(tracking_uri, "/version")
    return f"{tracking_uri} answers" + (
        f" (MLflow {version.text.strip()[:20]})" if version.status_code == 200 else ""
    )


def _login(tracking_uri: str) -> str:
    reply, creds = _get(tracking_uri, "/api/2.0/mlflow/experiments/search", max_results=1)
    if reply.status_code in (401, 403):
        raise Failed(
            f"HTTP {reply.status_code}: the server refused the login "
            "(MLFLOW_TRACKING_USERNAME/PASSWORD or MLFLOW_TRACKING_TOKEN)"
        )
    if reply.status_code != 200:
        raise Failed(f"HTTP {reply.status_code} for a search of experiments")
    how = "with a login" if creds.username or creds.token else "without a login"
    return f"accepted ({how})"


def _registry() -> str:
    from mlflow import MlflowClient

    models = MlflowClient().search_registered_models(max_results=100)
    return f"readable ({len(models)}{'+' if len(models) == 100 else ''} registered models seen)"


def _artifact_store(location: str) -> str:
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    entries = get_artifact_repository(location).list_artifacts()
    return f"{location} readable ({len(entries)} entries at the top)"


def _default_artifact_location() -> str:
    from mlflow import MlflowClient

    experiment = MlflowClient().get_experiment("0")
    return str(experiment.artifact_location)


def _model(uri: ModelUri) -> str:
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    from webhook.copier.resolve import resolve

    found = resolve(uri)
    files = get_artifact_repository(found.source).list_artifacts()
    if not files:
        raise Failed(f"{uri.describe()} resolves to {found.source}, which holds no artifacts")
    what = f"version {found.version}" if found.version else "the logged model"
    return f"{uri.describe()}: {what} at {found.source}, {len(files)} entries"


def run(model: str | None) -> int:
    quiet_client(request_timeout=15)
    problem = tracking_uri_problem()
    if problem:
        print(Check("setting", False, problem).line())
        return 1
    tracking_uri = os.environ["MLFLOW_TRACKING_URI"]
    try:
        parsed = parse_model_uri(model) if model else None
    except ModelUriError as e:
        print(f"failed  model             {e}")
        return 1
    subject = parsed or ModelUri("the registry", version="0")
    checks: list[tuple[str, Callable[[], str]]] = [
        ("tracking server", lambda: _tracking_server(tracking_uri)),
        ("login", lambda: _login(tracking_uri)),
        ("registry", _registry),
        ("artifact store", lambda: _artifact_store(_default_artifact_location())),
    ]
    if parsed is not None:
        checks.append(("model", lambda: _model(parsed)))
    failed = False
    for name, check in checks:
        try:
            result = Check(name, True, check())
        except Failed as e:
            result = Check(name, False, str(e))
        except Exception as e:
            result = Check(name, False, _why(e, subject, redact(tracking_uri)))
        failed = failed or not result.ok
        print(result.line(), flush=True)
        if not result.ok and name in ("tracking server", "login"):
            break  # what follows needs these
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(run(sys.argv[1] if len(sys.argv) > 1 else None))
