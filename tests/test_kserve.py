"""Registered MLflow models on KServe, proven with KServe's own code: its InferenceService
controller writes the predictor's Deployment, its pod mutator adds the storage initializer
(tests/kserve.py, KServe v0.20.0), the ClusterStorageContainer of manifests/components/kserve
makes that run our copier, and our webhook gives it the group's settings; all through the real
API server, and the copy against the real MLflow server."""

from __future__ import annotations

import base64
import copy
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import mlflow.artifacts
import pytest
import requests
import yaml

from tests.cluster import Installed
from tests.conftest import Stores
from tests.kserve import KServe, kserve
from tests.podrun import mounts, run_container
from tests.procs import environ, wait_until
from tests.registry import tree
from tests.reviews import pod_review
from tests.teams import model_pod
from tests.test_end_to_end import manifests
from webhook.pods import KSERVE_INITIALIZER

pytestmark = pytest.mark.cluster
INJECTED = "mlflow.primehub.io/injected"
SERVING = "serving"  # labelled for injection; group phusers uses the real MLflow server


@pytest.fixture(scope="module")
def ks(installed: Installed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KServe]:
    with kserve(installed.cp, tmp_path_factory.mktemp("kserve")) as running:
        yield running


@pytest.fixture(scope="module")
def objects(installed: Installed, stores: Stores) -> list[dict[str, Any]]:
    """The group's setting (and the Secret and ConfigMap it refers to) in SERVING."""
    found = manifests(stores, SERVING)
    installed.opted_in(SERVING, found)
    return found


def isvc(name: str, uri: str | None = None, uris: list[dict[str, str]] | None = None) -> Any:
    """An InferenceService as docs/platforms/kserve.md writes it."""
    model: dict[str, Any] = {"modelFormat": {"name": "mlflow"}, "protocolVersion": "v2"}
    predictor: dict[str, Any] = {"model": model}
    if uri is not None:
        model["storageUri"] = uri
    if uris is not None:
        predictor["storageUris"] = uris
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": name, "labels": {"primehub.io/group": "escaped-phusers"}},
        "spec": {"predictor": predictor},
    }


def predictor_pod(ks: KServe, namespace: str, name: str, **spec: Any) -> dict[str, Any]:
    ks.create(namespace, isvc(name, **spec))
    return ks.pod_made(namespace, name)


def initializer(pod: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = next(
        c for c in pod["spec"]["initContainers"] if c["name"] == KSERVE_INITIALIZER
    )
    return found


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e for e in container.get("env") or []}


def copy_into_folders(
    pod: dict[str, Any], objects: list[dict[str, Any]], stores: Stores, tmp: Path
) -> tuple[Any, dict[str, Path]]:
    """Runs the pod's storage initializer as the API server stored it (env from the Secrets,
    mounts mapped to folders); returns its result and the folders by volume."""
    model_volume = next(v["name"] for v in pod["spec"]["volumes"] if "emptyDir" in v)
    group_volume = next(v["name"] for v in pod["spec"]["volumes"] if "persistentVolumeClaim" in v)
    folders = {model_volume: tmp / "emptydir", group_volume: stores.group_volume.parents[2]}
    folders[model_volume].mkdir()
    result = run_container(pod, KSERVE_INITIALIZER, objects, folders, tmp / "termination")
    return result, folders


def mlflow_download(stores: Stores, uri: str, tmp: Path) -> dict[str, str]:
    """What MLflow's own download of the same model gives (it does not decode a URL-encoded
    name, as the copier does: given the name as it is)."""
    with environ({"MLFLOW_TRACKING_URI": stores.mlflow.url}):
        downloaded = mlflow.artifacts.download_artifacts(unquote(uri), dst_path=str(tmp))
    return tree(Path(downloaded))


@pytest.mark.parametrize(
    "uri",
    ["models:/fraud/1", "models:/iris/1", "models:/churn%20model@champion"],
    ids=["s3", "group-volume", "served-by-the-tracking-server"],
)
def test_a_registered_model_reaches_the_model_server_through_kserve(
    ks: KServe,
    objects: list[dict[str, Any]],
    stores: Stores,
    tmp_path: Path,
    uri: str,
) -> None:
    name = f"m{int(time.monotonic() * 1000) % 10**8}"
    pod = predictor_pod(ks, SERVING, name, uri=uri)
    assert pod["metadata"]["annotations"][INJECTED] == f"{SERVING}/phusers"
    init = initializer(pod)
    assert init["command"] == ["mlflow-webhook", "copy-artifacts"]
    assert init["args"] == [uri, "/mnt/models"]  # KServe's, untouched
    env = env_of(init)
    assert env["MLFLOW_TRACKING_URI"]["value"] == stores.mlflow.url
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "phusers-s3-keys"
    assert "HF_HUB_ENABLE_HF_TRANSFER" in env  # what KServe set stays
    assert stores.s3.env["AWS_SECRET_ACCESS_KEY"] not in json.dumps(pod)
    assert {"name": "kserve-provision-location", "mountPath": "/mnt/models"} in init["volumeMounts"]

    result, folders = copy_into_folders(pod, objects, stores, tmp_path)
    assert result.returncode == 0, result.stderr
    server = next(c for c in pod["spec"]["containers"] if c["name"] == "kserve-container")
    served = mounts(pod, server, folders)["/mnt/models"]
    assert tree(served) == mlflow_download(stores, uri, tmp_path / "mlflow")
    ks.delete(SERVING, name)


