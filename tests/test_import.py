"""`mlflow-webhook import-primehub`: from PrimeHub's group settings (its GraphQL answer) to
MLflowSettings and Secrets that the API server accepts and that give a pod the very variables
PrimeHub gave it, with credentials by reference."""

from __future__ import annotations

import base64
import contextlib
import copy
import http.server
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cluster import Installed
from tests.podrun import resolve_env
from webhook.config import Config
from webhook.groups import escape_group
from webhook.mutation import decide
from webhook.settings.index import SettingsIndex

# What PrimeHub's GraphQL API answers for `groups { name mlflow { ... } }` (recorded shape).
ANSWER: dict[str, Any] = {
    "data": {
        "groups": [
            {
                "name": "Research_Team",
                "mlflow": {
                    "trackingUri": "https://mlflow.research.example.com",
                    "uiUrl": "https://mlflow-ui.research.example.com",
                    "trackingEnvs": [
                        {"name": "MLFLOW_TRACKING_USERNAME", "value": "alice-ml"},
                        {"name": "MLFLOW_TRACKING_PASSWORD", "value": "pa=ss==word"},
                        {"name": "MLFLOW_TRACKING_INSECURE_TLS", "value": "false"},
                    ],
                    "artifactEnvs": [
                        {"name": "MLFLOW_S3_ENDPOINT_URL", "value": "https://s3.example.com"},
                        {"name": "AWS_ACCESS_KEY_ID", "value": "AKIAEXAMPLE"},
                        {"name": "AWS_SECRET_ACCESS_KEY", "value": "wJal/rXUt=nFEMI=="},
                        {"name": "AWS_DEFAULT_REGION", "value": "us-east-1"},
                        {"name": "S3_SIGNING_KEY_HINT", "value": "a=b"},
                    ],
                },
            },
            {
                "name": "phusers",
                "mlflow": {
                    "trackingUri": "http://app-mlflow-xyz12:5000",
                    "uiUrl": "https://hub.example.com/console/apps/mlflow-xyz12",
                    "trackingEnvs": [],
                    "artifactEnvs": [],
                },
            },
            {
                "name": "data_science",
                "mlflow": {
                    "trackingUri": "https://ds:t0p=secret@mlflow.ds.example.com",
                    "uiUrl": None,
                    "trackingEnvs": [
                        {"name": "1NOT_A_NAME", "value": "x"},
                        {"name": "MLFLOW_TRACKING_URI", "value": "http://elsewhere"},
                    ],
                    "artifactEnvs": None,
                },
            },
            {"name": "nomlflow", "mlflow": None},
            {"name": "empty", "mlflow": {"trackingUri": "", "uiUrl": "", "trackingEnvs": []}},
        ]
    }
}
SECRET_VALUES = ["pa=ss==word", "AKIAEXAMPLE", "wJal/rXUt=nFEMI==", "t0p=secret", "alice-ml"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "webhook", "import-primehub", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def answer_file(tmp_path: Path) -> Path:
    f = tmp_path / "answer.json"
    f.write_text(json.dumps(ANSWER))
    return f


def imported(result: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def test_settings_and_secrets_from_a_saved_answer(answer_file: Path) -> None:
    result = run("--from-file", str(answer_file), "--namespace", "hub")
    objects = imported(result)
    kinds = [(o["kind"], o["metadata"]["name"]) for o in objects]
    assert kinds == [  # by group name
        ("Secret", "research-team-mlflow"),
        ("MLflowSetting", "research-team"),
        ("Secret", "data-science-mlflow"),
        ("MLflowSetting", "data-science"),
        ("MLflowSetting", "phusers"),
    ]
    by_name = {(o["kind"], o["metadata"]["name"]): o for o in objects}
    research = by_name[("MLflowSetting", "research-team")]["spec"]
    plain = {e["name"]: e.get("value") for e in research["artifactEnv"] + research["trackingEnv"]}
    assert plain["MLFLOW_S3_ENDPOINT_URL"] == "https://s3.example.com"
    assert plain["AWS_DEFAULT_REGION"] == "us-east-1"
    assert plain["MLFLOW_TRACKING_INSECURE_TLS"] == "false"
    for ref in ("AWS_SECRET_ACCESS_KEY", "MLFLOW_TRACKING_PASSWORD", "S3_SIGNING_KEY_HINT"):
        assert plain[ref] is None  # by reference
    secret = {
        k: base64.b64decode(v).decode()
        for k, v in by_name[("Secret", "research-team-mlflow")]["data"].items()
    }
    assert secret["MLFLOW_TRACKING_PASSWORD"] == "pa=ss==word"  # whole: PrimeHub cut at "="
    assert secret["AWS_SECRET_ACCESS_KEY"] == "wJal/rXUt=nFEMI=="
    assert by_name[("MLflowSetting", "phusers")]["spec"]["artifactVolume"] == {"groupVolume": True}
    ds = by_name[("MLflowSetting", "data-science")]["spec"]
    assert ds["trackingUri"] == "https://mlflow.ds.example.com"  # the login moved out
    # No credential value outside the Secrets.
    settings_text = yaml.safe_dump_all([o for o in objects if o["kind"] == "MLflowSetting"])
    assert not [v for v in SECRET_VALUES if v in settings_text]
    assert not [v for v in SECRET_VALUES if v in result.stderr]
    # Told, not dropped: groups without MLflow, and what could not be taken.
    assert "group nomlflow: no MLflow settings" in result.stderr
    assert "group empty: no MLflow settings" in result.stderr
    assert "group data_science: '1NOT_A_NAME' is not a valid variable name" in result.stderr
    assert "group data_science: MLFLOW_TRACKING_URI is set twice" in result.stderr
    assert "the login in trackingUri now comes from Secret data-science-mlflow" in result.stderr
    # Deterministic: the same answer gives the same manifests.
    assert run("--from-file", str(answer_file), "--namespace", "hub").stdout == result.stdout


def research_with(**mlflow: Any) -> dict[str, Any]:
    answer = copy.deepcopy(ANSWER)
    answer["data"]["groups"][0]["mlflow"].update(mlflow)
    return answer


def test_a_group_that_cannot_be_imported_is_named_and_fails_the_run(tmp_path: Path) -> None:
    """The rest is still written (to apply), but a script sees that not everything came over."""
    answer = json.loads(json.dumps(ANSWER))
    answer["data"]["groups"][1]["mlflow"]["trackingEnvs"] = [{"name": "..TOKEN", "value": "x"}]
    f = tmp_path / "answer.json"
    f.write_text(json.dumps(answer))
    result = run("--from-file", str(f))
    assert result.returncode == 1
    names = [d["metadata"]["name"] for d in yaml.safe_load_all(result.stdout) if d]
    assert "research-team" in names and "phusers" not in names
    assert "group phusers: not imported: " in result.stderr
    assert "'..TOKEN' is not a valid key of a Secret or ConfigMap" in result.stderr
    assert result.stderr.splitlines()[-1] == (
        "import-primehub: 1 group(s) with MLflow not imported: phusers"
    )


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (research_with(trackingEnvs="MLFLOW_X=1"), "mlflow.trackingEnvs: expected a list"),
        (research_with(artifactEnvs=[["AWS_ACCESS_KEY_ID", "AKIAEXAMPLE"]]), "artifactEnvs[0]"),
        (research_with(trackingEnvs=[{"name": "A", "value": 5}]), "trackingEnvs[0].value"),
        (research_with(trackingEnvs=[{"name": "P", "value": "t0p=secret\ud800"}]), "Unicode"),
        (research_with(trackingUri={"url": "http://x"}), "trackingUri: expected a string"),
        ({"data": {"groups": [{"name": 7, "mlflow": None}]}}, "a group's name"),
    ],
    ids=["env-not-a-list", "env-item", "env-value", "surrogate", "uri", "group-name"],
)
def test_an_answer_of_another_shape_is_one_line_naming_the_field(
    tmp_path: Path, answer: dict[str, Any], error: str
) -> None:
    f = tmp_path / "answer.json"
    f.write_text(json.dumps(answer))
    result = run("--from-file", str(f))
    assert result.returncode != 0 and not result.stdout
    assert result.stderr.count("\n") == 1 and error in result.stderr, result.stderr
    assert not [v for v in SECRET_VALUES if v in result.stderr]


