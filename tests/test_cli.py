"""`mlflow-webhook preview`: what an admin sees before any pod is created."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.procs import free_port

ROOT = Path(__file__).parent.parent
SETTINGS = ROOT / "examples" / "settings.yaml"


def preview(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "webhook",
            "preview",
            "--settings-file",
            str(SETTINGS),
            *map(str, args),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_preview_prints_the_mutated_deployment() -> None:
    result = preview(ROOT / "examples" / "pods" / "deployment.yaml")
    assert result.returncode == 0, result.stderr
    pod = yaml.safe_load(result.stdout)
    init = pod["spec"]["initContainers"][-1]
    assert init["command"] == [
        "mlflow-webhook",
        "copy-artifacts",
        "models:/churn model/3",
        "/mnt/models",
    ]
    assert pod["spec"]["containers"][0]["volumeMounts"] == [
        {"name": "mlflow-model", "mountPath": "/mnt/models", "readOnly": True}
    ]
    assert "&id" not in result.stdout  # no YAML anchors: every object is its own


def test_preview_patch_is_json() -> None:
    result = preview("--patch", ROOT / "examples" / "pods" / "job.yaml")
    ops = json.loads(result.stdout)
    assert {op["op"] for op in ops} == {"add"}
    assert any(op["path"] == "/spec/volumes" for op in ops)


def test_preview_of_a_denied_pod_exits_1_with_the_reason(tmp_path: Path) -> None:
    pod = yaml.safe_load((ROOT / "examples" / "pods" / "deployment.yaml").read_text())
    pod["metadata"]["namespace"] = "team-b"
    f = tmp_path / "pod.yaml"
    f.write_text(yaml.safe_dump(pod))
    result = preview(f)
    assert result.returncode == 1
    assert (
        "Denied: mlflow webhook: cannot deploy the model: no MLflowSetting for group "
        "'Research_Team' in namespace 'team-b'" in result.stderr
    )
    assert result.stdout == ""


def test_preview_namespace_flag_and_warning(tmp_path: Path) -> None:
    result = preview("--namespace", "team-b", ROOT / "examples" / "pods" / "notebook.yaml")
    assert result.returncode == 0
    assert "Warning: mlflow webhook: MLflow settings not injected" in result.stderr
    assert "MLFLOW_TRACKING_URI" not in result.stdout


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "webhook", *args], capture_output=True, text=True, timeout=60
    )


SETTING = (
    "apiVersion: mlflow.primehub.io/v1alpha1\nkind: {kind}\nmetadata: {{name: {name}}}\n"
    "spec: {{group: g{name}, trackingUri: 'http://m'}}\n"
)
FILES = {
    "not-utf8.yaml": b"\xff\xfe\x00",
    "a-string.yaml": b"just a string\n",
    "misspelled-kind.yaml": SETTING.format(kind="MlflowSetting", name="a").encode(),
    "empty.yaml": b"",
    "same-name.yaml": (
        SETTING.format(kind="MLflowSetting", name="a")
        + "---\n"
        + SETTING.format(kind="MLflowSetting", name="a")
    ).encode(),
    "with-a-secret.yaml": (
        "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\n---\n"
        + SETTING.format(kind="MLflowSetting", name="a")
    ).encode(),
    "no-cluster.kubeconfig": b"apiVersion: v1\nkind: Config\n",
    "max-request-zero.yaml": b"maxRequestBytes: 0\n",
}


@pytest.fixture
def files(tmp_path: Path) -> Path:
    for name, data in FILES.items():
        (tmp_path / name).write_bytes(data)
    return tmp_path


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["serve", "--settings-file", "{d}/not-utf8.yaml"], "not-utf8.yaml: not UTF-8 text"),
        (["serve", "--settings-file", "{d}/a-string.yaml"], "document 1: MLflowSetting ?:"),
        (
            ["serve", "--settings-file", "{d}/misspelled-kind.yaml"],
            "document 1: MLflowSetting hub/a: apiVersion/kind: expected "
            "mlflow.primehub.io/v1alpha1 MLflowSetting, got mlflow.primehub.io/v1alpha1 "
            "MlflowSetting",
        ),
        (["serve", "--settings-file", "{d}/empty.yaml"], "empty.yaml:\n  holds no MLflowSetting"),
        (
            ["serve", "--settings-file", "{d}/same-name.yaml"],
            "document 2: MLflowSetting hub/a is also document 1",
        ),
        (["serve", "--settings-file", "{d}/missing.yaml"], "missing.yaml: No such file"),
        (
            ["serve", "--config", "{d}/max-request-zero.yaml", "--settings-file", str(SETTINGS)],
            "maxRequestBytes: must be at least 65536",
        ),
        (["serve", "--settings-file", str(SETTINGS), "--port", "70000"], "not between 1 and 65535"),
        (["serve", "--settings-file", str(SETTINGS), "--workers", "0"], "not between 1 and 64"),
        (["serve", "--settings-file", str(SETTINGS), "--log-level", "bogus"], "invalid choice"),
        (
            ["serve", "--settings-file", str(SETTINGS), "--cert-dir", "/proc/none"],
            "--cert-dir /proc/none: cannot make a certificate there",
        ),
        (["serve", "--cluster"], "--cluster: not running in a cluster (no service account)"),
        (
            ["serve", "--cluster", "--kubeconfig", "{d}/no-cluster.kubeconfig"],
            "no-cluster.kubeconfig: names no current-context (no cluster)",
        ),
        (["preview", "--settings-file", str(SETTINGS), "{d}/missing.yaml"], "No such file"),
        (["preview", "--settings-file", str(SETTINGS), "{d}/not-utf8.yaml"], "not UTF-8"),
        (
            ["preview", "--settings-file", str(SETTINGS), "{d}/with-a-secret.yaml"],
            "expected one Pod object",
        ),
        (["copy-artifacts", "models:/m/1", "{d}/out", "--timeout", "nan"], "not between 1"),
    ],
)
def test_bad_input_is_one_clear_line_and_a_non_zero_exit(
    files: Path, args: list[str], words: str
) -> None:
    result = run(*(a.format(d=files) for a in args))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert words in result.stderr
    assert "certificate for localhost" not in result.stderr  # refused before anything started


def test_a_settings_file_may_carry_the_secrets_it_refers_to(files: Path) -> None:
    result = run(
        "preview",
        "--settings-file",
        str(files / "with-a-secret.yaml"),
        str(ROOT / "examples" / "pods" / "job.yaml"),
    )
    assert result.returncode == 0, result.stderr


def test_the_certificate_keeper_without_an_api_server_is_one_line_and_exit_1(
    tmp_path: Path,
) -> None:
    port = free_port()  # nothing listens there
    config = tmp_path / "kubeconfig"
    config.write_text(f"""apiVersion: v1
kind: Config
current-context: c
contexts: [{{name: c, context: {{cluster: k, user: u}}}}]
clusters: [{{name: k, cluster: {{server: "https://127.0.0.1:{port}"}}}}]
users: [{{name: u, user: {{token: abc}}}}]
""")
    result = run("certs", "ensure", "--kubeconfig", str(config))
    assert result.returncode == 1, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert f"no answer from the API server https://127.0.0.1:{port}" in result.stderr
    assert "abc" not in result.stderr
