"""From the webhook's answer to a model on disk: the init container the webhook adds to a model
deployment, run exactly as configured (env from the example Secrets, mounts mapped to folders),
copies the registered version into the folder the model container reads."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cluster import Installed
from tests.conftest import Stores
from tests.podrun import mounts, project, run_container
from tests.primehub import deployment_pod
from tests.procs import wait_until
from tests.registry import tree
from tests.servers import tls_in_front
from webhook.config import Config
from webhook.inject.model_init import INIT_CONTAINER
from webhook.mutation import decide
from webhook.settings.index import SettingsIndex
from webhook.settings.sources import load_file
from webhook.tls import make_ca, make_serving_cert


def manifests(stores: Stores, namespace: str = "hub") -> list[dict[str, Any]]:
    """The group's setting, and the Secret and ConfigMap it refers to, as an admin writes them."""
    group_root = stores.group_volume.parents[2]  # .../project/phusers
    return list(
        yaml.safe_load_all(f"""
apiVersion: mlflow.primehub.io/v1alpha1
kind: MLflowSetting
metadata: {{name: phusers, namespace: {namespace}}}
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
metadata: {{name: phusers-s3, namespace: {namespace}}}
data: {{endpoint: "{stores.s3.url}"}}
---
apiVersion: v1
kind: Secret
metadata: {{name: phusers-s3-keys, namespace: {namespace}}}
stringData:
  access-key: {stores.s3.env["AWS_ACCESS_KEY_ID"]}
  secret-key: {stores.s3.env["AWS_SECRET_ACCESS_KEY"]}
---
apiVersion: v1
kind: Secret
metadata: {{name: phusers-s3-region, namespace: {namespace}}}
data: {{AWS_DEFAULT_REGION: dXMtZWFzdC0x}}
""")
    )


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
    objects = manifests(stores)
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
    run_and_check(decision.pod, objects, stores, tmp_path, name, version)


def run_and_check(
    mutated: dict[str, Any],
    objects: list[dict[str, Any]],
    stores: Stores,
    tmp_path: Path,
    name: str,
    version: str,
    volumes: tuple[str, str] = ("mlflow-model", "mlflow-group-volume"),
) -> None:
    """Runs the pod's init container, then checks what its model container would read.
    `volumes`: the names of the model volume and of the group volume in the pod."""
    # The init container holds references only: no credential value is in the pod.
    assert stores.s3.env["AWS_SECRET_ACCESS_KEY"] not in yaml.safe_dump(mutated)
    model_dir = tmp_path / "emptydir"
    model_dir.mkdir()
    folders = {volumes[0]: model_dir, volumes[1]: stores.group_volume.parents[2]}
    result = run_container(mutated, INIT_CONTAINER, objects, folders, tmp_path / "termination")
    assert result.returncode == 0, result.stderr

    model = next(c for c in mutated["spec"]["containers"] if c["name"] == "model")
    served = mounts(mutated, model, folders)["/mnt/models"]
    assert tree(served) == stores.models.versions[name][version]


@pytest.mark.cluster
def test_the_pod_stored_by_the_api_server_gets_its_model(
    installed: Installed, stores: Stores, tmp_path: Path
) -> None:
    objects = manifests(stores, "e2e")
    installed.opted_in("e2e", objects)
    pod = yaml.safe_load("""
apiVersion: v1
kind: Pod
metadata:
  generateName: deploy-fraud-
  labels: {app: primehub-deployment, primehub.io/group: escaped-phusers}
  annotations: {mlflow.primehub.io/model-uri: "models:/fraud/1"}
spec:
  containers: [{name: model, image: model-server}]
""")
    # The webhook sees the new setting through its watch; then the pod is created for real.
    wait_until(
        lambda: (
            installed.create(pod, "e2e", dry_run=True)
            .json()["metadata"]
            .get("annotations", {})
            .get("mlflow.primehub.io/injected")
            == "e2e/phusers"
        ),
        10,
        "setting",
    )
    stored = installed.created(pod, "e2e")
    run_and_check(stored, objects, stores, tmp_path, "fraud", "1")