def test_a_missing_version_stops_the_predictor_saying_why(
    ks: KServe, objects: list[dict[str, Any]], stores: Stores, tmp_path: Path
) -> None:
    pod = predictor_pod(ks, SERVING, "missing", uri="models:/churn%20model/99")
    result, folders = copy_into_folders(pod, objects, stores, tmp_path)
    assert result.returncode == 3
    said = (tmp_path / "termination").read_text()  # what `kubectl describe pod` shows
    assert 'version 99 of model "churn model" does not exist' in said, said
    assert list(next(iter(folders.values())).iterdir()) == []
    ks.delete(SERVING, "missing")


def test_storage_uris_are_copied_each_into_its_folder(
    ks: KServe, objects: list[dict[str, Any]], stores: Stores, tmp_path: Path
) -> None:
    """KServe's storageUris form: its controller writes the initializer into the Deployment
    with URI, folder pairs; completed the same way."""
    uris = [
        {"uri": "models:/fraud/1", "mountPath": "/mnt/models/fraud"},
        {"uri": "models:/churn%20model/2", "mountPath": "/mnt/models/churn"},
    ]
    pod = predictor_pod(ks, SERVING, "pair", uris=uris)
    init = initializer(pod)
    assert init["args"] == [p for u in uris for p in (u["uri"], u["mountPath"])]
    assert env_of(init)["MLFLOW_TRACKING_URI"]["value"] == stores.mlflow.url
    result, folders = copy_into_folders(pod, objects, stores, tmp_path)
    assert result.returncode == 0, result.stderr
    model_dir = next(iter(folders.values()))
    for u, folder in zip(uris, ("fraud", "churn"), strict=True):
        got = tree(model_dir / folder)
        assert got == mlflow_download(stores, u["uri"], tmp_path / folder)
    ks.delete(SERVING, "pair")


def test_the_pod_is_the_same_whichever_webhook_the_api_server_calls_first(
    installed: Installed, ks: KServe, objects: list[dict[str, Any]]
) -> None:
    """The API server calls webhook configurations in name order: KServe's
    (`inferenceservice...`) before ours (`mlflow-webhook`). Renamed so that ours comes first,
    it sees the pod before KServe added the initializer, does nothing, and is called again
    once KServe has (reinvocation): the stored pod is the same. And a second pass of ours on
    the stored pod changes nothing."""
    kserve_first = predictor_pod(ks, SERVING, "order-a", uri="models:/fraud/1")
    path = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"
    ours = installed.cp.request("GET", f"{path}/mlflow-webhook").json()
    first = copy.deepcopy(ours)
    first["metadata"] = {"name": "0-mlflow-webhook"}
    assert installed.cp.request("POST", path, first).status_code == 201
    installed.cp.request("DELETE", f"{path}/mlflow-webhook")
    try:
        probe = model_pod("models:/fraud/1", {"primehub.io/group": "escaped-phusers"})
        wait_until(  # a configuration just made takes a moment to be used
            lambda: (
                INJECTED
                in (
                    installed.create(probe, SERVING, dry_run=True)
                    .json()["metadata"]
                    .get("annotations")
                    or {}
                )
            ),
            30,
            "the renamed configuration in use",
        )
        ours_first = predictor_pod(ks, SERVING, "order-b", uri="models:/fraud/1")
        assert INJECTED in ours_first["metadata"]["annotations"]
    finally:
        ours["metadata"] = {"name": "mlflow-webhook"}
        assert installed.cp.request("POST", path, ours).status_code == 201
        installed.cp.request("DELETE", f"{path}/0-mlflow-webhook")
    assert initializer(ours_first) == initializer(kserve_first)
    assert ours_first["spec"]["volumes"] == kserve_first["spec"]["volumes"]

    review = pod_review(ours_first, namespace=SERVING)
    answer = requests.post(
        f"{installed.webhook.url}/mutate", json=review, verify=installed.trusted_ca(), timeout=10
    ).json()["response"]
    assert answer["allowed"] and "patch" not in answer
    for name in ("order-a", "order-b"):
        ks.delete(SERVING, name)


def test_other_models_and_other_namespaces_are_left_as_kserve_made_them(
    installed: Installed, ks: KServe, objects: list[dict[str, Any]]
) -> None:
    s3 = predictor_pod(ks, SERVING, "plain-s3", uri="s3://models/iris")
    assert INJECTED not in s3["metadata"]["annotations"]
    assert initializer(s3)["image"] == "kserve/storage-initializer:latest"
    assert "MLFLOW_TRACKING_URI" not in env_of(initializer(s3))
    installed.cp.kubectl("create", "namespace", "not-injected")
    elsewhere = predictor_pod(ks, "not-injected", "elsewhere", uri="models:/fraud/1")
    assert INJECTED not in elsewhere["metadata"]["annotations"]
    assert "MLFLOW_TRACKING_URI" not in env_of(initializer(elsewhere))
    ks.delete(SERVING, "plain-s3")
    ks.delete("not-injected", "elsewhere")


def test_no_credential_of_the_setting_is_in_any_stored_object(
    installed: Installed, ks: KServe, objects: list[dict[str, Any]], stores: Stores
) -> None:
    """Neither KServe's Deployment nor its pods hold a credential value: ours travel by
    reference, and KServe's controller never sees them."""
    predictor_pod(ks, SERVING, "secretless", uri="models:/fraud/1")
    deployments = installed.cp.request("GET", f"/apis/apps/v1/namespaces/{SERVING}/deployments")
    pods = installed.cp.request("GET", f"/api/v1/namespaces/{SERVING}/pods")
    for text in (deployments.text, pods.text):
        assert base64.b64encode(stores.s3.env["AWS_SECRET_ACCESS_KEY"].encode()).decode() not in (
            text
        )
        assert stores.s3.env["AWS_SECRET_ACCESS_KEY"] not in yaml.safe_dump(json.loads(text))
    ks.delete(SERVING, "secretless")
