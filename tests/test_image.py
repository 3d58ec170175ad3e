"""What can be checked of the image without a Docker engine: the command it runs exists and
starts, its user fits the manifests, and one image serves both the webhook and the init
container."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import yaml

from webhook.cli import parser
from webhook.inject.model_init import SECURITY_CONTEXT

ROOT = Path(__file__).parent.parent
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def instruction(name: str) -> str:
    found = re.findall(rf"^{name} (.+)$", DOCKERFILE, flags=re.M)
    assert found, name
    return str(found[-1])


def test_entrypoint_and_default_command_parse() -> None:
    assert json.loads(instruction("ENTRYPOINT")) == ["mlflow-webhook"]
    args = parser().parse_args(json.loads(instruction("CMD")))
    assert args.command == "serve" and args.cluster and args.host == "0.0.0.0"


def test_the_deployment_args_and_the_init_container_command_parse() -> None:
    docs = list(yaml.safe_load_all((ROOT / "manifests/base/deployment.yaml").read_text()))
    container = docs[0]["spec"]["template"]["spec"]["containers"][0]
    args = parser().parse_args(container["args"])
    assert args.cluster and args.cert_file and args.config
    init = parser().parse_args(["copy-artifacts", "models:/m/1", "/mnt/models"])
    assert init.command == "copy-artifacts"


def test_the_image_user_is_numeric_non_root_and_matches_the_manifests() -> None:
    user = instruction("USER").split(":")[0]
    assert user.isdigit() and int(user) != 0
    docs = list(yaml.safe_load_all((ROOT / "manifests/base/deployment.yaml").read_text()))
    assert docs[0]["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == int(user)
    assert SECURITY_CONTEXT["runAsNonRoot"] is True


def test_the_console_script_starts_with_what_both_roles_import() -> None:
    for args in (["--help"], ["copy-artifacts", "--help"], ["serve", "--help"]):
        result = subprocess.run(
            [sys.executable, "-m", "webhook", *args], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stderr
    imports = "import webhook.serve, webhook.copier.command, mlflow.artifacts, boto3"
    assert subprocess.run([sys.executable, "-c", imports], timeout=120).returncode == 0
