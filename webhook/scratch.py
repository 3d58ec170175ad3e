"""Private scratch folders of a server: made once, readable only by its user, removed when the
process that made them exits (not when the processes forked from it do, which share them)."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path


def private_folder(prefix: str) -> Path:
    folder = Path(tempfile.mkdtemp(prefix=prefix))  # mode 0700
    atexit.register(_remove, folder, os.getpid())
    return folder


def _remove(folder: Path, owner: int) -> None:
    if os.getpid() == owner:
        shutil.rmtree(folder, ignore_errors=True)


def write_private(path: Path, data: bytes) -> None:
    """A new file only its owner can read (0600), in place when complete (a reader never sees
    half of it)."""
    partial = path.with_name(path.name + ".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(partial, path)
