"""The image: built from the Dockerfile without a Docker engine (tests/image/build.sh: a Debian
base by mmdebstrap, buildah), run as its user with a read-only root and /tmp writable
(tests/image/run.sh): `serve` answers a review and `copy-artifacts` copies a model from the real
MLflow server. And what the Dockerfile promises: the command, the user the manifests expect."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml

from tests.conftest import Stores
from tests.procs import free_port, running, wait_until
from tests.registry import tree
from webhook.cli import parser
from webhook.config import Config
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
    assert Config().model_init.run_as_user == int(user)  # what the init container runs as


def test_the_console_script_starts_with_what_both_roles_import() -> None:
    for args in (["--help"], ["copy-artifacts", "--help"], ["serve", "--help"]):
        result = subprocess.run(
            [sys.executable, "-m", "webhook", *args], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stderr
    imports = "import webhook.serve, webhook.copier.command, mlflow.artifacts, boto3"
    assert subprocess.run([sys.executable, "-c", imports], timeout=120).returncode == 0


@pytest.fixture(scope="module")
def rootfs() -> Iterator[Path]:
    """The image built from the Dockerfile (tests/image/build.sh, cached), its root filesystem
    mounted by buildah."""
    image = (
        os.environ.get("TEST_IMAGE")
        or subprocess.run(
            [str(ROOT / "tests" / "image" / "build.sh")], capture_output=True, text=True, check=True
        ).stdout.strip()
    )
    ctr = subprocess.run(
        ["buildah", "from", "--pull=never", image], capture_output=True, text=True, check=True
    ).stdout.strip()
    try:
        mounted = subprocess.run(
            ["buildah", "mount", ctr], capture_output=True, text=True, check=True
        ).stdout.strip()
        yield Path(mounted)
    finally:
        subprocess.run(["buildah", "umount", ctr], capture_output=True)
        subprocess.run(["buildah", "rm", ctr], capture_output=True)


def in_image(rootfs: Path, tmp: Path, *args: str, env: dict[str, str] | None = None) -> list[str]:
    """The command line that runs `args` in the image as its user, root read-only, `tmp` at
    /tmp (tests/image/run.sh)."""
    tmp.chmod(0o1777)
    pass_env = " ".join(f"{k}={v}" for k, v in (env or {}).items())
    return [
        "env",
        f"PASS_ENV={pass_env}",
        str(ROOT / "tests" / "image" / "run.sh"),
        str(rootfs),
        str(tmp),
        *args,
    ]


def test_serve_from_the_image_answers_a_review(rootfs: Path, tmp_path: Path) -> None:
    (tmp_path / "settings.yaml").write_text((ROOT / "examples" / "settings.yaml").read_text())
    port = free_port()
    args = in_image(
        rootfs, tmp_path, "mlflow-webhook", "serve", "--settings-file=/tmp/settings.yaml",
        "--cert-dir=/tmp/certs", f"--port={port}", "--shutdown-delay=0",
    )  # fmt: skip
    with running(args, tmp_path.parent / "image-serve.log") as proc:
        url = f"https://127.0.0.1:{port}"
        ca = tmp_path / "certs" / "ca.crt"
        wait_until(
            lambda: requests.get(f"{url}/readyz", verify=ca, timeout=2).ok, 60, "serve", proc
        )
        review = json.loads((ROOT / "examples" / "admission-review.json").read_text())
        answer = requests.post(f"{url}/mutate", json=review, verify=ca, timeout=10).json()
        assert answer["response"]["allowed"] and answer["response"]["patchType"] == "JSONPatch"
    # Written only under /tmp (the root is read-only): the certificate and what it left there.
    assert sorted(p.name for p in (tmp_path / "certs").iterdir()) == [
        "ca.crt",
        "tls.crt",
        "tls.key",
    ]


@pytest.mark.parametrize(("name", "s3"), [("churn model", False), ("fraud", True)])
def test_copy_artifacts_from_the_image_copies_a_model(
    rootfs: Path, tmp_path: Path, stores: Stores, name: str, s3: bool
) -> None:
    """From the tracking server's artifact proxy, and from S3 with the image's s5cmd."""
    env = {"MLFLOW_TRACKING_URI": stores.mlflow.url, **(stores.s3.env if s3 else {})}
    result = subprocess.run(
        in_image(
            rootfs, tmp_path, "mlflow-webhook", "copy-artifacts", f"models:/{name}/1",
            "/tmp/models", env=env,
        ),
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert ("from s3://" in result.stderr) is s3
    assert tree(tmp_path / "models") == stores.models.versions[name]["1"]


def test_the_image_carries_none_of_the_test_only_packages(rootfs: Path) -> None:
    """What only the tests use (jsonpatch among them: the webhook makes its own patches) stays
    out of the image."""
    import tomllib

    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]["test"]
    test_only = {
        re.split(r"[=<>\[ ]", req, maxsplit=1)[0].lower().replace("-", "_") for req in extra
    }
    installed = {
        p.name.split("-")[0].lower()
        for p in rootfs.glob("opt/venv/lib/python3*/site-packages/*.dist-info")
    }
    assert "primehub_mlflow_webhook" in installed and "flask" in installed
    assert not test_only & installed, sorted(test_only & installed)
