"""The destination folder's bookkeeping. It is usually an emptyDir mount point, which cannot be
renamed: the copy is staged inside it, moved into place when complete, and a completion marker is
written last. A journal file marks the folder as ours while a copy is under way, so a restarted
init container may wipe what an interrupted one left, and never touches a folder that holds
someone else's files."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from webhook.copier.errors import CopyError, Exit

COMPLETE = ".mlflow-model.json"  # written last: its presence means the model is whole
JOURNAL = ".mlflow-copy-in-progress"
STAGING = ".mlflow-staging"


def clear(dest: Path) -> None:
    for entry in dest.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def prepare(dest: Path) -> dict[str, Any] | None:
    """Makes sure `dest` is ours to write; returns the completion record found there, if any."""
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CopyError(
            Exit.DESTINATION, f"cannot create the destination {dest}: {e.strerror}"
        ) from None
    if not os.access(dest, os.W_OK | os.X_OK):
        raise CopyError(Exit.DESTINATION, f"the destination {dest} is not writable")
    marker = dest / COMPLETE
    if marker.exists():
        with contextlib.suppress(OSError, ValueError):
            record: dict[str, Any] = json.loads(marker.read_text())
            return record
    entries = [e.name for e in dest.iterdir()]
    if entries and JOURNAL not in entries and COMPLETE not in entries:
        raise CopyError(
            Exit.DESTINATION,
            f"the destination {dest} holds files that "
            "copy-artifacts did not write; refusing to overwrite",
        )
    return None


def mark_complete(dest: Path, record: dict[str, Any]) -> None:
    tmp = dest / f".{COMPLETE}.tmp"
    tmp.write_text(json.dumps(record))
    tmp.rename(dest / COMPLETE)
