"""Properties over generated pods: mutation is idempotent, only adds, and keeps every field it
does not own exactly as it was (unknown fields included)."""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.golden import golden_index
from webhook.config import Config
from webhook.mutation import decide

CONFIG = Config()
INDEX = golden_index()

names = st.sampled_from(
    [
        "MLFLOW_TRACKING_URI",
        "MLFLOW_TRACKING_USERNAME",
        "MLFLOW_TRACKING_TOKEN",
        "AWS_ACCESS_KEY_ID",
        "MLFLOW_S3_ENDPOINT_URL",
        "HOME",
        "PATH",
        "X",
    ]
)
scalars = st.one_of(st.text(max_size=5), st.integers(), st.booleans(), st.none())
unknown = st.dictionaries(st.sampled_from(["futureField", "x-ext", "a/b~c"]), scalars, max_size=2)
env = st.lists(st.fixed_dictionaries({"name": names, "value": st.text(max_size=4)}), max_size=3)
env_from = st.lists(
    st.sampled_from(
        [
            {"secretRef": {"name": "ds-mlflow-token"}},
            {"configMapRef": {"name": "c"}},
            {"configMapRef": {"name": "research-s3-options"}},
        ]
    ),
    max_size=2,
)
mounts = st.lists(
    st.sampled_from(
        [
            {"name": "v1", "mountPath": "/data"},
            {"name": "project-phusers", "mountPath": "/project/phusers"},
            {"name": "mlflow-model", "mountPath": "/mnt/models", "readOnly": True},
        ]
    ),
    max_size=2,
    unique_by=lambda m: m["mountPath"],
)


@st.composite
def containers(draw: Any, prefix: str) -> list[dict[str, Any]]:
    out = []
    for i in range(draw(st.integers(1, 3))):
        c: dict[str, Any] = {"name": f"{prefix}{i}", "image": "img", **draw(unknown)}
        for key, strategy in (("env", env), ("envFrom", env_from), ("volumeMounts", mounts)):
            if draw(st.booleans()):
                c[key] = draw(strategy)
        out.append(c)
    return out


labels = st.sampled_from(
    [
        {"component": "singleuser-server", "primehub.io/group": "escaped--52esearch-5f-54eam"},
        {"app": "primehub-job", "primehub.io/group": "escaped-phusers"},
        {"app": "primehub-deployment", "primehub.io/group": "escaped-phusers"},
        {"app": "primehub-deployment", "primehub.io/group": "escaped--52esearch-5f-54eam"},
        {"mlflow.primehub.io/group": "Data_Science"},
    ]
)
annotations = st.sampled_from(
    [
        {},
        {"mlflow.primehub.io/model-uri": "models:/m/1"},
        {"mlflow.primehub.io/model-uri": "models:/m@prod", "other": "x"},
    ]
)


@st.composite
def pods(draw: Any) -> tuple[dict[str, Any], str]:
    lab = draw(labels)
    namespace = "ml" if "mlflow.primehub.io/group" in lab else "hub"
    spec: dict[str, Any] = {"containers": draw(containers("c")), **draw(unknown)}
    if draw(st.booleans()):
        spec["initContainers"] = draw(containers("i"))
    if draw(st.booleans()):
        spec["volumes"] = [
            {"name": "project-phusers", "persistentVolumeClaim": {"claimName": "project-phusers"}}
        ]
    meta: dict[str, Any] = {"name": "p", "labels": lab, **draw(unknown)}
    ann = draw(annotations)
    if ann:
        meta["annotations"] = ann
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}, namespace


def _keeps(old: Any, new: Any) -> bool:
    try:
        assert_preserved(old, new)
    except AssertionError:
        return False
    return True


def assert_preserved(old: Any, new: Any, path: str = "") -> None:
    if isinstance(old, dict):
        assert isinstance(new, dict), path
        for key, value in old.items():
            assert key in new, f"{path}/{key} removed"
            assert_preserved(value, new[key], f"{path}/{key}")
    elif isinstance(old, list):
        # Every old item is still there, in the same order (new ones may come before it:
        # injected env goes first).
        assert isinstance(new, list) and len(new) >= len(old), path
        k = 0
        for i, value in enumerate(old):
            while k < len(new) and not _keeps(value, new[k]):
                k += 1
            assert k < len(new), f"{path}/{i} removed"
            assert_preserved(value, new[k], f"{path}/{i}")
            k += 1
    else:
        assert old == new, f"{path} changed"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pods())
def test_mutation_is_idempotent_and_only_adds(drawn: tuple[dict[str, Any], str]) -> None:
    pod, namespace = drawn
    sent = copy.deepcopy(pod)
    first = decide(pod, namespace, INDEX, CONFIG)
    assert pod == sent  # the mutated pod shares what no rule changes: the request is intact
    if not first.allowed or first.pod is None:
        assert first.patch == []
        return
    assert all(op["op"] == "add" for op in first.patch), first.patch
    assert jsonpatch.apply_patch(pod, first.patch) == first.pod
    assert_preserved(pod, first.pod)
    before = {
        c["name"]: c for c in pod["spec"]["containers"] + pod["spec"].get("initContainers", [])
    }
    for c in first.pod["spec"]["containers"] + first.pod["spec"].get("initContainers", []):
        had = [e["name"] for e in before.get(c["name"], {}).get("env", [])]
        added = [e["name"] for e in c.get("env", [])][: len(c.get("env", [])) - len(had)]
        assert len(added) == len(set(added)) and not set(added) & set(had), (had, added)
    again = decide(first.pod, namespace, INDEX, CONFIG)
    assert again.allowed and again.patch == []
