"""/mutate and the other endpoints over HTTP, through the Flask app."""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

import jsonpatch
import pytest
import yaml
from flask.testing import FlaskClient

from tests.golden import GOLDEN, golden_index
from tests.reviews import error_message, pod_review
from webhook.config import Config
from webhook.metrics import Metrics
from webhook.server import create_app

POD = yaml.safe_load((GOLDEN / "cases" / "notebook-external.yaml").read_text())["pod"]
DEPLOYMENT = yaml.safe_load((GOLDEN / "cases" / "no-setting-deployment.yaml").read_text())["pod"]


def review(pod: Any = POD, version: str = "v1", **request: Any) -> dict[str, Any]:
    return pod_review(pod, version, **request)


class Switch:
    """Health as the tests set it: the server's readiness and this process's settings."""

    def __init__(self) -> None:
        self.is_ready = True
        self.synced = True
        self.failing: str | None = None

    def ready(self) -> bool:
        return self.is_ready

    def wait_synced(self, timeout: float) -> bool:
        return self.synced

    def workers(self) -> dict[str, int]:
        return {}

    def settings_age(self) -> float | None:
        return None

    def doubt(self) -> str | None:
        return self.failing


@pytest.fixture
def health() -> Switch:
    return Switch()


@pytest.fixture
def client(health: Switch) -> FlaskClient:
    config = Config(max_request_bytes=64 * 1024)
    app = create_app(golden_index(), config, health, Metrics())
    return app.test_client()


def test_a_notebook_gets_a_patch_that_gives_the_mutated_pod(client: FlaskClient) -> None:
    r = client.post("/mutate", json=review())
    assert r.status_code == 200
    body = r.get_json()
    assert body["apiVersion"] == "admission.k8s.io/v1" and body["kind"] == "AdmissionReview"
    answer = body["response"]
    assert answer["uid"] == "705ab4f5-6393-11e8-b7cc-42010a800002" and answer["allowed"]
    assert answer["patchType"] == "JSONPatch"
    patched = jsonpatch.apply_patch(POD, json.loads(base64.b64decode(answer["patch"])))
    env = {e["name"]: e for e in patched["spec"]["containers"][0]["env"]}
    assert env["MLFLOW_TRACKING_URI"]["value"] == "https://mlflow.research.example.com"
    assert (
        env["MLFLOW_TRACKING_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"]
        == "research-mlflow-login"
    )
    assert patched["metadata"]["annotations"]["mlflow.primehub.io/injected"] == "hub/research-team"


def test_v1beta1_is_answered_in_kind_and_dry_run_the_same(client: FlaskClient) -> None:
    v1 = client.post("/mutate", json=review()).get_json()["response"]
    beta = client.post("/mutate", json=review(version="v1beta1", dryRun=True)).get_json()
    assert beta["apiVersion"] == "admission.k8s.io/v1beta1"
    assert beta["response"]["patch"] == v1["patch"]


def test_a_denied_deployment_carries_the_reason(client: FlaskClient) -> None:
    answer = client.post("/mutate", json=review(DEPLOYMENT)).get_json()["response"]
    assert answer["allowed"] is False and "patch" not in answer
    assert answer["status"]["code"] == 403
    assert "no MLflowSetting for group 'nomlflow' in namespace 'hub'" in answer["status"]["message"]


def test_a_target_that_gets_nothing_is_warned(client: FlaskClient) -> None:
    answer = client.post("/mutate", json=review(namespace="elsewhere")).get_json()["response"]
    assert answer["allowed"] and "patch" not in answer
    assert answer["warnings"] == [
        "mlflow webhook: MLflow settings not injected: no MLflowSetting for group "
        "'Research_Team' in namespace 'elsewhere', nor one without a group for the whole "
        "namespace"
    ]


def test_while_the_settings_source_fails_no_pod_is_told_there_is_no_setting(
    client: FlaskClient, health: Switch
) -> None:
    """A setting created since the last list would be missed: a pod of a group with no known
    setting gets an error, which failurePolicy handles (a model deployment is refused and
    retried by its controller), saying why; a pod whose setting is known still gets it."""
    health.failing = "the webhook cannot watch mlflowsettings (HTTP 403), failing since 10:00:00"
    for pod, namespace in ((POD, "elsewhere"), (DEPLOYMENT, "hub")):
        r = client.post("/mutate", json=review(pod, namespace=namespace))
        assert r.status_code == 503
        message = error_message(r.get_json(), 503)
        assert message.startswith("mlflow webhook: cannot tell this pod's MLflow settings: no ")
        assert "but the webhook cannot watch mlflowsettings (HTTP 403), failing since" in message
    answer = client.post("/mutate", json=review()).get_json()["response"]
    assert answer["allowed"] and answer["patchType"] == "JSONPatch"
    text = client.get("/metrics").get_data(as_text=True)
    for kind in ("notebook", "deployment"):
        assert (
            f'mlflow_webhook_admission_requests_total{{outcome="unsure",pod_kind="{kind}"}} 1.0'
            in text
        )
    health.failing = None  # listed again: the same pods get a confident answer
    answer = client.post("/mutate", json=review(namespace="elsewhere")).get_json()["response"]
    assert answer["allowed"] and "not injected" in answer["warnings"][0]


