"""Golden pods: each file under golden/cases holds a pod, its namespace and the expected answer
(mutated pod, or denial, plus warnings). UPDATE_GOLDEN=1 rewrites the expectations; review the
diff before committing it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import jsonpatch
import pytest
import yaml

from tests.golden import CASES, GOLDEN, golden_index, load_case
from tests.podrun import resolve_env
from tests.primehub import deployment_pod
from webhook.config import Config
from webhook.mutation import decide

CONFIG = Config()
INDEX = golden_index()


def answer(case: dict) -> dict:
    decision = decide(case["pod"], case["namespace"], INDEX, CONFIG)
    expect: dict = {"allowed": decision.allowed, "outcome": decision.outcome}
    if decision.warnings:
        expect["warnings"] = decision.warnings
    if decision.message:
        expect["message"] = decision.message
    if decision.pod is not None:
        expect["pod"] = decision.pod
    return expect


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_golden(path: Path) -> None:
    case = load_case(path)
    got = answer(case)
    if os.environ.get("UPDATE_GOLDEN"):
        case["expect"] = got
        # Through JSON: the mutated pod shares parts with the pod, which YAML would alias.
        plain = json.loads(json.dumps(case))
        path.write_text(yaml.safe_dump(plain, sort_keys=False, width=100))
    assert got == case["expect"], case["description"]


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_patch_gives_exactly_the_mutated_pod(path: Path) -> None:
    case = load_case(path)
    decision = decide(case["pod"], case["namespace"], INDEX, CONFIG)
    patched = jsonpatch.apply_patch(case["pod"], decision.patch)
    assert patched == (decision.pod or case["pod"])


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_reinvocation_changes_nothing(path: Path) -> None:
    case = load_case(path)
    first = decide(case["pod"], case["namespace"], INDEX, CONFIG)
    if first.pod is None:
        return
    second = decide(first.pod, case["namespace"], INDEX, CONFIG)
    assert second.patch == []
    assert second.allowed


PRIMEHUB = [p for p in CASES if "primehub" in load_case(p)]


@pytest.mark.parametrize("path", PRIMEHUB, ids=[p.stem for p in PRIMEHUB])
def test_primehub_cases_hold_the_pods_primehubs_controller_builds(path: Path) -> None:
    """The golden PrimeHub pods are what tests/primehub.py (read from the controller) builds."""
    case = load_case(path)
    ph = case["primehub"]
    pod = deployment_pod(ph["group"], ph["modelURI"], ph["mlflowEnv"])
    annotations = case["pod"]["metadata"]["annotations"]
    if "mlflow.primehub.io/model-uri" in annotations:
        pod["metadata"]["annotations"]["mlflow.primehub.io/model-uri"] = annotations[
            "mlflow.primehub.io/model-uri"
        ]
    assert case["pod"] == pod


def environment(case: str, container: str, objects: list[dict]) -> dict[str, str]:
    pod = load_case(GOLDEN / "cases" / f"{case}.yaml")["expect"]["pod"]
    (c,) = [c for c in pod["spec"]["containers"] if c["name"] == container]
    return resolve_env(c, objects)


SECRETS = [
    {"kind": "Secret", "metadata": {"name": n}, "stringData": d}
    for n, d in (
        ("research-mlflow-login", {"username": "research", "password": "pw"}),
        ("research-s3", {"access-key": "group-key", "secret-key": "group-secret"}),
        ("alice-s3", {"AWS_DEFAULT_REGION": "alice-region", "EXTRA": "alice"}),
    )
] + [
    {
        "kind": "ConfigMap",
        "metadata": {"name": "research-s3-options"},
        "data": {"AWS_DEFAULT_REGION": "group-region", "EXTRA": "group"},
    }
]


def test_injected_variables_resolve_as_the_kubelet_resolves_them() -> None:
    """Judged with Kubernetes' own expansion (the pod runner's envexpand), not by hand."""
    env = environment("notebook-env-references", "notebook", SECRETS)
    assert env["MY_URI"] == "https://mlflow.research.example.com/api"  # ours came first
    env = environment("notebook-own-envfrom", "notebook", SECRETS)
    assert env["EXTRA"] == "alice"  # the container's own source, listed last, wins
    assert env["AWS_DEFAULT_REGION"] == "alice-region"
    assert env["MLFLOW_TRACKING_PASSWORD"] == "pw"
