"""From the webhook's answer to a model on disk: the init container the webhook adds to a model
deployment, run exactly as configured (env from the example Secrets, mounts mapped to folders),
copies the registered version into the folder the model container reads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import Stores
from tests.podrun import mounts, run_container
from tests.registry import tree
from webhook.config import Config
from webhook.inject.model_init import INIT_CONTAINER
from webhook.mutation import decide
from webhook.settings.index import SettingsIndex
from webhook.settings.sources import load_file


def manifests(stores: Stores) -> list[dict[str, Any]]:
    """The group's setting, and the Secret and ConfigMap it refers to, as an admin writes them."""
    group_root = stores.group_volume.parents[2]  # .../project/phusers
    return yaml.safe_load_all(f"""
apiVersion: mlflow.primehub.io/v1alpha1
kind: MLflowSetting
metadata: {{name: phusers, namespace: hub}}
spec:
  group: phusers
  trackingUri: {stores.mlflow.url}
  artifactEnv:
    - name: MLFLOW_S3_ENDPOINT_URL
      valueFrom: {{configMapKeyRef: {{name: phusers-s3, key: endpoint}}}}
    - name: AWS_ACCESS_KEY_ID
      valueFrom: {{secretKeyRef: {{name: phusers-s3-keys, key: access-key}}}}
    - name: AWS_SECRET_ACCESS_KEY
      valueFrom: {{secretKeyRef: {{name: phusers-s3-keys, key: secret-key}}}}
  artifactEnvFrom:
    - secretRef: {{name: phusers-s3-region}}
  artifactVolume: {{claimName: project-phusers, mountPath: {group_root}}}
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: phusers-s3, namespace: hub}}
data: {{endpoint: "{stores.s3.url}"}}
---
apiVersion: v1
kind: Secret
metadata: {{name: phusers-s3-keys, namespace: hub}}
stringData:
  access-key: {stores.s3.env["AWS_ACCESS_KEY_ID"]}
  secret-key: {stores.s3.env["AWS_SECRET_ACCESS_KEY"]}
---
apiVersion: v1
kind: Secret
metadata: {{name: phusers-s3-region, namespace: hub}}
data: {{AWS_DEFAULT_REGION: dXMtZWFzdC0x}}
""")


@pytest.mark.parametrize(
    ("uri", "name", "version"),
    [
        ("models:/fraud/1", "fraud", "1"),  # S3
        ("models:/iris/1", "iris", "1"),  # the group volume
        ("models:/churn%20model@champion", "churn model", "1"),
    ],  # served by the tracking server
)
def test_the_injected_init_container_fills_the_model_folder(
    stores: Stores, tmp_path: Path, uri: str, name: str, version: str
) -> None:
    objects = list(manifests(stores))
    settings_file = tmp_path / "settings.yaml"
    settings_file.write_text(yaml.safe_dump_all(objects))
    index = SettingsIndex()
    load_file(settings_file, index)
    pod = yaml.safe_load(f"""
apiVersion: v1
kind: Pod
metadata:
  name: deploy-x
  labels: {{app: primehub-deployment, primehub.io/group: escaped-phusers}}
  annotations: {{mlflow.primehub.io/model-uri: "{uri}"}}
spec:
  containers: [{{name: model, image: model-server}}]
""")
    decision = decide(pod, "hub", index, Config())
    assert decision.allowed and decision.pod is not None
    mutated = decision.pod
    # The init container holds references only: no credential value is in the pod.
    assert stores.s3.env["AWS_SECRET_ACCESS_KEY"] not in yaml.safe_dump(mutated)

    model_dir = tmp_path / "emptydir"
    model_dir.mkdir()
    folders = {"mlflow-model": model_dir, "mlflow-group-volume": stores.group_volume.parents[2]}
    result = run_container(mutated, INIT_CONTAINER, objects, folders, tmp_path / "termination")
    assert result.returncode == 0, result.stderr

    model = next(c for c in mutated["spec"]["containers"] if c["name"] == "model")
    served = mounts(mutated, model, folders)["/mnt/models"]
    assert tree(served) == stores.models.versions[name][version]
