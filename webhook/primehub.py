"""`mlflow-webhook import-primehub`: a PrimeHub installation's group MLflow settings, as
MLflowSettings and Secrets for `kubectl apply`.

PrimeHub keeps them behind its GraphQL API, the group field
`mlflow { trackingUri uiUrl trackingEnvs { name value } artifactEnvs { name value } }`
(pkg/graphql/graphql.go in InfuseAI/primehub-controller reads them so, with PrimeHub's GraphQL
secret as a bearer token). Values that are credentials go into one Secret per group, referred to
by `secretKeyRef`; the rest stay plain. Values are taken whole (PrimeHub itself cut them at the
first `=`). Every setting written is one the webhook's parser accepts; what cannot be imported is
said on stderr, never dropped in silence. The output is the same for the same input.
"""

from __future__ import annotations

import base64
import json
import re
import urllib.request
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from webhook import API_GROUP, API_VERSION, KIND
from webhook.settings import rules
from webhook.settings.model import OWN_NAMES, SettingError, parse_setting
from webhook.settings.rules import LOGIN_NAMES
from webhook.settings.schema import is_unicode

QUERY = (
    "query { groups { name "
    "mlflow { trackingUri uiUrl trackingEnvs { name value } artifactEnvs { name value } } } }"
)
# An MLflow App PrimeHub installed in the group (http://app-<appId>:5000): its artifacts are
# on the group volume, so its pods need that volume.
_PRIMEHUB_APP = re.compile(r"^app-[a-z0-9-]+$")


class PrimeHubError(ValueError):
    """The input is not a PrimeHub GraphQL answer we can read; the message says why."""


@dataclass
class Imported:
    objects: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # for stderr: what was skipped and why
    failed: list[str] = field(default_factory=list)  # groups with MLflow that are not imported


def fetch(url: str, token: str, timeout: float = 30) -> Any:
    """PrimeHub's groups with their MLflow settings, from its GraphQL API."""
    request = urllib.request.Request(
        url,
        data=json.dumps({"query": QUERY}).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            return json.loads(reply.read())
    except OSError as e:  # URLError and HTTPError are OSErrors; the token is never in the text
        raise PrimeHubError(f"{url}: {getattr(e, 'reason', None) or e}") from None
    except ValueError:
        raise PrimeHubError(f"{url}: the answer is not JSON") from None


def groups_of(answer: Any) -> list[dict[str, Any]]:
    """The groups of a GraphQL answer: `data.groups` (this command's query) or
    `data.user.groups` (the controller's query, as recorded from it)."""
    data = answer.get("data") if isinstance(answer, dict) else None
    if isinstance(answer, dict) and answer.get("errors") and not data:
        messages = "; ".join(str(e.get("message", e))[:200] for e in answer["errors"])
        raise PrimeHubError(f"PrimeHub answered with errors: {messages}")
    if not isinstance(data, dict):
        raise PrimeHubError("expected a GraphQL answer with `data`")
    groups = data.get("groups")
    if groups is None and isinstance(data.get("user"), dict):
        groups = data["user"].get("groups")
    if not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups):
        raise PrimeHubError("expected data.groups (or data.user.groups) to be a list of groups")
    return groups


def object_name(group: str, taken: set[str]) -> str:
    """A Kubernetes name for the group's objects: lower-case, other characters as `-`, unique."""
    base = re.sub(r"[^a-z0-9-]+", "-", group.lower()).strip("-")[:50].strip("-") or "group"
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}-{n}"
    taken.add(name)
    return name


def is_credential(name: str, value: str) -> bool:
    return (
        name in LOGIN_NAMES
        or rules.matches(rules.CREDENTIAL_NAME, name)
        or "KEY" in name.upper()
        or rules.matches(rules.URL_WITH_USERINFO, value)
    )


