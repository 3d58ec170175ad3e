"""Reading the files an admin gives (configuration, settings, kubeconfig, tokens) with one kind
of error: the file named and the cause in a few words, never a traceback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from webhook.brief import brief

# Nodes one document may stand for once its aliases are expanded: a List of 10,000 settings is
# about 500,000; "billion laughs" (nine levels of nine aliases) would be 387 million.
MAX_EXPANDED_NODES = 2_000_000


def _expanded_size(root: yaml.Node) -> int:
    """How many nodes the document is once every alias is replaced by what it names (each node
    counted once, so the cost is the document's size, not the expansion's). Raises ValueError
    for an alias inside what it names: no JSON value is that."""
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        children: list[yaml.Node]
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        else:
            children = []
        if children_done:
            on_path.discard(id(node))
            sizes[id(node)] = 1 + sum(sizes[id(c)] for c in children)
            continue
        if id(node) in sizes:
            continue
        on_path.add(id(node))
        stack.append((node, True))
        for child in children:
            if id(child) in on_path:
                raise ValueError("an alias refers to a node that contains it")
            if id(child) not in sizes:
                stack.append((child, False))
    return sizes[id(root)]


# libyaml when PyYAML has it: ten times faster on a file of thousands of settings.
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _AliasCheckingLoader(_SAFE_LOADER):  # type: ignore[misc,valid-type]
    """Refuses documents whose aliases expand past MAX_EXPANDED_NODES, or refer to themselves:
    every later step (parsing, hashing) walks the expanded values."""

    def construct_document(self, node: yaml.Node) -> Any:
        try:
            size = _expanded_size(node)
        except ValueError as e:
            raise yaml.constructor.ConstructorError(None, None, str(e), node.start_mark) from None
        if size > MAX_EXPANDED_NODES:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"its aliases expand to more than {MAX_EXPANDED_NODES:,} values",
                node.start_mark,
            )
        return super().construct_document(node)


def _loader(text: str) -> type:
    """Aliases need anchors (`&name`): text without `&` is loaded without the check."""
    return _AliasCheckingLoader if "&" in text else _SAFE_LOADER


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
        return yaml.load(text, Loader=_loader(text))
    except yaml.YAMLError as e:
        raise _not_yaml(path, e) from None


def iter_yaml(path: Path, text: str | None = None) -> Iterator[Any]:
    """The file's YAML documents, one at a time (FileProblem may come at any of them): a caller
    that keeps only what it needs of each lets the memory of one be reused for the next.
    `text`: the file's text, read already."""
    text = read_text(path) if text is None else text
    try:
        yield from yaml.load_all(text, Loader=_loader(text))
    except yaml.YAMLError as e:
        raise _not_yaml(path, e) from None


def _not_yaml(path: Path, e: yaml.YAMLError) -> FileProblem:
    return FileProblem(f"{path}: not valid YAML: {brief(str(e))}")