@pytest.mark.cluster
def test_a_primehub_deployment_pod_gets_its_model_and_keeps_no_credential_value(
    installed: Installed, stores: Stores, tmp_path: Path
) -> None:
    """A pod exactly as PrimeHub's controller builds it for `models:/fraud/1`, whose initializer
    carries the group's MLflow settings as plain values (the S3 keys among them), created
    through the API server: our copier replaces the initializer, the stored pod holds no
    credential value, and the model lands in PrimeHub's own `model-storage`."""
    namespace = "e2e-primehub"
    objects = manifests(stores, namespace)
    installed.opted_in(namespace, objects)
    plain = [
        {"name": "MLFLOW_TRACKING_URI", "value": stores.mlflow.url},
        {"name": "MLFLOW_UI_URL", "value": stores.mlflow.url},
        {"name": "MLFLOW_S3_ENDPOINT_URL", "value": stores.s3.url},
        {"name": "AWS_ACCESS_KEY_ID", "value": stores.s3.env["AWS_ACCESS_KEY_ID"]},
        {"name": "AWS_SECRET_ACCESS_KEY", "value": stores.s3.env["AWS_SECRET_ACCESS_KEY"]},
    ]
    pod = deployment_pod("phusers", "models:/fraud/1", plain, name="fraud")

    def taken_over() -> bool:
        reply = installed.create(pod, namespace, dry_run=True).json()
        inits = reply.get("spec", {}).get("initContainers", [])
        return [c["name"] for c in inits] == [INIT_CONTAINER]

    wait_until(taken_over, 10, "the setting to reach the webhook")
    stored = installed.created(pod, namespace)
    assert stored["metadata"]["annotations"]["mlflow.primehub.io/injected"] == (
        f"{namespace}/phusers"
    )
    (init,) = stored["spec"]["initContainers"]
    assert {"name": "model-storage", "mountPath": "/mnt/models"} in init["volumeMounts"]
    assert [v["name"] for v in stored["spec"]["volumes"]] == [
        "podinfo",
        "project-phusers",
        "model-storage",
    ]
    run_and_check(
        stored, objects, stores, tmp_path, "fraud", "1", ("model-storage", "project-phusers")
    )


def test_a_private_ca_reaches_the_init_container_and_is_trusted(
    stores: Stores, tmp_path: Path
) -> None:
    """The tracking server and the S3 endpoint behind TLS with a CA made here (HAProxy in front
    of the real MLflow and S3 servers): the init container trusts them through the setting's
    caBundle (a ConfigMap, mounted), and without it says which certificate it could not trust."""
    ca = make_ca("corp-root-ca")
    pair = make_serving_cert(ca, ["127.0.0.1"])
    with tls_in_front(
        tmp_path, [stores.mlflow.url, stores.s3.url], pair.cert_pem() + pair.key_pem()
    ) as (
        tracking,
        s3,
    ):
        objects = list(
            yaml.safe_load_all(f"""
apiVersion: mlflow.primehub.io/v1alpha1
kind: MLflowSetting
metadata: {{name: corp, namespace: hub}}
spec:
  group: corp
  trackingUri: {tracking}
  artifactEnv:
    - {{name: MLFLOW_S3_ENDPOINT_URL, value: "{s3}"}}
    - name: AWS_ACCESS_KEY_ID
      valueFrom: {{secretKeyRef: {{name: corp-s3, key: id}}}}
    - name: AWS_SECRET_ACCESS_KEY
      valueFrom: {{secretKeyRef: {{name: corp-s3, key: secret}}}}
  caBundle:
    configMapKeyRef: {{name: corp-ca, key: ca.pem}}
---
apiVersion: v1
kind: Secret
metadata: {{name: corp-s3, namespace: hub}}
stringData:
  id: {stores.s3.env["AWS_ACCESS_KEY_ID"]}
  secret: {stores.s3.env["AWS_SECRET_ACCESS_KEY"]}
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: corp-ca, namespace: hub}}
data:
  ca.pem: |
{textwrap.indent(ca.cert_pem().decode(), "    ")}
""")
        )
        pod = {
            "metadata": {
                "name": "deploy-corp",
                "labels": {"app": "primehub-deployment", "primehub.io/group": "escaped-corp"},
                "annotations": {"mlflow.primehub.io/model-uri": "models:/fraud/1"},
            },
            "spec": {"containers": [{"name": "model", "image": "m"}]},
        }

        def run(settings: list[dict[str, Any]], where: Path) -> tuple[Any, Path, Path]:
            (where / "settings.yaml").write_text(yaml.safe_dump_all(settings))
            index = SettingsIndex()
            load_file(where / "settings.yaml", index)
            mutated = decide(pod, "hub", index, Config()).pod
            assert mutated is not None
            folders = {**project(mutated, objects, where / "volumes"), "mlflow-model": where / "m"}
            (where / "m").mkdir()
            term = where / "termination"
            return run_container(mutated, INIT_CONTAINER, objects, folders, term), where / "m", term

        trusted, model_dir, _ = run(objects, tmp_path)
        assert trusted.returncode == 0, trusted.stderr
        assert tree(model_dir) == stores.models.versions["fraud"]["1"]

        untrusting = [
            dict(objects[0], spec={k: v for k, v in objects[0]["spec"].items() if k != "caBundle"}),
            *objects[1:],
        ]
        (tmp_path / "without").mkdir()
        refused, _, term = run(untrusting, tmp_path / "without")
        assert refused.returncode == 4, refused.stderr
        assert f"the certificate of {tracking} is not trusted" in term.read_text()
