"""Reading the files an admin gives (configuration, settings, kubeconfig, tokens) with one kind
of error: the file named and the cause in a few words, never a traceback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from webhook.brief import brief

# libyaml when PyYAML has it: ten times faster on a file of thousands of settings.
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class FileProblem(ValueError):
    """The file cannot be read; the message names it and says why."""


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise FileProblem(f"{path}: not UTF-8 text") from None
    except OSError as e:
        raise FileProblem(f"{path}: {e.strerror or e}") from None


def load_yaml(path: Path, *, all_documents: bool = False) -> Any:
    """The file's one YAML document, or with `all_documents` the list of them."""
    text = read_text(path)
    try:
        if all_documents:
            return list(yaml.load_all(text, Loader=LOADER))
        return yaml.load(text, Loader=LOADER)
    except yaml.YAMLError as e:
        raise FileProblem(f"{path}: not valid YAML: {brief(str(e))}") from None
