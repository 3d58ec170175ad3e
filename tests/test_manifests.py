"""The install as an admin writes it (docs/install.md): a kustomization of their
own on one of our overlays, with our components and the name of the image they built and
pushed, rendered by kubectl's kustomize."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cluster import admin_kustomization, kustomize
from webhook import __version__
from webhook.config import IMAGE_ENV, parse_config

OVERLAYS = ["overlays/self-managed", "overlays/cert-manager", "overlays/monitoring"]
COMPONENT_SETS = [[], ["components/kserve"], ["components/kserve", "components/network-policy"]]
IMAGE = "registry.example.com/team/mlflow-webhook:1.2.3"


def images(docs: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(kind/name, image) of every container of the rendered objects, ClusterStorageContainers'
    included."""
    found = []
    for doc in docs:
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        spec = doc.get("spec") or {}
        pod = (
            spec.get("jobTemplate", {}).get("spec", {}).get("template", {}).get("spec")
            or spec.get("template", {}).get("spec")
            or spec
        )
        containers = [*pod.get("containers", []), *pod.get("initContainers", [])]
        if "container" in spec:
            containers.append(spec["container"])
        found += [(where, c["image"]) for c in containers if "image" in c]
    return found


@pytest.mark.parametrize("components", COMPONENT_SETS, ids=["alone", "kserve", "kserve-netpol"])
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_one_image_name_set_once_names_every_use_of_the_image(
    tmp_path: Path, overlay: str, components: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = kustomize(admin_kustomization(tmp_path / "install", overlay, components, IMAGE))
    assert "primehub/mlflow-webhook" not in yaml.safe_dump_all(docs)
    used = images(docs)
    assert used and {image for _, image in used} == {IMAGE}, used
    if components:
        assert ("ClusterStorageContainer/mlflow-models", IMAGE) in used

    # And the model init container the webhook adds runs it too: the configuration it reads
    # from its ConfigMap, with the environment its Deployment gives it.
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    (server,) = deployment["spec"]["template"]["spec"]["containers"]
    for item in server.get("env") or []:
        monkeypatch.setenv(item["name"], item["value"])
    assert os.environ[IMAGE_ENV] == IMAGE
    config_map = next(d for d in docs if d["kind"] == "ConfigMap" and "config.yaml" in d["data"])
    config = parse_config(yaml.safe_load(config_map["data"]["config.yaml"]))
    assert config.model_init.image == IMAGE


def test_without_a_name_the_manifests_name_this_release_s_image() -> None:
    docs = kustomize("overlays/self-managed")
    assert {image for _, image in images(docs)} == {f"primehub/mlflow-webhook:{__version__}"}