@pytest.mark.parametrize(
    "request_fields",
    [
        {"operation": "UPDATE"},
        {"operation": "CONNECT", "subResource": "exec"},
        {
            "resource": {"group": "", "version": "v1", "resource": "configmaps"},
            "kind": {"group": "", "version": "v1", "kind": "ConfigMap"},
        },
        {"subResource": "ephemeralcontainers"},
    ],
)
def test_other_objects_and_operations_pass_untouched(
    client: FlaskClient, request_fields: dict[str, Any]
) -> None:
    answer = client.post("/mutate", json=review(**request_fields)).get_json()["response"]
    assert answer == {"uid": "705ab4f5-6393-11e8-b7cc-42010a800002", "allowed": True}


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "body is not JSON"),
        (b"\xff\xfe", "body is not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}', "missing request"),
        (
            b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {}}',
            "missing request.uid",
        ),
        (b'{"apiVersion": "v1", "kind": "Pod"}', "expected kind AdmissionReview"),
        (b'{"a": "' + b"x" * 70_000 + b'"}', "body larger than 65536 bytes"),
    ],
)
def test_malformed_bodies_get_400_with_a_reason(
    client: FlaskClient, body: bytes, reason: str
) -> None:
    r = client.post("/mutate", data=body, content_type="application/json")
    assert r.status_code == 400
    assert reason.lower() in error_message(r.get_json(), 400).lower()


JOB_LABELS = {"app": "primehub-job", "primehub.io/group": "escaped-phusers"}


def test_null_fields_count_as_absent(client: FlaskClient) -> None:
    for pod in (
        {"metadata": None, "spec": None},
        {"metadata": {"labels": JOB_LABELS, "annotations": None}, "spec": {"containers": None}},
    ):
        r = client.post("/mutate", json=review(pod))
        assert r.status_code == 200, pod
        assert r.get_json()["response"]["allowed"] is True


@pytest.mark.parametrize(
    ("pod", "reason"),
    [
        ("a string", "request.object: expected an object"),
        ({"metadata": []}, "request.object.metadata: expected an object"),
        ({"metadata": {"labels": "x"}}, "request.object.metadata.labels: expected an object of"),
        ({"metadata": {"labels": {"a": 1}}}, "metadata.labels: expected an object of strings"),
        (
            {"metadata": {"labels": JOB_LABELS}, "spec": {"containers": ["not-a-dict"]}},
            "request.object.spec.containers[0]: expected an object",
        ),
        ({"spec": {"containers": [None]}}, "spec.containers[0]: expected a value, not null"),
        ({"spec": {"volumes": [{"emptyDir": {}}]}}, "spec.volumes[0].name: required"),
        (
            {"spec": {"containers": [{"name": "c", "env": [{"name": 5}]}]}},
            "spec.containers[0].env[0].name: expected str",
        ),
    ],
)
def test_pods_of_another_shape_get_400_naming_the_field(
    client: FlaskClient, pod: Any, reason: str
) -> None:
    r = client.post("/mutate", json=review(pod))
    assert r.status_code == 400
    assert reason in error_message(r.get_json(), 400)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (json.dumps(review({**POD, "x": float("nan")})).encode(), "NaN is not a JSON value"),
        (b'{"a": ' + b"1" * 5000 + b"}", "body is not JSON"),
        (b"[" * 20_000 + b"]" * 20_000, "nested too deeply"),
    ],
)
def test_bodies_python_would_choke_on_get_400(
    client: FlaskClient, body: bytes, reason: str
) -> None:
    r = client.post("/mutate", data=body, content_type="application/json")
    assert r.status_code == 400
    assert reason in error_message(r.get_json(), 400)


