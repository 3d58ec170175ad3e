"""The chart installed, upgraded and uninstalled by the real `helm` on a real API server of its
own: the previous chart version (from the repository's history) installed, MLflowSettings
applied, `helm upgrade` to this version keeps every one; the webhook served from the objects the
release installed (its ConfigMap, its RBAC, its webhook configurations pointed at the local
process, as tests/cluster.install does for kustomize) injects pods, and a changed `config` routes
pods as `pods.route` says once the webhook starts; `helm uninstall` keeps the CRD and the
settings and leaves no webhook configuration that would refuse a model pod."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cluster import EXAMPLES, ROOT, ControlPlane, control_plane, pod_file
from tests.procs import free_port, wait_until
from tests.test_chart import CHART, HELM
from tests.webhookproc import WebhookProcess, serving_certs
from webhook.config import parse_config
from webhook.webhookconfig import MODELS_ENTRY, PODS_ENTRY, conditions

pytestmark = pytest.mark.cluster
RELEASE = NAMESPACE = "mlflow-webhook"
SETTINGS = "/apis/mlflow.primehub.io/v1alpha1/namespaces/hub/mlflowsettings"
CONFIGURATIONS = "/apis/admissionregistration.k8s.io/v1/{}webhookconfigurations/mlflow-webhook"
INJECTED = "mlflow.primehub.io/injected"


def previous_chart(tmp: Path) -> tuple[str, Path]:
    """The chart as the newest commit with another version left it (manifests/ whole: its
    files/ link there)."""
    current = yaml.safe_load((CHART / "Chart.yaml").read_text())["version"]

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout

    for commit in git("log", "--format=%H", "--", "manifests/chart/Chart.yaml").split():
        chart = yaml.safe_load(git("show", f"{commit}:manifests/chart/Chart.yaml"))
        if chart["version"] != current:
            archive = subprocess.run(
                ["git", "archive", commit, "manifests"], cwd=ROOT, capture_output=True, check=True
            ).stdout
            subprocess.run(["tar", "-x", "-C", str(tmp)], input=archive, check=True)
            return str(chart["version"]), tmp / "manifests" / "chart"
    raise AssertionError(f"no chart version before {current} in the repository's history")


def helm(cp: ControlPlane, *args: str) -> str:
    """`helm` as the admin. Installs and upgrades skip the chart's hook (the certificate keeper's
    Job, which helm waits for): this control plane runs no pod."""
    hooks = ["--no-hooks"] if args[0] in ("install", "upgrade", "uninstall") else []
    result = subprocess.run(
        [HELM, *args, *hooks, "--namespace", NAMESPACE],
        env={**os.environ, "KUBECONFIG": str(cp.kubeconfig)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def cp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    with control_plane(tmp_path_factory.mktemp("chart-cluster")) as running:
        yield running


@pytest.fixture(scope="module")
def upgraded(cp: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The previous version installed, the examples' settings applied, then upgraded to this
    version; returns the previous version."""
    version, chart = previous_chart(tmp_path_factory.mktemp("previous-chart"))
    helm(cp, "install", RELEASE, str(chart), "--create-namespace")
    hub = {"metadata": {"name": "hub", "labels": {"mlflow.primehub.io/injection": "enabled"}}}
    assert cp.request("POST", "/api/v1/namespaces", hub).status_code == 201
    for f in ("secrets.yaml", "settings.yaml"):
        result = cp.kubectl("apply", "-f", str(EXAMPLES / f), check=False)
        assert result.returncode == 0, result.stderr
    helm(cp, "upgrade", RELEASE, str(CHART))
    return version


def names(cp: ControlPlane, path: str) -> set[str]:
    """The objects' names (the API server serves a CRD just updated by an upgrade again within
    moments: until then the list is not found)."""
    listed = wait_until(lambda: (r := cp.request("GET", path)).ok and r, 30, "the list")
    return {o["metadata"]["name"] for o in listed.json()["items"]}


def test_an_upgrade_from_the_previous_version_keeps_every_setting(
    cp: ControlPlane, upgraded: str
) -> None:
    listed = json.loads(helm(cp, "list", "--output", "json"))
    current = yaml.safe_load((CHART / "Chart.yaml").read_text())["version"]
    assert [(r["chart"], str(r["revision"])) for r in listed] == [
        (f"mlflow-webhook-{current}", "2")
    ]
    assert upgraded != listed[0]["chart"].rsplit("-", 1)[1]
    assert names(cp, SETTINGS) == {"phusers", "research-team"}


