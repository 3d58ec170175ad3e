"""Shared by the golden tests and the property tests: the settings and cases under golden/."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from webhook.config import Config
from webhook.settings.index import SettingsIndex

GOLDEN = Path(__file__).parent / "golden"
CASES = sorted((GOLDEN / "cases").glob("*.yaml"))


def golden_index() -> SettingsIndex:
    index = SettingsIndex(Config().default_namespace)
    docs = yaml.safe_load_all((GOLDEN / "settings.yaml").read_text())
    index.replace_entries(index.entry(d) for d in docs if d)
    return index


def load_case(path: Path) -> dict[str, Any]:
    case: dict[str, Any] = yaml.safe_load(path.read_text())
    return case
