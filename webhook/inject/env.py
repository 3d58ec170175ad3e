"""MLflow environment for regular containers: never override, and credentials all or nothing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from webhook.config import Config
from webhook.settings.model import EnvFromSource, EnvVar, MLflowSetting


@dataclass(frozen=True)
class EnvGroup:
    """Variables that travel together; `credentials` are the names that form one login."""

    env: tuple[EnvVar, ...]
    env_from: tuple[EnvFromSource, ...]
    credentials: frozenset[str]


def server_env(setting: MLflowSetting) -> tuple[EnvVar, ...]:
    env: list[EnvVar] = [{"name": "MLFLOW_TRACKING_URI", "value": setting.tracking_uri}]
    if setting.ui_url:
        env.append({"name": "MLFLOW_UI_URL", "value": setting.ui_url})
    return tuple(env)


def container_env_plan(setting: MLflowSetting, config: Config) -> tuple[EnvGroup, ...]:
    """The setting's variables in the order they are added: server, tracking, artifact."""
    return (
        EnvGroup(server_env(setting), (), frozenset()),
        EnvGroup(setting.tracking_env, setting.tracking_env_from, config.tracking_credentials),
        EnvGroup(setting.artifact_env, setting.artifact_env_from, config.artifact_credentials),
    )


def inject_container_env(container: dict[str, Any], plan: tuple[EnvGroup, ...]) -> None:
    env: list[EnvVar] = container.get("env") or []
    env_from: list[EnvFromSource] = container.get("envFrom") or []
    added_env: list[EnvVar] = []
    added_from: list[EnvFromSource] = []
    present = {item.get("name") for item in env}
    for group in plan:
        # A container that brings its own login keeps it whole: no half-replaced credentials.
        own_login = bool(present & group.credentials)
        for item in group.env:
            if item["name"] in present or (own_login and item["name"] in group.credentials):
                continue
            added_env.append(dict(item))
        for source in group.env_from:
            if (own_login and "secretRef" in source) or source in env_from:
                continue
            added_from.append(dict(source))
    if added_env:
        container["env"] = env + added_env
    if added_from:
        container["envFrom"] = env_from + added_from