@contextlib.contextmanager
def serving(cp: ControlPlane, tmp: Path) -> Iterator[WebhookProcess]:
    """The webhook as the release runs it: its ConfigMap's configuration and its ServiceAccount
    (the tests' webhook identity is that account), the release's webhook configurations pointed
    at this process."""
    config = cp.request("GET", f"/api/v1/namespaces/{NAMESPACE}/configmaps/mlflow-webhook-config")
    (tmp / "config.yaml").write_text(config.json()["data"]["config.yaml"])
    certs = serving_certs(tmp / "certs")
    webhook = WebhookProcess(
        certs,
        free_port(),
        tmp / "webhook.log",
        ["--cluster", f"--kubeconfig={cp.webhook_kubeconfig}"],
        [f"--config={tmp / 'config.yaml'}", "--shutdown-delay=0"],
    )
    bundle = base64.b64encode((certs / "ca.crt").read_bytes()).decode()
    installed = {}
    for kind in ("mutating", "validating"):
        live = cp.request("GET", CONFIGURATIONS.format(kind)).json()
        installed[kind] = [dict(hook["clientConfig"]) for hook in live["webhooks"]]
        for hook in live["webhooks"]:
            path = hook["clientConfig"]["service"]["path"]
            hook["clientConfig"] = {"url": webhook.url + path, "caBundle": bundle}
        assert cp.request("PUT", CONFIGURATIONS.format(kind), live).status_code == 200
    webhook.start(certs / "ca.crt")
    try:
        yield webhook
    finally:
        webhook.stop()
        for kind, configs in installed.items():  # as the release made them, for helm's next run
            live = cp.request("GET", CONFIGURATIONS.format(kind)).json()
            for hook, config in zip(live["webhooks"], configs, strict=True):
                hook["clientConfig"] = config
            assert cp.request("PUT", CONFIGURATIONS.format(kind), live).status_code == 200


def created(cp: ControlPlane, pod: dict[str, Any]) -> Any:
    pod["metadata"]["namespace"] = "hub"
    return cp.request("POST", "/api/v1/namespaces/hub/pods", pod, dryRun="All")


def injected(cp: ControlPlane, pod: dict[str, Any]) -> bool:
    reply = created(cp, pod)
    return INJECTED in (reply.json()["metadata"].get("annotations") or {})


def test_the_webhook_serves_from_what_the_release_installed(
    cp: ControlPlane, upgraded: str, tmp_path: Path
) -> None:
    with serving(cp, tmp_path):
        wait_until(lambda: injected(cp, pod_file("notebook", unique=True)), 30, "injection")
        model = created(cp, pod_file("deployment", unique=True)).json()
        assert any(c["name"] == "mlflow-model-init" for c in model["spec"]["initContainers"])


def test_a_changed_config_routes_as_the_webhook_s_own_rules_once_it_starts(
    cp: ControlPlane, upgraded: str, tmp_path: Path
) -> None:
    """Pod kinds of the chart's `config`: notebooks labelled app=my-notebooks only. Once the
    webhook has started, the API server sends them and no longer sends Kubeflow's notebooks
    (a default kind), exactly as the configuration's own CEL says."""
    config = {"podKinds": {"notebook": [{"app": "my-notebooks"}]}}
    helm(cp, "upgrade", RELEASE, str(CHART), "--set-json", f"config={json.dumps(config)}")
    namespace_wide = {
        "apiVersion": "mlflow.primehub.io/v1alpha1",
        "kind": "MLflowSetting",
        "metadata": {"name": "everyone", "namespace": "hub"},
        "spec": {"trackingUri": "http://mlflow.hub:5000"},
    }
    result = cp.kubectl("apply", "-f", "-", input=yaml.safe_dump(namespace_wide), check=False)
    assert result.returncode == 0, result.stderr

    def pod(labels: dict[str, str]) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"generateName": "nb-", "labels": labels},
            "spec": {"containers": [{"name": "nb", "image": "jupyter"}]},
        }

    try:
        with serving(cp, tmp_path):
            ours = parse_config(config)
            wanted = {
                MODELS_ENTRY: conditions(ours, model=True),
                PODS_ENTRY: conditions(ours, model=False),
            }

            def routing() -> dict[str, Any]:
                live = cp.request("GET", CONFIGURATIONS.format("mutating")).json()
                return {h["name"]: h["matchConditions"] for h in live["webhooks"]}

            wait_until(lambda: routing() == wanted, 30, "matchConditions in line")
            wait_until(lambda: injected(cp, pod({"app": "my-notebooks"})), 30, "the new kind")
            reply = created(cp, pod({"notebook-name": "analysis"}))
            assert reply.status_code == 201 and INJECTED not in (
                reply.json()["metadata"].get("annotations") or {}
            )
            assert "mlflow webhook" not in reply.headers.get("Warning", "")  # never sent
    finally:
        cp.kubectl("delete", "-n", "hub", "mlflowsetting", "everyone", check=False)
        helm(cp, "upgrade", RELEASE, str(CHART))  # the default configuration again


def test_uninstalling_keeps_the_settings_and_refuses_no_model_pod(
    cp: ControlPlane, upgraded: str
) -> None:
    helm(cp, "uninstall", RELEASE)
    crd = cp.request(
        "GET",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/mlflowsettings.mlflow.primehub.io",
    )
    assert crd.status_code == 200
    assert names(cp, SETTINGS) == {"phusers", "research-team"}
    for kind in ("mutating", "validating"):
        assert cp.request("GET", CONFIGURATIONS.format(kind)).status_code == 404
    reply = created(cp, pod_file("deployment", unique=True))
    assert reply.status_code == 201, reply.text