def _text(value: Any, where: str) -> str:
    """A GraphQL String (null as ""); anything else means the answer is not PrimeHub's."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise PrimeHubError(f"{where}: expected a string")
    if not is_unicode(value):
        raise PrimeHubError(f"{where}: not valid Unicode")
    return value


def _env_entries(mlflow: dict[str, Any], field_name: str, group: str) -> list[tuple[str, str]]:
    """The group's `trackingEnvs` or `artifactEnvs`, a list of {name, value} (null: none)."""
    items = mlflow.get(field_name)
    where = f"group {group}: mlflow.{field_name}"
    if items is None:
        return []
    if not isinstance(items, list):
        raise PrimeHubError(f"{where}: expected a list of {{name, value}}")
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise PrimeHubError(f"{where}[{i}]: expected {{name, value}}")
        # The value is not named in errors: it may be a credential.
        out.append((_text(item.get("name"), f"{where}[{i}].name"),
                    _text(item.get("value"), f"{where}[{i}].value")))  # fmt: skip
    return out


def convert(answer: Any, namespace: str) -> Imported:
    out = Imported()
    taken: set[str] = set()
    groups = [(_text(g.get("name"), "a group's name"), g) for g in groups_of(answer)]
    for name, group in sorted(groups, key=lambda g: g[0]):
        mlflow = group.get("mlflow")
        if not name:
            out.notes.append("a group without a name: skipped")
            continue
        if mlflow is not None and not isinstance(mlflow, dict):
            raise PrimeHubError(f"group {name}: mlflow: expected an object")
        if not mlflow or not _text(mlflow.get("trackingUri"), f"group {name}: trackingUri"):
            out.notes.append(f"group {name}: no MLflow settings; nothing to import")
            continue
        _convert_group(out, name, mlflow, namespace, object_name(name, taken))
    return out


def _convert_group(
    out: Imported, group: str, mlflow: dict[str, Any], namespace: str, obj_name: str
) -> None:
    secret_name = f"{obj_name}-mlflow"
    spec: dict[str, Any] = {"group": group}
    tracking_uri = _text(mlflow["trackingUri"], f"group {group}: trackingUri").strip()
    parts = urlsplit(tracking_uri)
    login: dict[str, str] = {}  # a login in the URI moves to the Secret, as MLflow's variables
    if parts.username or parts.password:
        netloc = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
        tracking_uri = urlunsplit(parts._replace(netloc=netloc))
        login = {
            k: v
            for k, v in (
                ("MLFLOW_TRACKING_USERNAME", parts.username),
                ("MLFLOW_TRACKING_PASSWORD", parts.password),
            )
            if v
        }
        out.notes.append(
            f"group {group}: the login in trackingUri now comes from Secret {secret_name}"
        )
    secret: dict[str, str] = dict(login)
    spec["trackingUri"] = tracking_uri
    ui_url = _text(mlflow.get("uiUrl"), f"group {group}: uiUrl").strip()
    if ui_url:
        spec["uiUrl"] = ui_url
    seen = set(secret)
    for field_name, key in (("trackingEnvs", "trackingEnv"), ("artifactEnvs", "artifactEnv")):
        env: list[dict[str, Any]] = []
        for var, value in _env_entries(mlflow, field_name, group):
            if not rules.matches(rules.ENV_NAME, var):
                out.notes.append(f"group {group}: {var!r} is not a valid variable name: skipped")
                continue
            if var in OWN_NAMES or var in seen:
                out.notes.append(f"group {group}: {var} is set twice: the first one is kept")
                continue
            seen.add(var)
            if is_credential(var, value):
                secret[var] = value
                ref = {"secretKeyRef": {"name": secret_name, "key": var}}
                env.append({"name": var, "valueFrom": ref})
            else:
                env.append({"name": var, "value": value})
        if env:
            spec[key] = env
    if login:
        refs = [
            {"name": var, "valueFrom": {"secretKeyRef": {"name": secret_name, "key": var}}}
            for var in login
        ]
        spec["trackingEnv"] = refs + spec.get("trackingEnv", [])
    host = urlsplit(tracking_uri).hostname or ""
    if _PRIMEHUB_APP.fullmatch(host):
        spec["artifactVolume"] = {"groupVolume": True}
    setting = {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": KIND,
        "metadata": {"name": obj_name, "namespace": namespace},
        "spec": spec,
    }
    try:
        parse_setting(setting, namespace)
    except SettingError as e:
        out.notes.append(f"group {group}: not imported: {e}")
        out.failed.append(group)
        return
    if secret:
        out.objects.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "type": "Opaque",
                "metadata": {"name": secret_name, "namespace": namespace},
                "data": {
                    k: base64.b64encode(v.encode()).decode() for k, v in sorted(secret.items())
                },
            }
        )
    out.objects.append(setting)