def test_not_synced_gives_503_so_failure_policy_decides(
    client: FlaskClient, health: Switch
) -> None:
    health.synced = False
    r = client.post("/mutate", json=review())
    assert r.status_code == 503
    assert "not loaded yet" in error_message(r.get_json(), 503)
    # A setting cannot be checked for a duplicate group either; both count as not-ready.
    r = client.post("/validate", json=setting_review("fresh", "fresh"))
    assert r.status_code == 503
    assert "not loaded yet" in error_message(r.get_json(), 503)
    text = client.get("/metrics").get_data(as_text=True)
    assert (
        'mlflow_webhook_admission_requests_total{outcome="not-ready",pod_kind="none"} 2.0' in text
    )


def test_wrong_method_and_path_are_json_errors(client: FlaskClient) -> None:
    r = client.get("/mutate")
    assert r.status_code == 405 and error_message(r.get_json(), 405)
    r = client.get("/nope")
    assert r.status_code == 404 and error_message(r.get_json(), 404)


def test_readyz_follows_the_server(client: FlaskClient, health: Switch) -> None:
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    health.is_ready = False
    assert client.get("/readyz").status_code == 503
    assert client.get("/healthz").status_code == 200


def test_metrics_count_by_outcome_and_kind(client: FlaskClient) -> None:
    client.post("/mutate", json=review())
    client.post("/mutate", json=review(DEPLOYMENT))
    text = client.get("/metrics").get_data(as_text=True)
    assert (
        'mlflow_webhook_admission_requests_total{outcome="injected",pod_kind="notebook"} 1.0'
        in text
    )
    assert (
        'mlflow_webhook_admission_requests_total{outcome="denied",pod_kind="deployment"} 1.0'
        in text
    )
    assert "mlflow_webhook_admission_duration_seconds_count 2.0" in text
    assert "mlflow_webhook_settings_loaded 13.0" in text  # tests/golden/settings.yaml
    assert "mlflow_webhook_settings_invalid 1.0" in text
    assert "mlflow_webhook_settings_conflicts 1.0" in text  # dup-a and dup-b


def test_one_log_line_per_request_without_values(
    client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    pod = json.loads(json.dumps(POD))
    pod["spec"]["containers"][0]["env"].append({"name": "AWS_SECRET_ACCESS_KEY", "value": "s3cr3t"})
    with caplog.at_level(logging.INFO, logger="webhook.requests"):
        client.post("/mutate", json=review(pod))
    lines = [r.getMessage() for r in caplog.records if r.name == "webhook.requests"]
    assert len(lines) == 1
    line = json.loads(lines[0])
    assert line["uid"] == "705ab4f5-6393-11e8-b7cc-42010a800002"
    assert (line["kind"], line["group"], line["outcome"]) == (
        "notebook",
        "Research_Team",
        "injected",
    )
    assert line["ms"] > 0
    assert "s3cr3t" not in caplog.text


def setting_review(name: str, group: str, operation: str = "CREATE", **spec: Any) -> dict[str, Any]:
    obj = {
        "apiVersion": "mlflow.primehub.io/v1alpha1",
        "kind": "MLflowSetting",
        "metadata": {"name": name, "namespace": "hub"},
        "spec": {"group": group, "trackingUri": "http://mlflow:5000", **spec},
    }
    return review(
        obj,
        operation=operation,
        kind={"group": "mlflow.primehub.io", "version": "v1alpha1", "kind": "MLflowSetting"},
        resource={
            "group": "mlflow.primehub.io",
            "version": "v1alpha1",
            "resource": "mlflowsettings",
        },
    )


def test_a_second_setting_for_a_claimed_group_is_refused_naming_the_first(
    client: FlaskClient,
) -> None:
    answer = client.post("/validate", json=setting_review("other", "phusers")).get_json()
    assert answer["response"]["allowed"] is False
    assert (
        "MLflowSetting hub/other: spec.group: group 'phusers' is already claimed in namespace "
        "hub by hub/phusers" in answer["response"]["status"]["message"]
    )
    # The setting that holds the group may change; a new group is welcome.
    assert client.post("/validate", json=setting_review("phusers", "phusers", "UPDATE")).get_json()[
        "response"
    ]["allowed"]
    assert client.post("/validate", json=setting_review("fresh", "fresh")).get_json()["response"][
        "allowed"
    ]


def test_a_setting_is_judged_by_the_parser_that_reads_it(client: FlaskClient) -> None:
    bad = setting_review("x", "x", uiUrl="https://user:hunter2@ui")
    answer = client.post("/validate", json=bad).get_json()["response"]
    assert answer["allowed"] is False
    assert (
        "MLflowSetting hub/x: spec.uiUrl: must be an http(s):// URL" in answer["status"]["message"]
    )
    assert "hunter2" not in json.dumps(answer)
