"""A team's namespace as Kubeflow-style platforms have them (one namespace per team, pods with no
group label), served by an MLflowSetting that names no group, beside one group's own setting;
both point at the real MLflow server. Shared by the JupyterHub and Kubeflow tests."""

from __future__ import annotations

from typing import Any

from tests.cluster import Installed
from tests.conftest import Stores
from tests.procs import wait_until

TEAM = "team-ml"
GROUP = "Vision"  # has a setting of its own in TEAM


def team_objects(stores: Stores, namespace: str = TEAM) -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "mlflow.primehub.io/v1alpha1",
            "kind": "MLflowSetting",
            "metadata": {"name": "everyone", "namespace": namespace},
            "spec": {"trackingUri": stores.mlflow.url, "uiUrl": "https://mlflow.team-ml.example"},
        },
        {
            "apiVersion": "mlflow.primehub.io/v1alpha1",
            "kind": "MLflowSetting",
            "metadata": {"name": "vision", "namespace": namespace},
            "spec": {"group": GROUP, "trackingUri": "http://mlflow.vision:5000"},
        },
    ]


def team_namespace(installed: Installed, stores: Stores, namespace: str = TEAM) -> str:
    """The namespace, labelled for injection, with its settings, once the webhook has them."""
    installed.opted_in(namespace, team_objects(stores, namespace))
    probe = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"generateName": "probe-", "labels": {"notebook-name": "probe"}},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }
    wait_until(
        lambda: (
            "mlflow.primehub.io/injected"
            in (
                installed.create(probe, namespace, dry_run=True)
                .json()["metadata"]
                .get("annotations")
                or {}
            )
        ),
        30,
        "the team's setting at the webhook",
    )
    return namespace


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env") or []}


def model_pod(uri: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    """A model deployment's pod by our annotation (no platform's initializer)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": "model-",
            "labels": labels or {},
            "annotations": {"mlflow.primehub.io/model-uri": uri},
        },
        "spec": {"containers": [{"name": "model", "image": "model-server"}]},
    }
