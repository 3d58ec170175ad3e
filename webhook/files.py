"""Reading the files an admin gives (configuration, settings, kubeconfig, tokens) with one kind
of error: the file named and the cause in a few words, never a traceback."""

from __future__ import annotations

from collections.abc import Iterator
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


def load_yaml(path: Path) -> Any:
    """The file's one YAML document."""
    text = read_text(path)
    try:
        return yaml.load(text, Loader=LOADER)
    except yaml.YAMLError as e:
        raise _not_yaml(path, e) from None


def iter_yaml(path: Path) -> Iterator[Any]:
    """The file's YAML documents, one at a time (FileProblem may come at any of them): a caller
    that keeps only what it needs of each lets the memory of one be reused for the next."""
    text = read_text(path)
    try:
        yield from yaml.load_all(text, Loader=LOADER)
    except yaml.YAMLError as e:
        raise _not_yaml(path, e) from None


def _not_yaml(path: Path, e: yaml.YAMLError) -> FileProblem:
    return FileProblem(f"{path}: not valid YAML: {brief(str(e))}")
