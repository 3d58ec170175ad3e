"""Seeded fuzzing of /mutate: thousands of hostile AdmissionReviews made from the golden pods by
random edits (wrong types, nulls, deletions, odd label values and model URIs, huge and deeply
nested values, broken JSON text). Whatever comes in, the answer is a 400 with a reason or a valid
AdmissionReview whose patch is strict JSON, applies to its pod, and a second pass adds nothing.
Likewise /validate, with MLflowSettings made from the golden and example settings: a 400 or a
verdict, never an internal error.

FUZZ_SEED and FUZZ_REVIEWS change the seed and the count (CI uses the defaults)."""

from __future__ import annotations

import base64
import json
import os
import random
from typing import Any

import jsonpatch
import pytest
import yaml
from flask.testing import FlaskClient

from tests.golden import CASES, GOLDEN, golden_index, load_case
from tests.reviews import error_message, pod_review
from webhook import API_GROUP, API_VERSION, KIND, PLURAL
from webhook.config import Config
from webhook.metrics import Metrics
from webhook.server import create_app

SEED = int(os.environ.get("FUZZ_SEED", "20261128"))
COUNT = int(os.environ.get("FUZZ_REVIEWS", "5000"))
PODS = [load_case(p)["pod"] for p in CASES]
SETTINGS = [
    doc
    for path in (GOLDEN / "settings.yaml", GOLDEN.parent.parent / "examples" / "settings.yaml")
    for doc in yaml.safe_load_all(path.read_text())
    if doc
]

ODD_STRINGS = [
    "",
    " ",
    "escaped--zz",
    "escaped--ff-fe",
    "escaped-",
    "Research_Team",
    "phusers",
    "x" * 64,
    "\u00e9\u6f22\U0001f600",
    "\ud800",
    "-",
    "a/b",
    "models:/",
    "models:/a@",
    "models://churn/" + "0" * 30 + "7",
    "models:/churn/" + "9" * 5000,
    "models:/churn%20model/3",
    "models:/a/b/c/latest",
    "models:/m-0123abcd",
    "s3://bucket/model",
    "/mnt/models",
    "relative/path",
    "/",
    "mlflow-model",
    "mlflow-model-init",
    "project-phusers",
    "false",
    "FALSE",
    "20Gi",
    "1e3",
    "mlflow-webhook",
    "copy-artifacts",
    "MLFLOW_X\n",  # Python's $ matches before a final newline, the API server's does not
    "20Gi\n",
    "models:/m@a%0a",
    "kubernetes",
    "kubernetes-namespaced",
    "team-a",
    "ajax-api",
    "MLFLOW_WORKSPACE",
    "MLFLOW_TRACKING_AUTH",
]
KEYS = [
    "metadata",
    "labels",
    "annotations",
    "spec",
    "containers",
    "initContainers",
    "volumes",
    "env",
    "envFrom",
    "volumeMounts",
    "name",
    "mountPath",
    "subPath",
    "persistentVolumeClaim",
    "claimName",
    "emptyDir",
    "value",
    "valueFrom",
    "secretKeyRef",
    "restartPolicy",
    "primehub.io/group",
    "mlflow.primehub.io/group",
    "mlflow.primehub.io/model-uri",
    "mlflow.primehub.io/model-path",
    "mlflow.primehub.io/inject",
    "mlflow.primehub.io/injected",
    "mlflow.primehub.io/model-volume-size",
    "command",
    "imagePullSecrets",
    "secret",
    "configMap",
    "items",
    "app",
    "component",
    "group",
    "trackingUri",
    "trackingEnv",
    "artifactEnv",
    "artifactVolume",
    "groupVolume",
    "modelInit",
    "caBundle",
    "workspace",
    "trackingAuth",
]


def random_value(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if roll < 0.3:
        return rng.choice(ODD_STRINGS)
    if roll < 0.4:
        return rng.choice([None, True, False, 0, -1, 2**63, 1.5, 1e308])
    if roll < 0.5 and depth < 3:
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    if roll < 0.6 and depth < 3:
        return {rng.choice(KEYS): random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))}
    if roll < 0.62:
        nested: Any = "deep"
        for _ in range(rng.randint(50, 400)):
            nested = [nested] if rng.random() < 0.5 else {"k": nested}
        return nested
    if roll < 0.64:
        return "y" * rng.randint(100, 300_000)
    return rng.choice(ODD_STRINGS) + str(rng.randint(0, 10**6))


