"""`mlflow-webhook check`: is a group's MLflow setting usable, the way its pods will use it?

Run it in a pod of the group (docs/operating.md: a pod with the label `mlflow.primehub.io/group`
gets the very env and mounts the webhook gives that group's pods), or anywhere with the same
variables.
One line per check, ok or failed and why; never a secret value; exit 1 when anything failed.
Calls to an http(s) tracking server go as the copier makes them (webhook/copier/rest.py: the
login, the workspace, a Kubernetes identity, without the `kubernetes` package the image lacks).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from webhook.brief import brief
from webhook.copier import identity, proxy, rest
from webhook.copier.client_env import quiet_client, tracking_uri_problem
from webhook.copier.errors import CopyError, Exit, classify, redact
from webhook.kube import Credentials, credentials
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


def _get(tracking_uri: str, path: str, scoped: bool = True, **params: Any) -> Any:
    """A GET to the tracking server with the login, TLS and workspace MLflow's client uses;
    not `scoped`: without the workspace (the server's own health and info, which a workspace
    that does not exist would turn into a 404)."""
    if rest.speaks(tracking_uri):
        import requests

        options = {**rest.options(), "timeout": 10}
        if not scoped:
            options["headers"].pop(identity.WORKSPACE_HEADER, None)
        return requests.get(tracking_uri.rstrip("/") + path, params=params or None, **options)
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    creds = get_default_host_creds(tracking_uri)  # type: ignore[no-untyped-call]
    return http_request(  # type: ignore[no-untyped-call]
        creds, path, "GET", max_retries=0, timeout=10, params=params or None
    )


def _login_kind() -> str:
    if identity.uses_file_token():
        return f"as {identity.service_account() or 'the pod'}, by its Kubernetes identity"
    env = os.environ
    has_login = env.get("MLFLOW_TRACKING_TOKEN") or (
        env.get("MLFLOW_TRACKING_USERNAME") and env.get("MLFLOW_TRACKING_PASSWORD")
    )
    return "with a login" if has_login else "without a login"


def _tracking_server(tracking_uri: str) -> str:
    reply = _get(tracking_uri, "/health", scoped=False)
    if reply.status_code != 200:
        raise Failed(f"{tracking_uri}/health answered HTTP {reply.status_code}")
    version = _get(tracking_uri, "/version", scoped=False)
    return f"{tracking_uri} answers" + (
        f" (MLflow {version.text.strip()[:20]})" if version.status_code == 200 else ""
    )


def _workspace(tracking_uri: str, workspace: str) -> str:
    """The workspace the pods name exists, on a server that has workspaces (it says so without
    a login; a search in a workspace that does not exist is a 404 before any login is asked)."""
    how = identity.named_by()
    info = _get(tracking_uri, "/api/3.0/mlflow/server-info", scoped=False)
    if info.status_code != 200 or not info.json().get("workspaces_enabled"):
        raise Failed(
            f"the pods name workspace {workspace!r} ({how}), and the server has no workspaces "
            "(they need MLflow >= 3.10, started with --enable-workspaces): remove workspace "
            "from the MLflowSetting, or enable them"
        )
    search = _get(tracking_uri, "/api/2.0/mlflow/registered-models/search", max_results=1)
    if search.status_code == 404:
        raise Failed(f"workspace {workspace!r} ({how}) does not exist on the server")
    return f"{workspace!r} ({how}) exists"


def _login(tracking_uri: str, kind: str) -> str:
    reply = _get(tracking_uri, "/api/2.0/mlflow/experiments/search", max_results=1)
    if reply.status_code in (401, 403) and identity.kubernetes():
        raise Failed(
            f"HTTP {reply.status_code}: the server refused the login {kind} (MLFLOW_TRACKING_AUTH)"
        )
    if reply.status_code in (401, 403):
        raise Failed(
            f"HTTP {reply.status_code}: the server refused the login "
            "(MLFLOW_TRACKING_USERNAME/PASSWORD or MLFLOW_TRACKING_TOKEN)"
        )
    if reply.status_code != 200:
        raise Failed(f"HTTP {reply.status_code} for a search of experiments")
    return f"accepted ({kind})"


def _identity(
    api_server: Callable[[], Credentials], workspace: str, token: str, account: str
) -> str:
    """Whether the ServiceAccount may read models in the workspace (identitycheck.py)."""
    from webhook.identitycheck import may_read
    from webhook.kube import ApiError, ConfigError

    try:
        verdict = may_read(api_server(), token, workspace, account)
    except (ConfigError, ApiError) as e:
        raise Failed(f"cannot ask the API server ({brief(e)}): give --kubeconfig") from None
    if verdict.missing:
        raise Failed(
            f"{account} may not {' or '.join(verdict.missing)} in {workspace!r} (API group "
            "mlflow.kubeflow.org): an admin grants it a Role there "
            "(docs/platforms/shared-mlflow.md)"
        )
    return f"{account} may read registered models and their artifacts in {workspace!r}"


def _as_service_account(caller: Credentials, named: str) -> tuple[str, str]:
    """A token of NAMESPACE/NAME from the TokenRequest API, sent as that ServiceAccount's pods
    send theirs (and, with kubernetes-namespaced, its namespace as their workspace)."""
    from webhook.identitycheck import token_for

    namespace, _, name = named.partition("/")
    if not namespace or not name:
        raise Failed(f"--service-account {named!r}: give NAMESPACE/NAME")
    token = token_for(caller, namespace, name)
    os.environ["MLFLOW_TRACKING_TOKEN"] = token
    if os.environ.get("MLFLOW_TRACKING_AUTH") == "kubernetes-namespaced":
        os.environ.setdefault("MLFLOW_WORKSPACE", namespace)
    return token, f"{namespace}/{name}"


def _registry() -> str:
    if rest.speaks(rest.registry_uri()):
        found = rest.call(rest.registry_uri(), "/registered-models/search", {"max_results": 100})
        models = found.get("registered_models") or []
    else:
        from mlflow import MlflowClient

        models = MlflowClient().search_registered_models(max_results=100)
    return f"readable ({len(models)}{'+' if len(models) == 100 else ''} registered models seen)"


def _entries(location: str) -> int:
    """How many entries the artifact folder has at its top (the proxy over our own calls)."""
    if proxy.handles(location):
        return proxy.count_entries(location)
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    return len(get_artifact_repository(location).list_artifacts())


def _artifact_store(tracking_uri: str) -> str:
    if not rest.speaks(tracking_uri):
        from mlflow import MlflowClient

        location = str(MlflowClient().get_experiment("0").artifact_location)
    elif identity.workspace() is None:
        found = rest.call(tracking_uri, "/experiments/get", {"experiment_id": "0"})
        location = str(found["experiment"]["artifact_location"])
    else:  # a workspace's experiments: the Default one (0) is the default workspace's
        found = rest.call(tracking_uri, "/experiments/search", {"max_results": 1})
        experiments = found.get("experiments") or []
        if not experiments:
            return f"no experiment in workspace {identity.workspace()!r} yet: nothing to read"
        location = str(experiments[0]["artifact_location"])
    return f"{location} readable ({_entries(location)} entries at the top)"


def _model(uri: ModelUri) -> str:
    from webhook.copier.resolve import resolve

    found = resolve(uri)
    files = _entries(found.source)
    if not files:
        raise Failed(f"{uri.describe()} resolves to {found.source}, which holds no artifacts")
    what = f"version {found.version}" if found.version else "the logged model"
    return f"{uri.describe()}: {what} at {found.source}, {files} entries"


def run(
    model: str | None, kubeconfig: Path | None = None, service_account: str | None = None
) -> int:
    """`kubeconfig`: where the API server is, for the identity check outside a pod;
    `service_account`: NAMESPACE/NAME, checked with a token of its own (TokenRequest) instead
    of the pod's."""
    quiet_client(request_timeout=15)
    api_server = cache(lambda: credentials(kubeconfig))  # read once, when first needed
    who: tuple[str, str] | None = None
    if service_account is not None:
        if not identity.kubernetes():
            why = "needs MLFLOW_TRACKING_AUTH=kubernetes or kubernetes-namespaced"
            print(Check("identity", False, f"--service-account {why}").line())
            return 1
        try:
            who = _as_service_account(api_server(), service_account)
        except Exception as e:
            print(Check("identity", False, f"no token of {service_account}: {brief(e)}").line())
            return 1
    problem = tracking_uri_problem() or identity.identity_problem()
    if problem:
        print(Check("setting", False, problem).line())
        return 1
    token = identity.token() if who is None and identity.uses_file_token() else None
    if token is not None:
        who = (token, identity.service_account() or "the pod's ServiceAccount")
    tracking_uri = os.environ["MLFLOW_TRACKING_URI"]
    try:
        parsed = parse_model_uri(model) if model else None
    except ModelUriError as e:
        print(f"failed  model             {e}")
        return 1
    subject = parsed or ModelUri("the registry", version="0")
    workspace = identity.workspace()
    checks: list[tuple[str, Callable[[], str]]] = [
        ("tracking server", lambda: _tracking_server(tracking_uri)),
    ]
    if workspace is not None:
        checks.append(("workspace", lambda: _workspace(tracking_uri, workspace)))
    kind = _login_kind()
    if service_account is not None and who is not None:
        kind = f"as {who[1]}, with a token from the TokenRequest API"
    checks.append(("login", lambda: _login(tracking_uri, kind)))
    if workspace is not None and who is not None:
        token, account = who
        checks.append(("identity", lambda: _identity(api_server, workspace, token, account)))
    checks += [("registry", _registry), ("artifact store", lambda: _artifact_store(tracking_uri))]
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
        if not result.ok and name in ("tracking server", "workspace", "login"):
            break  # what follows needs these
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(run(sys.argv[1] if len(sys.argv) > 1 else None))
