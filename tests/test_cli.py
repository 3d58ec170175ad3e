"""`mlflow-webhook preview`: what an admin sees before any pod is created."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

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