@contextlib.contextmanager
def graphql_stand_in(answer: Any, token: str) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A small local HTTP server answering the recorded GraphQL response: it stands in for
    PrimeHub's GraphQL API, which cannot run here. It checks the bearer token as PrimeHub does."""
    seen: list[dict[str, Any]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append({"auth": self.headers.get("Authorization"), "body": body})
            ok = self.headers.get("Authorization") == f"Bearer {token}"
            reply = json.dumps(answer if ok else {"errors": [{"message": "unauthorized"}]})
            self.send_response(200 if ok else 401)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(reply.encode())

        def log_message(self, *_: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/api/graphql", seen
    finally:
        server.shutdown()


def test_the_graphql_api_is_asked_as_primehubs_controller_asks_it(
    tmp_path: Path, answer_file: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("graphql-secret\n")
    with graphql_stand_in(ANSWER, "graphql-secret") as (url, seen):
        result = run("--graphql-url", url, "--token-file", str(token_file))
    assert seen[0]["auth"] == "Bearer graphql-secret"
    assert "mlflow { trackingUri uiUrl trackingEnvs { name value }" in seen[0]["body"]["query"]
    assert imported(result) == imported(run("--from-file", str(answer_file)))
    token_file.write_text("wrong")
    with graphql_stand_in(ANSWER, "graphql-secret") as (url, _):
        refused = run("--graphql-url", url, "--token-file", str(token_file))
    assert refused.returncode == 2 and "Unauthorized" in refused.stderr
    assert "wrong" not in refused.stderr


def primehub_env(group: str) -> dict[str, str]:
    """What PrimeHub's BuildMlflowEnvironmentVariables gave a pod of the group (meant values:
    PrimeHub itself cut them at the first "=")."""
    mlflow = next(g for g in ANSWER["data"]["groups"] if g["name"] == group)["mlflow"]
    env = {"MLFLOW_TRACKING_URI": mlflow["trackingUri"], "MLFLOW_UI_URL": mlflow["uiUrl"]}
    for item in (mlflow["trackingEnvs"] or []) + (mlflow["artifactEnvs"] or []):
        env[item["name"]] = item["value"]
    return env


@pytest.mark.parametrize("group", ["Research_Team", "phusers"])
def test_a_pod_of_an_imported_group_sees_what_primehub_gave_it(
    answer_file: Path, tmp_path: Path, group: str
) -> None:
    objects = imported(run("--from-file", str(answer_file)))
    settings = tmp_path / "settings.yaml"
    settings.write_text(yaml.safe_dump_all(objects))
    index = SettingsIndex()
    from webhook.settings.sources import load_file

    load_file(settings, index)
    pod = {
        "metadata": {
            "name": "jupyter-alice",
            "labels": {"component": "singleuser-server", "primehub.io/group": escape_group(group)},
        },
        "spec": {"containers": [{"name": "notebook", "image": "nb"}]},
    }
    decision = decide(pod, "hub", index, Config())
    assert decision.pod is not None, decision
    env = resolve_env(decision.pod["spec"]["containers"][0], objects)
    env.pop("MLFLOW_RUN_CONTEXT")  # who ran what: ours, beside what PrimeHub gave
    assert env == primehub_env(group)


@pytest.mark.cluster
def test_the_api_server_accepts_what_is_imported(installed: Installed, answer_file: Path) -> None:
    result = run("--from-file", str(answer_file), "--namespace", "imported")
    objects = imported(result)
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "imported"}}
    applied = installed.apply([namespace, *objects])
    assert applied.returncode == 0, applied.stderr
    assert applied.stdout.count("mlflowsetting.mlflow.primehub.io/") == 3
