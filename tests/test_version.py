"""One version, written once (`webhook/__init__.py`): the installed package's metadata,
`mlflow-webhook --version`, every image tag the manifests name, the Helm chart's `version` and
`appVersion`, and the newest release in CHANGELOG.md all say it. An admin upgrading reads one
number everywhere."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import yaml

from webhook import __version__

ROOT = Path(__file__).parent.parent


def test_the_package_metadata_and_the_command_say_the_module_s_version() -> None:
    assert version("primehub-mlflow-webhook") == __version__
    shown = subprocess.run(
        [sys.executable, "-m", "webhook", "--version"], capture_output=True, text=True, check=True
    )
    assert shown.stdout.strip() == __version__


def test_every_image_the_manifests_name_is_this_version_s() -> None:
    tags = {
        (str(path.relative_to(ROOT)), tag)
        for path in (ROOT / "manifests").rglob("*")
        if path.is_file() and path.suffix in (".yaml", ".yml", ".tpl", ".json")
        for tag in re.findall(r"primehub/mlflow-webhook:([\w.-]+)", path.read_text())
    }
    assert tags, "no image named in manifests/"
    assert {(where, tag) for where, tag in tags if tag != __version__} == set()


def test_the_chart_is_this_version() -> None:
    chart = yaml.safe_load((ROOT / "manifests" / "chart" / "Chart.yaml").read_text())
    assert (chart["version"], chart["appVersion"]) == (__version__, __version__)


def test_the_changelog_s_newest_release_is_this_version() -> None:
    releases = re.findall(r"^## \[(\d+\.\d+\.\d+)\]", (ROOT / "CHANGELOG.md").read_text(), re.M)
    assert releases and releases[0] == __version__
