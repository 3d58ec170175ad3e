"""JSON Patch (RFC 6902) from the original pod to the mutated one.

`jsonpatch.make_patch` over a whole pod is slow on the admission path; since the rules only add
or change a few subtrees, this diff skips equal subtrees with one C-level comparison and turns
list items inserted around the old ones into `add` operations (appended ones as `.../-`), so a
patch never rewrites the items it keeps.
"""

from __future__ import annotations

from typing import Any

Op = dict[str, Any]


def _escape(key: str) -> str:
    if "~" in key or "/" in key:
        return key.replace("~", "~0").replace("/", "~1")
    return key


def make_patch(old: Any, new: Any) -> list[Op]:
    return [] if old == new else _diff(old, new, "")


def _diff(old: Any, new: Any, path: str) -> list[Op]:
    """The operations from `old` to `new`, which differ. Equal children are skipped with one
    comparison each, before any path is built for them."""
    if isinstance(old, dict) and isinstance(new, dict):
        ops: list[Op] = [
            {"op": "remove", "path": f"{path}/{_escape(k)}"} for k in old if k not in new
        ]
        for key, value in new.items():
            if key not in old:
                ops.append({"op": "add", "path": f"{path}/{_escape(key)}", "value": value})
            elif old[key] != value:
                ops.extend(_diff(old[key], value, f"{path}/{_escape(key)}"))
        return ops
    if isinstance(old, list) and isinstance(new, list):
        n = len(old)
        if len(new) > n and new[:n] == old:
            return [{"op": "add", "path": f"{path}/-", "value": v} for v in new[n:]]
        if len(new) > n and (inserted := _insertions(old, new)) is not None:
            # In increasing order: each add lands where the new list has it.
            return [{"op": "add", "path": f"{path}/{i}", "value": new[i]} for i in inserted]
        if len(new) == n:
            return [
                op
                for i, (was, now) in enumerate(zip(old, new, strict=True))
                if was != now
                for op in _diff(was, now, f"{path}/{i}")
            ]
    return [{"op": "replace", "path": path, "value": new}]


def _insertions(old: list[Any], new: list[Any]) -> list[int] | None:
    """Indexes of `new` that are not `old`'s items, when `old` is `new` with items removed."""
    inserted: list[int] = []
    k = 0
    for i, item in enumerate(new):
        if k < len(old) and item == old[k]:
            k += 1
        else:
            inserted.append(i)
    return inserted if k == len(old) else None
