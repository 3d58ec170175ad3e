"""The Helm chart (manifests/chart) with the real `helm` (v4, built by
tests/controlplane/build.sh): lint --strict, a values schema that refuses a wrong value naming
it, and one source: every values file of its ci/ folder renders, object by object, what kubectl's
kustomize renders from manifests/ with the same choices (the chart reads those very files)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cluster import ROOT, Installed, install_other_crds, kustomize
from tests.procs import BIN

CHART = ROOT / "manifests" / "chart"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
HELM = os.environ.get("HELM") or str(BIN / "helm")


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([HELM, *args], capture_output=True, text=True, check=check, timeout=120)


def rendered(values: Path | None, namespace: str = "mlflow-webhook", *sets: str) -> list[Any]:
    args = ["template", "mlflow-webhook", str(CHART), "--namespace", namespace]
    if values is not None:
        args += ["--values", str(values)]
    for item in sets:
        args += ["--set", item]
    return [d for d in yaml.safe_load_all(helm(*args).stdout) if d]


def by_object(docs: list[Any]) -> dict[tuple[str, str, str], Any]:
    return {(d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"]): d for d in docs}


# Each values file of ci/ has a kustomization that says the same to kustomize: an overlay,
# components, and patches for what no overlay or component has (tests/chart/<name>/).
TWINS = ROOT / "tests" / "chart"


def test_the_chart_lints_strictly_with_each_values_file() -> None:
    for values in (None, *CI_VALUES):
        args = ["lint", "--strict", str(CHART)] + (["--values", str(values)] if values else [])
        result = helm(*args, check=False)
        assert result.returncode == 0, result.stdout + result.stderr


def test_every_values_file_has_its_kustomize_twin() -> None:
    assert {v.name.removesuffix("-values.yaml") for v in CI_VALUES} == {
        p.name for p in TWINS.iterdir() if p.is_dir()
    }


@pytest.mark.parametrize("values", CI_VALUES, ids=[v.stem for v in CI_VALUES])
def test_the_chart_renders_what_kustomize_renders_with_the_same_choices(
    values: Path,
) -> None:
    """The Namespace aside (helm's --create-namespace makes it, and a release that owned it
    would delete it, with what is in it, when uninstalled), and the checksum of the
    configuration on the Deployment's pods (helm replaces them when it changes; with kustomize,
    `kubectl rollout restart`)."""
    chart = by_object(rendered(values))
    template = chart[("Deployment", "mlflow-webhook", "mlflow-webhook")]["spec"]["template"]
    assert template["metadata"].pop("annotations").keys() == {"checksum/config"}
    ours = by_object(kustomize(TWINS / values.name.removesuffix("-values.yaml")))
    assert ours.pop(("Namespace", "", "mlflow-webhook"))
    assert sorted(chart) == sorted(ours)
    assert [k for k in chart if chart[k] != ours[k]] == []


def test_a_release_in_another_namespace_names_it_everywhere() -> None:
    """The Service the webhook configurations call, the certificate's names, the webhook's own
    namespace left out of the namespaces it serves, the certificate keeper's arguments, the
    ServiceAccounts bound: all in the release's namespace, none left in mlflow-webhook."""
    for values in CI_VALUES:
        docs = rendered(values, "ml-system")
        namespaced = [d for d in docs if "namespace" in d["metadata"]]
        assert {d["metadata"]["namespace"] for d in namespaced} == {"ml-system"}
        text = yaml.safe_dump_all(docs)
        assert "mlflow-webhook.mlflow-webhook.svc" not in text
        assert "--namespace=mlflow-webhook" not in text
        assert "namespace: mlflow-webhook" not in text
        assert "mlflow-webhook/mlflow-webhook" not in text
        for doc in docs:
            for hook in doc.get("webhooks", []):
                assert hook["clientConfig"]["service"]["namespace"] == "ml-system"
                names = [
                    e["values"]
                    for e in hook.get("namespaceSelector", {}).get("matchExpressions", [])
                    if e["operator"] == "NotIn"
                ]
                assert names in ([], [["kube-system", "ml-system"]])


@pytest.mark.parametrize(
    ("value", "named"),
    [
        ("certificates=letsencrypt", "certificates"),
        ("replicas=0", "replicas"),
        ("image.pullPolicy=Sometimes", "pullPolicy"),
        ("resources.limits.cpu=lots", "cpu"),
        ("networkPolicy.enabled=true", "apiServerCIDR"),
        ("networkPolicy.apiServerCIDR=somewhere", "apiServerCIDR"),
        ("injectNamespaces={Team_A}", "injectNamespaces"),
        ("config.missingSetting=maybe", "missingSetting"),
        ("config.podKind.notebook=x", "podKind"),
        ("replica=3", "replica"),
    ],
)
def test_a_wrong_value_is_refused_by_helm_naming_it(value: str, named: str) -> None:
    result = helm("template", "x", str(CHART), "--set", value, check=False)
    assert result.returncode != 0
    assert named in result.stderr, result.stderr


def test_the_schema_takes_quantities_as_the_webhook_does() -> None:
    """One rule: the schema's quantity is the webhook's own (webhook/settings/rules.py)."""
    import json

    from webhook.settings import rules

    schema = json.loads((CHART / "values.schema.json").read_text())
    quantity = schema["definitions"]["quantities"]["additionalProperties"]["pattern"]
    assert quantity == rules.RESOURCE_QUANTITY


@pytest.mark.cluster
@pytest.mark.parametrize("values", CI_VALUES, ids=[v.stem for v in CI_VALUES])
def test_each_values_file_renders_what_the_api_server_takes(
    values: Path, installed: Installed
) -> None:
    """helm template of each ci/ values file, server-side dry run on the real API server with
    the real CRDs of cert-manager, the Prometheus operator and KServe; in a namespace of its own
    (the installed release's Job cannot take another image), made for it."""
    install_other_crds(installed.cp)
    namespace = "chart-dry-run"
    installed.cp.request("POST", "/api/v1/namespaces", {"metadata": {"name": namespace}})
    docs = rendered(values, namespace)
    result = installed.cp.kubectl(
        "apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump_all(docs), check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("(server dry run)") == len(docs)
