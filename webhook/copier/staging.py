"""The destination folder's bookkeeping. It is usually an emptyDir mount point, which cannot be
renamed: the copy is staged inside it, moved into place when complete, and a completion marker is
written last. A journal file marks the folder as ours while a copy is under way, so a restarted
init container may wipe what an interrupted one left, and never touches a folder that holds
someone else's files. The journal also names the source and, line by line, each file an engine
that can resume (s3.py) has fetched whole, with the size and ETag the store gave: the init
container restarted in the same pod (an OOM kill, a failed attempt) keeps those files and fetches
only the rest. A file the journal does not vouch for, or whose size differs, is never trusted."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from webhook.copier.errors import CopyError, Exit

COMPLETE = ".mlflow-model.json"  # written last: its presence means the model is whole
JOURNAL = ".mlflow-copy-in-progress"
STAGING = ".mlflow-staging"


def clear(dest: Path) -> None:
    for entry in dest.iterdir():
        _remove(entry)


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


class Journal:
    """The journal of a copy into `dest`: its first line names the source, each further line a
    staged file fetched whole (path, size, ETag)."""

    def __init__(self, dest: Path, source: str) -> None:
        self.dest, self.source = dest, source
        self.path = dest / JOURNAL

    def begin(self) -> bool:
        """Keeps what an interrupted copy of the same source staged, or clears the folder and
        starts a journal; says whether something was kept."""
        if self._header() == self.source and (self.dest / STAGING).is_dir():
            for entry in self.dest.iterdir():
                if entry.name not in (JOURNAL, STAGING):  # moved in before the interruption
                    _remove(entry)
            return True
        clear(self.dest)
        self.path.write_text(json.dumps({"source": self.source}) + "\n")
        return False

    def _header(self) -> str | None:
        with (
            contextlib.suppress(OSError, ValueError, AttributeError),
            self.path.open(encoding="utf-8") as f,
        ):
            return str(json.loads(f.readline()).get("source"))
        return None

    def _records(self) -> dict[str, tuple[int, str]]:
        records: dict[str, tuple[int, str]] = {}
        with contextlib.suppress(OSError), self.path.open(encoding="utf-8") as f:
            f.readline()
            for line in f:
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    item = json.loads(line)
                    records[str(item["path"])] = (int(item["size"]), str(item["etag"]))
        return records

    def reconcile(self, staging: Path, wanted: dict[str, tuple[int, str]]) -> set[str]:
        """The staged files the journal vouches for with the store's size and ETag (and whose
        size on disk agrees); every other staged file is removed. Returns their paths."""
        records = self._records()
        kept: set[str] = set()
        staging.mkdir(exist_ok=True)
        for folder, _, names in os.walk(staging):
            for name in names:
                path = os.path.join(folder, name)
                rel = os.path.relpath(path, staging)
                if rel in wanted and records.get(rel) == wanted[rel] == (
                    os.path.getsize(path),
                    wanted[rel][1],
                ):
                    kept.add(rel)
                else:
                    os.unlink(path)
        lines = [json.dumps({"source": self.source})]
        lines += [json.dumps({"path": p, "size": wanted[p][0], "etag": wanted[p][1]}) for p in kept]
        self.path.write_text("\n".join(lines) + "\n")
        return kept

    @contextlib.contextmanager
    def recording(self) -> Iterator[Callable[[str, int, str], None]]:
        """Yields `add(path, size, etag)`: one line written per whole file (line-buffered, so a
        kill loses at most the line of a file that is then fetched again)."""
        with self.path.open("a", encoding="utf-8", buffering=1) as f:

            def add(path: str, size: int, etag: str) -> None:
                f.write(json.dumps({"path": path, "size": size, "etag": etag}) + "\n")

            yield add

    def end(self) -> None:
        self.path.unlink()


def _remove(entry: Path) -> None:
    if entry.is_dir() and not entry.is_symlink():
        shutil.rmtree(entry)
    else:
        entry.unlink()


def mark_complete(dest: Path, record: dict[str, Any]) -> None:
    tmp = dest / f".{COMPLETE}.tmp"
    tmp.write_text(json.dumps(record))
    tmp.rename(dest / COMPLETE)