def nodes(obj: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [path]
    if isinstance(obj, dict):
        for key, value in obj.items():
            found.extend(nodes(value, (*path, key)))
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            found.extend(nodes(value, (*path, i)))
    return found


def edit(pod: Any, rng: random.Random) -> Any:
    """One random edit somewhere in the pod: replace, delete, add a key, or append."""
    path = rng.choice(nodes(pod))
    if not path:
        return random_value(rng) if rng.random() < 0.05 else pod
    parent = pod
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    roll = rng.random()
    if roll < 0.3 and isinstance(parent[last], str):
        parent[last] = rng.choice(ODD_STRINGS)  # same type: goes deeper into the rules
    elif roll < 0.5:
        parent[last] = random_value(rng)
    elif roll < 0.7:
        del parent[last]
    elif isinstance(parent[last], dict):
        parent[last][rng.choice(KEYS)] = random_value(rng)
    elif isinstance(parent[last], list):
        parent[last].append(random_value(rng))
    else:
        parent[last] = rng.choice(ODD_STRINGS)
    return pod


def review(pod: Any, rng: random.Random) -> dict[str, Any]:
    return pod_review(
        pod,
        uid=f"fuzz-{rng.randrange(10**9)}",
        namespace=rng.choice(["hub", "hub", "hub", "ml", "elsewhere"]),
    )


def body_text(data: Any, rng: random.Random) -> bytes:
    """Mostly the JSON of `data`; sometimes text that only looks like it."""
    text = json.dumps(data).encode()
    roll = rng.random()
    if roll < 0.9:
        return text
    if roll < 0.93:
        return text[: rng.randrange(len(text))]
    if roll < 0.95:
        return text.replace(b'"hub"', rng.choice([b"NaN", b"Infinity", b"-Infinity"]), 1)
    if roll < 0.97:
        return text.replace(b'"hub"', b"1" * 4400, 1)
    if roll < 0.98:
        return text.replace(b"{", b"\xff{", 1)
    return b"[" * 5000 + text + b"]" * 5000


def strict(text: bytes) -> Any:
    def refuse(name: str) -> Any:
        raise AssertionError(f"{name} in an answer")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def client() -> FlaskClient:
    return create_app(
        golden_index(), Config(max_request_bytes=1 << 20), None, Metrics()
    ).test_client()


def test_hostile_reviews_get_400_or_a_valid_answer(client: FlaskClient) -> None:
    rng = random.Random(SEED)
    outcomes = {200: 0, 400: 0, "patched": 0}
    for n in range(COUNT):
        pod = json.loads(json.dumps(rng.choice(PODS)))
        for _ in range(rng.choice((1, 1, 1, 2, 3))):  # few edits: most reviews go deep
            pod = edit(pod, rng)
        sent = review(pod, rng)
        reply = client.post("/mutate", data=body_text(sent, rng), content_type="application/json")
        where = f"review {n} (FUZZ_SEED={SEED})"
        assert reply.status_code in (200, 400), f"{where}: HTTP {reply.status_code}"
        outcomes[reply.status_code] += 1
        answer = strict(reply.get_data())
        if reply.status_code == 400:
            assert error_message(answer, 400), where
            continue
        assert answer["kind"] == "AdmissionReview", where
        response = answer["response"]
        assert response["uid"] == sent["request"]["uid"], where
        assert isinstance(response["allowed"], bool), where
        # A pod of the checked shape never trips the rules (that would skip the injection).
        assert "internal error" not in json.dumps(response), f"{where}: {response}"
        if "patch" not in response:
            continue
        outcomes["patched"] += 1
        patch = strict(base64.b64decode(response["patch"]))
        # In place, on a copy: jsonpatch's own deepcopy recurses too deep for some of these pods.
        patched = jsonpatch.JsonPatch(patch).apply(json.loads(json.dumps(pod)), in_place=True)
        again = client.post(
            "/mutate",
            json=review(patched, rng) | {"request": {**sent["request"], "object": patched}},
        )
        assert again.status_code == 200, where
        second = strict(again.get_data())["response"]
        assert second["allowed"] and "patch" not in second, f"{where}: second pass changed it"
    # The generator must reach both sides, or it tests nothing.
    assert outcomes[400] > COUNT / 20 and outcomes["patched"] > COUNT / 10, outcomes


def test_hostile_setting_reviews_get_400_or_a_verdict(client: FlaskClient) -> None:
    rng = random.Random(SEED)
    outcomes = {400: 0, "allowed": 0, "refused": 0}
    for n in range(COUNT):
        setting = json.loads(json.dumps(rng.choice(SETTINGS)))
        for _ in range(rng.choice((0, 1, 1, 2, 3))):
            setting = edit(setting, rng)
        sent = {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": f"fuzz-{n}",
                "kind": {"group": API_GROUP, "version": API_VERSION, "kind": KIND},
                "resource": {"group": API_GROUP, "version": API_VERSION, "resource": PLURAL},
                "namespace": rng.choice(["hub", "ml", "fresh"]),
                "operation": rng.choice(["CREATE", "UPDATE"]),
                "object": setting,
            },
        }
        reply = client.post("/validate", data=body_text(sent, rng), content_type="application/json")
        where = f"setting review {n} (FUZZ_SEED={SEED})"
        assert reply.status_code in (200, 400), f"{where}: HTTP {reply.status_code}"
        answer = strict(reply.get_data())
        if reply.status_code == 400:
            assert error_message(answer, 400), where
            outcomes[400] += 1
            continue
        response = answer["response"]
        assert response["uid"] == sent["request"]["uid"], where
        assert "internal error" not in json.dumps(response), f"{where}: {response}"
        if response["allowed"]:
            outcomes["allowed"] += 1
        else:
            assert response["status"]["message"], where
            outcomes["refused"] += 1
    assert min(outcomes.values()) > COUNT / 20, outcomes
