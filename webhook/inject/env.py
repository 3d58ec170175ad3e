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
from webhook.settings.model import EnvFromSource, EnvVar, MLflowSetting


@dataclass(frozen=True)
class EnvGroup:
    """Variables that travel together; `credentials` are the names that form one login, and
    `servers` the names that say where that login is sent."""

    env: tuple[EnvVar, ...]
    env_from: tuple[EnvFromSource, ...]
    credentials: frozenset[str] = frozenset()
    servers: frozenset[str] = frozenset()


TRACKING_SERVERS = frozenset({"MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"})
ARTIFACT_SERVERS = frozenset({"MLFLOW_S3_ENDPOINT_URL"})


def server_env(setting: MLflowSetting) -> tuple[EnvVar, ...]:
    env: list[EnvVar] = [{"name": "MLFLOW_TRACKING_URI", "value": setting.tracking_uri}]
    if setting.ui_url:
        env.append({"name": "MLFLOW_UI_URL", "value": setting.ui_url})
    return tuple(env)


def container_env_plan(setting: MLflowSetting, config: Config) -> tuple[EnvGroup, ...]:
    """The setting's variables in the order they are added: server, tracking, artifact."""
    return (
        EnvGroup(server_env(setting), ()),
        EnvGroup(
            setting.tracking_env,
            setting.tracking_env_from,
            config.tracking_credentials,
            TRACKING_SERVERS,
        ),
        EnvGroup(
            setting.artifact_env,
            setting.artifact_env_from,
            config.artifact_credentials,
            ARTIFACT_SERVERS,
        ),
    )


def inject_container_env(container: dict[str, Any], plan: tuple[EnvGroup, ...]) -> None:
    env: list[EnvVar] = container.get("env") or []
    env_from: list[EnvFromSource] = container.get("envFrom") or []
    added_env: list[EnvVar] = []
    added_from: list[EnvFromSource] = []
    present = {item["name"] for item in env}
    for group in plan:
        # The container's own login, or its own server: then the group's login stays out.
        own = bool(present & group.credentials) or bool(present & group.servers)
        for item in group.env:
            if item["name"] in present or (own and item["name"] in group.credentials):
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
