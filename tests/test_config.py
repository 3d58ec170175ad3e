"""The configuration file: its documented shape changes what the webhook does; typos are errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.golden import GOLDEN, golden_index
from tests.primehub import deployment_pod
from webhook.config import ConfigError, load_config
from webhook.mutation import decide
from webhook.pods import PodKind

INDEX = golden_index()


def config_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def case_pod(name: str) -> dict:
    pod: dict = yaml.safe_load((GOLDEN / "cases" / f"{name}.yaml").read_text())["pod"]
    return pod


def test_the_shipped_configmap_is_the_default(tmp_path: Path) -> None:
    configmap = yaml.safe_load(
        (Path(__file__).parent.parent / "manifests/base/config.yaml").read_text()
    )
    shipped = load_config(config_file(tmp_path, configmap["data"]["config.yaml"]))
    assert shipped == load_config(None)


def test_pod_kinds_and_group_labels_are_configurable(tmp_path: Path) -> None:
    config = load_config(
        config_file(
            tmp_path,
            """
podKinds:
  notebook: [{workbench: "yes"}]
labels:
  group: example.com/team
""",
        )
    )
    pod = {
        "metadata": {"labels": {"workbench": "yes", "example.com/team": "Data_Science"}},
        "spec": {"containers": [{"name": "c"}]},
    }
    decision = decide(pod, "ml", INDEX, config)
    assert decision.kind is PodKind.NOTEBOOK and decision.outcome == "injected"
    # PrimeHub's notebook label no longer makes a notebook.
    assert decide(case_pod("notebook-external"), "hub", INDEX, config).outcome == "ignored"


def test_missing_setting_can_admit_deployments_with_a_warning(tmp_path: Path) -> None:
    config = load_config(config_file(tmp_path, "missingSetting: warn\n"))
    decision = decide(case_pod("no-setting-deployment"), "hub", INDEX, config)
    assert decision.allowed and decision.warnings


def test_model_init_defaults_are_configurable(tmp_path: Path) -> None:
    config = load_config(
        config_file(
            tmp_path,
            """
modelInit:
  image: mirror.example.com/mlflow-webhook:0.1.0
  defaultPath: /models
  resources: {requests: {cpu: 10m}}
  runAsUser: 2000
  runAsGroup: 3000
  volume: {size: 30Gi}
  imagePullSecrets: [{name: mirror-creds}]
""",
        )
    )
    pod = decide(case_pod("deployment-model"), "hub", INDEX, config).pod
    assert pod is not None
    init = pod["spec"]["initContainers"][-1]
    assert init["image"] == "mirror.example.com/mlflow-webhook:0.1.0"
    assert init["command"][-1] == "/models"
    assert init["resources"] == {"requests": {"cpu": "10m", "ephemeral-storage": "30Gi"}}
    assert (init["securityContext"]["runAsUser"], init["securityContext"]["runAsGroup"]) == (
        2000,
        3000,
    )
    assert pod["spec"]["volumes"][-1] == {"name": "mlflow-model", "emptyDir": {"sizeLimit": "30Gi"}}
    assert pod["spec"]["imagePullSecrets"] == [{"name": "mirror-creds"}]


def test_with_a_storage_class_a_model_copied_into_an_emptydir_still_asks_for_the_space(
    tmp_path: Path,
) -> None:
    """The storage class makes our own model volume a claim; PrimeHub's model volume stays the
    emptyDir on the node, so the init container taking over its initializer asks for the room."""
    config = load_config(
        config_file(tmp_path, "modelInit: {volume: {storageClassName: fast-ssd, size: 30Gi}}\n")
    )
    annotated = decide(case_pod("deployment-model"), "hub", INDEX, config).pod
    taken_over = decide(deployment_pod("phusers", "models:/iris/3", []), "hub", INDEX, config).pod
    assert annotated is not None and taken_over is not None
    (own,) = [c for c in annotated["spec"]["initContainers"] if c["name"] == "mlflow-model-init"]
    (theirs,) = [
        c for c in taken_over["spec"]["initContainers"] if c["name"] == "mlflow-model-init"
    ]
    assert "ephemeral-storage" not in own["resources"]["requests"]
    assert theirs["resources"]["requests"]["ephemeral-storage"] == "30Gi"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("podKinds: {notebok: [{a: b}]}", "podKinds: unknown keys ['notebok']"),
        ("podKinds: {job: [{}]}", "podKinds.job: expected a list of non-empty label maps"),
        ("missingSetting: maybe", "missingSetting: must be 'deny' or 'warn'"),
        ("maxRequestBytes: lots", "maxRequestBytes: expected int"),
        ("modelInit: {imagee: x}", "modelInit: unknown field 'imagee'"),
        ("modelInit: {volumeSize: 30Gi}", "modelInit: unknown field 'volumeSize'"),
        ("modelInit: {volume: {size: big}}", "modelInit.volume.size: 'big' is not a quantity"),
        ("modelInit: {imagePullSecrets: [1]}", "modelInit.imagePullSecrets[0]: must be an object"),
        (
            "modelInit: {resources: {limits: {memory: 1GB}}}",
            "modelInit.resources.limits.memory: '1GB' is not a quantity like 500m or 2Gi",
        ),
        (
            "modelInit: {resources: {limits: {nvidia.com/gpu: 1}}}",
            "modelInit.resources: 'nvidia.com/gpu': resources are cpu, memory, ephemeral-storage",
        ),
        ("modelInit: {imagePullPolicy: Sometimes}", "modelInit.imagePullPolicy: must be one of"),
        ("modelInit: {runAsUser: -1}", "modelInit.runAsUser: may not be less than 0"),
        ("modelInit: []", "modelInit: must be an object"),
        ("labelz: {}", "unknown keys ['labelz']"),
        ("- a list", "expected a mapping at the top level"),
    ],
)
def test_mistakes_are_errors_that_name_the_key(tmp_path: Path, text: str, words: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(config_file(tmp_path, text))
    assert words in str(e.value)


def test_the_manifests_follow_the_configuration() -> None:
    """One source for the pod rules: the ConfigMap shows config.py's defaults, and the webhook
    configuration is generated from them."""
    from webhook.config import Config, parse_config
    from webhook.webhookconfig import render

    manifests = Path(__file__).parent.parent / "manifests" / "base"
    configmap = yaml.safe_load((manifests / "config.yaml").read_text())
    assert parse_config(yaml.safe_load(configmap["data"]["config.yaml"])) == Config()
    assert (manifests / "webhook.yaml").read_text() == render(Config()), (
        "run: python -m webhook.webhookconfig > manifests/base/webhook.yaml"
    )
