"""MLflow environment for containers.

- Never override: a variable the container sets is kept, and ours comes *first* in `env` (so a
  user's `$(MLFLOW_TRACKING_URI)` expands: Kubernetes expands only names defined earlier) and in
  `envFrom` (where the last source wins, so the container's own sources win over the group's).
- Credentials all or nothing: a container that sets any name of a login gets none of ours.
- Credentials go only to the server they are for: a container that names its own tracking server
  (or S3 endpoint) gets none of the group's tracking (or artifact) credentials.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from webhook.config import Config
from webhook.inject.ca import CA_FILE
from webhook.settings import rules
from webhook.settings.model import EnvFromSource, EnvVar, MLflowSetting


@dataclass(frozen=True, slots=True)
class EnvGroup:
    """Variables that travel together; `credentials` are the names that form one login,
    `servers` the names that say where that login is sent, and `bound` names that only make
    sense with the group's server (its CA)."""

    env: tuple[EnvVar, ...]
    env_from: tuple[EnvFromSource, ...]
    credentials: frozenset[str] = frozenset()
    servers: frozenset[str] = frozenset()
    bound: frozenset[str] = frozenset()


TRACKING_SERVERS = frozenset({"MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"})
ARTIFACT_SERVERS = frozenset({"MLFLOW_S3_ENDPOINT_URL"})
TRACKING_CA, ARTIFACT_CA = "MLFLOW_TRACKING_SERVER_CERT_PATH", "AWS_CA_BUNDLE"
WORKSPACE = "MLFLOW_WORKSPACE"
# The workspace is the group's server's; a container that names its own server keeps it out.
_TRACKING_BOUND, _ARTIFACT_BOUND = frozenset({TRACKING_CA, WORKSPACE}), frozenset({ARTIFACT_CA})


def server_env(setting: MLflowSetting) -> tuple[EnvVar, ...]:
    env: list[EnvVar] = [{"name": "MLFLOW_TRACKING_URI", "value": setting.tracking_uri}]
    if setting.ui_url:
        env.append({"name": "MLFLOW_UI_URL", "value": setting.ui_url})
    return tuple(env)


def container_env_plan(setting: MLflowSetting, config: Config) -> tuple[EnvGroup, ...]:
    """The setting's variables in the order they are added: server, tracking, artifact.
    MLFLOW_TRACKING_AUTH is part of the tracking login: it says how the pod logs in, so a
    container with a login of its own (a token, or its own MLFLOW_TRACKING_AUTH) gets none of
    the group's."""
    tracking_ca: tuple[EnvVar, ...] = ()
    artifact_ca: tuple[EnvVar, ...] = ()
    if setting.ca_bundle is not None:
        tracking_ca = ({"name": TRACKING_CA, "value": CA_FILE},)
        artifact_ca = ({"name": ARTIFACT_CA, "value": CA_FILE},)
    shared: list[EnvVar] = []
    if setting.workspace is not None:
        shared.append({"name": WORKSPACE, "value": setting.workspace})
    if setting.tracking_auth is not None:
        shared.append({"name": rules.TRACKING_AUTH, "value": setting.tracking_auth})
    return (
        EnvGroup(server_env(setting), ()),
        EnvGroup(
            (*setting.tracking_env, *shared, *tracking_ca),
            setting.tracking_env_from,
            config.tracking_credentials | {rules.TRACKING_AUTH},
            TRACKING_SERVERS,
            _TRACKING_BOUND,
        ),
        EnvGroup(
            setting.artifact_env + artifact_ca,
            setting.artifact_env_from,
            config.artifact_credentials,
            ARTIFACT_SERVERS,
            _ARTIFACT_BOUND,
        ),
    )


def inject_container_env(container: dict[str, Any], plan: tuple[EnvGroup, ...]) -> None:
    env: list[EnvVar] = container.get("env") or []
    env_from: list[EnvFromSource] = container.get("envFrom") or []
    added_env: list[EnvVar] = []
    added_from: list[EnvFromSource] = []
    present = {item["name"] for item in env}
    for group in plan:
        # The container's own login, or its own server: then the group's login stays out, and
        # with its own server, what belongs to the group's server (its CA) too.
        own_server = bool(present & group.servers)
        own = own_server or bool(present & group.credentials)
        for item in group.env:
            name = item["name"]
            if (
                name in present
                or (own and name in group.credentials)
                or (own_server and name in group.bound)
            ):
                continue
            added_env.append(dict(item))
        for source in group.env_from:
            if (own and "secretRef" in source) or source in env_from:
                continue
            added_from.append(dict(source))
    if added_env:
        container["env"] = added_env + env
    if added_from:
        container["envFrom"] = added_from + env_from
