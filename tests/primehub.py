"""Pods as PrimeHub's controller makes them, for the tests: a PhDeployment's pod template as
`buildDeployment`, `buildModelContainer` and `buildEngineContainer` build it
(ee/controllers/phdeployment_controller.go in InfuseAI/primehub-controller), trimmed of nothing
the webhook reads. The golden cases primehub-deployment-*.yaml hold pods made by this function."""

from __future__ import annotations

import json
from typing import Any

MLFLOW_INITIALIZER = "infuseai/mlflow-model-storage-initializer:v0.1.0"
OTHER_INITIALIZER = "gcr.io/kfserving/storage-initializer:v0.4.0"
# The controller's workaround for other URIs (GKE metadata server), on their initializer only.
GCE = [
    {"name": "GCE_METADATA_IP", "value": "127.0.0.1"},
    {"name": "GCE_METADATA_HOST", "value": "127.0.0.1"},
]


def group_dir(group: str) -> str:
    """`project-<g>` and `/project/<g>` use this: lower-cased, `_` as `-`."""
    return group.lower().replace("_", "-")


def escaped(group: str) -> str:
    from webhook.groups import escape_group

    return escape_group(group)


def deployment_pod(
    group: str, model_uri: str, mlflow_env: list[dict[str, str]], name: str = "iris"
) -> dict[str, Any]:
    """The pod of PhDeployment `name` for `model_uri`; `mlflow_env` is what the controller's
    BuildMlflowEnvironmentVariables gives for a models:/ URI (plain values)."""
    g = group_dir(group)
    init_mounts: list[dict[str, Any]] = [{"name": "model-storage", "mountPath": "/mnt/models"}]
    model_mounts: list[dict[str, Any]] = [
        {"name": "podinfo", "mountPath": "/etc/podinfo"},
        {"name": "model-storage", "mountPath": "/mnt/models"},
    ]
    volumes: list[dict[str, Any]] = [
        {
            "name": "podinfo",
            "downwardAPI": {
                "items": [
                    {
                        "path": "annotations",
                        "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.annotations"},
                    }
                ],
                "defaultMode": 420,
            },
        }
    ]
    uri, env, image = model_uri, GCE, OTHER_INITIALIZER
    if model_uri.startswith("phfs://"):
        uri = model_uri.replace("phfs://", "file:///phfs")
        phfs = {"name": "phfs", "mountPath": "/phfs", "subPath": f"groups/{g}", "readOnly": True}
        init_mounts.append(phfs)
        model_mounts.append(phfs)
        volumes.append({"name": "phfs", "persistentVolumeClaim": {"claimName": "primehub-store"}})
    if model_uri.startswith("nfs://"):
        uri = "file:///nfs/" + model_uri.split("/", 3)[3]
        nfs = {"name": "nfs", "mountPath": "/nfs", "readOnly": True}
        init_mounts.append(nfs)
        model_mounts.append(nfs)
        volumes.append(
            {"name": "nfs", "nfs": {"path": "/", "readOnly": True, "server": "10.0.0.5"}}
        )
    mlflow = uri.startswith("models:/")
    if mlflow:
        init_mounts.append({"name": f"project-{g}", "mountPath": f"/project/{g}"})
        volumes.append(
            {"name": f"project-{g}", "persistentVolumeClaim": {"claimName": f"project-{g}"}}
        )
        env, image = mlflow_env, MLFLOW_INITIALIZER
    volumes.append({"name": "model-storage", "emptyDir": {}})
    usage = {
        "instance_type": "cpu-1",
        "component": "deployment",
        "component_name": name,
        "group": group,
        "user": "phadmin",
    }
    initializer: dict[str, Any] = {
        "name": "model-storage-initializer",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "args": [uri] if mlflow else [uri, "/mnt/models"],
        "volumeMounts": init_mounts,
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if env:
        initializer["env"] = env
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": f"deploy-{name}-5c7b9d6f8-",
            "labels": {
                "app": "primehub-deployment",
                "primehub.io/phdeployment": name,
                "primehub.io/group": escaped(group),
                "pod-template-hash": "5c7b9d6f8",
            },
            "annotations": {
                "prometheus.io/path": "prometheus",
                "prometheus.io/port": "8000",
                "prometheus.io/scrape": "true",
                "primehub.io/usage": json.dumps(usage),
            },
        },
        "spec": {
            "restartPolicy": "Always",
            "dnsPolicy": "ClusterFirst",
            "schedulerName": "default-scheduler",
            "initContainers": [initializer],
            "containers": [
                {
                    "name": "model",
                    "image": "infuseai/sklearn-prepackaged:v0.1.0",
                    "env": [
                        {"name": "PREDICTIVE_UNIT_SERVICE_PORT", "value": "9000"},
                        {"name": "PREDICTIVE_UNIT_ID", "value": "model"},
                        {
                            "name": "PREDICTIVE_UNIT_IMAGE",
                            "value": "infuseai/sklearn-prepackaged:v0.1.0",
                        },
                        {"name": "PREDICTOR_ID", "value": "deploy"},
                        {"name": "SELDON_DEPLOYMENT_ID", "value": f"deploy-{name}"},
                        {
                            "name": "PREDICTIVE_UNIT_PARAMETERS",
                            "value": '[{"name":"model_uri","value":"/mnt/models","type":"STRING"}]',
                        },
                    ],
                    "volumeMounts": model_mounts,
                    "ports": [{"containerPort": 9000, "name": "http", "protocol": "TCP"}],
                    "lifecycle": {
                        "preStop": {"exec": {"command": ["/bin/sh", "-c", "/bin/sleep 10"]}}
                    },
                    "terminationMessagePolicy": "FallbackToLogsOnError",
                    "resources": {
                        "limits": {"cpu": "1", "memory": "1Gi"},
                        "requests": {"cpu": "1", "memory": "1Gi"},
                    },
                },
                {
                    "name": "seldon-container-engine",
                    "image": "seldonio/seldon-core-executor:1.4.0",
                    "imagePullPolicy": "IfNotPresent",
                    "args": [
                        "--sdep",
                        name,
                        "--namespace",
                        "hub",
                        "--predictor",
                        "deploy",
                        "--http_port",
                        "8000",
                        "--grpc_port",
                        "5001",
                        "--transport",
                        "rest",
                        "--protocol",
                        "seldon",
                        "--prometheus_path",
                        "/prometheus",
                    ],
                    "env": [
                        {"name": "DEPLOYMENT_NAME", "value": f"deploy-{name}"},
                        {"name": "DEPLOYMENT_NAMESPACE", "value": "hub"},
                        {"name": "ENGINE_SERVER_PORT", "value": "8000"},
                        {"name": "ENGINE_SERVER_GRPC_PORT", "value": "5001"},
                    ],
                    "volumeMounts": [{"name": "podinfo", "mountPath": "/etc/podinfo"}],
                    "securityContext": {"runAsUser": 8888},
                    "resources": {"requests": {"cpu": "100m"}},
                },
            ],
            "volumes": volumes,
        },
    }
