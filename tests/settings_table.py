"""One table of settings, each accepted or refused (with the field named), that the webhook's
parser (test_settings.py) and the real API server with the CRD (test_cluster.py) must both judge
exactly so. SECRET stands for a credential: no message may ever show it."""

from __future__ import annotations

import copy
from typing import Any

SECRET = "s3cr3t-Value"
GOOD: dict[str, Any] = {
    "apiVersion": "mlflow.primehub.io/v1alpha1",
    "kind": "MLflowSetting",
    "metadata": {"name": "table", "namespace": "hub"},
    "spec": {"group": "Research_Team", "trackingUri": "https://mlflow.example.com"},
}
REF = {"secretKeyRef": {"name": "login", "key": "k"}}

# (spec changes, None when accepted, else the field the refusal names)
TABLE: list[tuple[dict[str, Any], str | None]] = [
    ({}, None),
    ({"group": "Data Science"}, None),
    ({"group": " "}, "spec.group"),
    ({"trackingUri": "http://app-mlflow-xyz12:5000"}, None),
    ({"trackingUri": "databricks"}, None),
    ({"trackingUri": "databricks://my-profile"}, None),
    ({"trackingUri": "databricks-uc://x"}, "spec.trackingUri"),
    ({"trackingUri": f"https://user:{SECRET}@mlflow.example.com"}, "spec.trackingUri"),
    ({"trackingUri": f"ftp://user:{SECRET}@host"}, "spec.trackingUri"),
    ({"trackingUri": "mlflow:5000"}, "spec.trackingUri"),
    ({"trackingUri": "https://"}, "spec.trackingUri"),
    ({"uiUrl": "https://ui.example.com/console/apps/mlflow"}, None),
    ({"uiUrl": f"https://a:{SECRET}@ui.example.com"}, "spec.uiUrl"),
    ({"trackingEnv": [{"name": "MLFLOW_TRACKING_PASSWD", "value": SECRET}]}, "spec.trackingEnv[0]"),
    (
        {"trackingEnv": [{"name": "MLFLOW_TRACKING_USERNAME", "value": SECRET}]},
        "spec.trackingEnv[0]",
    ),
    ({"trackingEnv": [{"name": "MLFLOW_TRACKING_USERNAME", "valueFrom": REF}]}, None),
    ({"artifactEnv": [{"name": "AWS_ACCESS_KEY_ID", "value": SECRET}]}, "spec.artifactEnv[0]"),
    (
        {"artifactEnv": [{"name": "AZURE_STORAGE_ACCESS_KEY", "value": SECRET}]},
        "spec.artifactEnv[0]",
    ),
    ({"artifactEnv": [{"name": "MY_API_KEY", "value": SECRET}]}, "spec.artifactEnv[0]"),
    (
        {"artifactEnv": [{"name": "MLFLOW_S3_ENDPOINT_URL", "value": f"https://k:{SECRET}@minio"}]},
        "spec.artifactEnv[0]",
    ),
    ({"artifactEnv": [{"name": "MLFLOW_S3_ENDPOINT_URL", "value": "https://minio:9000"}]}, None),
    ({"artifactEnv": [{"name": "AWS_DEFAULT_REGION", "value": "us-east-1"}]}, None),
    ({"trackingEnv": [{"name": "MLFLOW_TRACKING_INSECURE_TLS", "value": "true"}]}, None),
    # Resources a pod's container may not name (FUZZ_SEED=23 drew "trackingUri": both judges took
    # it, and every model pod of the group was refused).
    ({"modelInit": {"resources": {"limits": {"trackingUri": "1"}}}}, "spec.modelInit.resources"),
    (
        {"modelInit": {"resources": {"requests": {"nvidia.com/gpu": "1"}}}},
        "spec.modelInit.resources",
    ),
    ({"modelInit": {"resources": {"limits": {"ephemeral-storage": "20Gi"}}}}, None),
    # A final newline: the API server's `$` is the end of the text, Python's also before a final
    # newline (once accepted from a file, and the pods got an env var the API server refused).
    ({"trackingEnv": [{"name": "MLFLOW_X\n", "value": "1"}]}, "spec.trackingEnv[0].name"),
    ({"trackingUri": "https://mlflow.example.com\n"}, "spec.trackingUri"),
    ({"modelInit": {"volume": {"size": "20Gi\n"}}}, "spec.modelInit.volume.size"),
    ({"trackingEnv": [{"name": "X", "value": "1", "valueFrom": REF}]}, "spec.trackingEnv[0]"),
    ({"trackingEnv": [{"name": "X"}]}, "spec.trackingEnv[0]"),
    ({"trackingEnv": [{"name": "MLFLOW_TRACKING_URI", "value": "x"}]}, "spec.trackingEnv[0]"),
    (
        {
            "trackingEnv": [{"name": "X", "value": "1"}],
            "artifactEnv": [{"name": "X", "value": "2"}],
        },
        "spec",
    ),
    ({"trackingEnvFrom": [{"secretRef": {"name": "mlflow-login"}}]}, None),
    (
        {"trackingEnvFrom": [{"secretRef": {"name": "s"}, "configMapRef": {"name": "c"}}]},
        "spec.trackingEnvFrom[0]",
    ),
    ({"artifactVolume": {"groupVolume": True}}, None),
    ({"artifactVolume": {"groupVolume": True, "claimName": "x"}}, "spec.artifactVolume"),
    ({"artifactVolume": {"claimName": "project-a"}}, "spec.artifactVolume"),
    ({"artifactVolume": {"claimName": "project-a", "mountPath": "/project/a"}}, None),
    ({"artifactVolume": {"claimName": "project-a", "mountPath": "rel"}}, "spec.artifactVolume"),
    ({"modelInit": {"volume": {"size": "20Gi", "storageClassName": "fast"}}}, None),
    ({"modelInit": {"volume": {"size": "big"}}}, "spec.modelInit.volume.size"),
    ({"modelInit": {"imagePullSecrets": [{"name": "creds"}]}}, None),
    (
        {"modelInit": {"imagePullSecrets": [{"name": "Bad_Name"}]}},
        "spec.modelInit.imagePullSecrets",
    ),
    ({"modelInit": {"env": [{"name": "HTTPS_PROXY", "value": "http://proxy:3128"}]}}, None),
    (
        {"modelInit": {"env": [{"name": "PROXY_PASSWORD", "value": SECRET}]}},
        "spec.modelInit.env[0]",
    ),
    ({"tackingUri": "typo"}, "spec"),
    # One MLflow shared by teams: workspaces (MLflow's own name rule) and Kubernetes identities.
    ({"workspace": "team-a"}, None),
    ({"workspace": "default"}, None),
    ({"workspace": "a" * 63}, None),
    ({"workspace": "a" * 64}, "spec.workspace"),
    ({"workspace": "a"}, "spec.workspace"),
    ({"workspace": "Team-A"}, "spec.workspace"),
    ({"workspace": "team_a"}, "spec.workspace"),
    ({"workspace": "-team"}, "spec.workspace"),
    ({"workspace": "team-"}, "spec.workspace"),
    ({"workspace": "team-a\n"}, "spec.workspace"),
    ({"workspace": "ajax-api"}, "spec.workspace"),
    ({"workspace": "workspaces"}, "spec.workspace"),
    ({"workspace": "static-files"}, "spec.workspace"),
    ({"workspace": "apis"}, None),
    ({"trackingAuth": "kubernetes"}, None),
    ({"trackingAuth": "kubernetes-namespaced", "workspace": "team-a"}, None),
    ({"trackingAuth": "Kubernetes"}, "spec.trackingAuth"),
    ({"trackingAuth": "basic"}, "spec.trackingAuth"),
    ({"trackingAuth": "kubernetes", "trackingUri": "databricks"}, "spec"),
    (
        {
            "trackingAuth": "kubernetes",
            "trackingEnv": [{"name": "MLFLOW_TRACKING_TOKEN", "valueFrom": REF}],
        },
        "spec",
    ),
    (
        {
            "trackingAuth": "kubernetes",
            "trackingEnv": [{"name": "MLFLOW_TRACKING_AUTH", "value": "kubernetes"}],
        },
        "spec",
    ),
    ({"trackingEnv": [{"name": "MLFLOW_TRACKING_AUTH", "value": "my-plugin"}]}, None),
    # A Kubernetes identity only through trackingAuth (else the copier would get no token).
    (
        {"trackingEnv": [{"name": "MLFLOW_TRACKING_AUTH", "value": "kubernetes-namespaced"}]},
        "spec",
    ),
    (
        {"trackingAuth": "kubernetes", "trackingEnv": [{"name": "MLFLOW_X", "value": "1"}]},
        None,
    ),
    ({"workspace": "team-a", "artifactEnv": [{"name": "MLFLOW_WORKSPACE", "value": "b"}]}, "spec"),
    ({"trackingEnv": [{"name": "MLFLOW_WORKSPACE", "value": "team-b"}]}, None),
    # Each of these, accepted before, made every pod of the group one the API server refuses.
    (
        {
            "trackingEnv": [
                {"name": "A", "valueFrom": {"secretKeyRef": {"name": "s", "key": "a/b"}}}
            ]
        },
        "spec.trackingEnv[0].valueFrom.secretKeyRef.key",
    ),
    ({"caBundle": {"secretKeyRef": {"name": "ca", "key": ".."}}}, "spec.caBundle.secretKeyRef.key"),
    ({"caBundle": {"secretKeyRef": {"name": "ca", "key": ".ca.crt"}}}, None),
    (
        {"modelInit": {"resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1500m"}}}},
        "spec.modelInit.resources",
    ),
    (
        {"modelInit": {"resources": {"requests": {"memory": "1Gi"}, "limits": {"memory": "1e9"}}}},
        "spec.modelInit.resources",
    ),
    (
        {"modelInit": {"resources": {"requests": {"memory": "1G"}, "limits": {"memory": "1Gi"}}}},
        None,
    ),
    ({"modelInit": {"resources": {"limits": {"cpu": "1e999"}}}}, "spec.modelInit.resources"),
    ({"modelInit": {"resources": {"limits": {"memory": "512MB"}}}}, "spec.modelInit.resources"),
    ({"modelInit": {"volume": {"storageClassName": "Fast_SSD"}}}, "spec.modelInit.volume"),
    ({"modelInit": {"image": " registry/mlflow-webhook:1"}}, "spec.modelInit.image"),
    ({"caBundle": {"configMapKeyRef": {"name": "corp-ca", "key": "ca.crt"}}}, None),
    ({"caBundle": {"secretKeyRef": {"name": "corp-ca", "key": "ca.crt"}}}, None),
    (
        {
            "caBundle": {
                "configMapKeyRef": {"name": "a", "key": "k"},
                "secretKeyRef": {"name": "b", "key": "k"},
            }
        },
        "spec.caBundle",
    ),
    ({"caBundle": {"configMapKeyRef": {"name": "corp-ca"}}}, "spec.caBundle.configMapKeyRef"),
    (
        {
            "caBundle": {"configMapKeyRef": {"name": "corp-ca", "key": "ca.crt"}},
            "trackingEnv": [{"name": "MLFLOW_TRACKING_INSECURE_TLS", "value": "True"}],
        },
        "spec",
    ),
]


def setting(changes: dict[str, Any], name: str = "table") -> dict[str, Any]:
    obj = copy.deepcopy(GOOD)
    obj["metadata"]["name"] = name
    obj["spec"].update(copy.deepcopy(changes))
    return obj


def case_id(changes: dict[str, Any]) -> str:
    return str(changes)[:60] or "good"
