"""The file source: a YAML file of MLflowSettings (the embedded default), read into a
SettingsIndex, and while a server runs, read again when it changes by the master alone, whose
workers follow (SettingsFile, SnapshotFollower); the cluster source is `watch.py`. Nothing here
runs on the admission path.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from webhook import KIND
from webhook.files import FileProblem, iter_yaml, read_text
from webhook.scratch import private_folder, write_private
from webhook.settings.index import Entry, SettingsIndex
from webhook.settings.model import SettingError

log = logging.getLogger(__name__)
T = TypeVar("T")


class SourceError(ValueError):
    pass


# Objects that may share a file with the settings (a bundle for `kubectl apply`): skipped.
COMPANIONS = {("v1", "Secret"), ("v1", "ConfigMap")}


def yield_to_requests() -> None:
    """In a worker (gevent patched `time.sleep`): the event loop serves the requests waiting
    on this worker, then comes back."""
    time.sleep(0.001)


def in_turns(items: Iterable[T], pause: Callable[[], None] | None) -> Iterator[T]:
    """The items; with `pause`, called after each 5 ms of work. A worker runs one thing at a
    time, so without it re-reading 10,000 settings (0.7 s) would hold every answer of the
    worker up for all that time."""
    if pause is None:
        yield from items
        return
    due = time.monotonic() + 0.005
    for item in items:
        yield item
        if time.monotonic() >= due:
            pause()
            due = time.monotonic() + 0.005


def read_file(path: Path, text: str | None = None) -> Iterator[tuple[str, Any]]:
    """The documents of a YAML file (items of a `kind: List` included), each with where it is,
    one at a time (SourceError may come at any of them). `text`: the file's, read already."""
    try:
        for n, doc in enumerate(iter_yaml(path, text), 1):
            if doc is None:
                continue
            if isinstance(doc, dict) and doc.get("kind") == "List":
                items = doc.get("items") or []
                if not isinstance(items, list):
                    raise SourceError(f"{path}: document {n}: items of a List must be a list")
                yield from ((f"document {n} item {i + 1}", item) for i, item in enumerate(items))
            else:
                yield f"document {n}", doc
    except FileProblem as e:
        raise SourceError(str(e)) from None


def _digest(doc: Any) -> str:
    """The version of a document of a file: equal for equal documents (the same values as
    YAML reads them, in the same order)."""
    return "file:" + hashlib.blake2b(repr(doc).encode(), digest_size=16).hexdigest()


def file_stamp(path: Path) -> tuple[float, int, int] | None:
    """What changes when the file does (a kubelet replaces a ConfigMap's file: a new inode)."""
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime, st.st_size, st.st_ino)


def load_file(
    path: Path,
    index: SettingsIndex,
    pause: Callable[[], None] | None = None,
    text: str | None = None,
) -> None:
    """Fills the index from a file. Every document must be a valid MLflowSetting (or a Secret or
    ConfigMap, skipped), with a name no other document has, and there must be one at least:
    anything else stops start-up with every problem named, and nothing is loaded. `pause`: see
    `in_turns` (for a reload while serving); `text`: the file's, read already."""
    errors: list[str] = []
    entries: list[Entry] = []
    seen: dict[str, str] = {}
    for where, obj in in_turns(read_file(path, text), pause):
        if isinstance(obj, dict) and (obj.get("apiVersion"), obj.get("kind")) in COMPANIONS:
            continue
        entry = index.entry(obj, _digest(obj))
        if isinstance(entry.value, SettingError):
            errors.append(f"{where}: {entry.value}")
            continue
        if entry.ref in seen:
            errors.append(f"{where}: {KIND} {entry.ref} is also {seen[entry.ref]}")
            continue
        seen[entry.ref] = where
        entries.append(entry)
    if not entries and not errors:
        errors.append(f"holds no {KIND}")
    if errors:
        raise SourceError(f"{path}:\n  " + "\n  ".join(errors))
    index.replace_entries(entries)


class SettingsFile:
    """The settings file of a running server, read by one process only: the master. Each
    version it can use is published as a generation: a private copy of exactly the text it
    read (`snapshot`), and a number the workers follow (`SnapshotFollower`). So every worker
    serves a version the master holds too, and a worker forked later (a crash, an OOM kill)
    starts from the master's, the newest good one, never the one read at start; a version that
    cannot be used is refused once, with an error logged, and the last good one stays."""

    def __init__(self, path: Path, index: SettingsIndex) -> None:
        self.path, self.index = path, index
        self.folder = private_folder("mlflow-webhook-settings-")
        self.snapshot = self.folder / "settings.yaml"
        self.generation = 0
        self._stamp: tuple[float, int, int] | None = None  # the version last read

    def load(self) -> None:
        """The first version; SourceError names every problem (start-up stops)."""
        self._read()

    def check(self) -> bool | None:
        """Reads the file if it changed: True (a new version published), False (refused),
        None (unchanged: the settings held are the file's)."""
        stamp = file_stamp(self.path)
        if stamp is None or stamp == self._stamp:
            return None
        try:
            self._read()
        except SourceError as e:
            log.error("settings file changed but cannot be used; keeping the last good one: %s", e)
            return False
        log.info("reloaded %d MLflowSettings from %s", len(self.index), self.path)
        return True

    def _read(self) -> None:
        self._stamp = file_stamp(self.path)  # before reading: a change meanwhile is read again
        try:
            text = read_text(self.path)
        except FileProblem as e:
            raise SourceError(str(e)) from None
        load_file(self.path, self.index, text=text)
        write_private(self.snapshot, text.encode())
        self.generation += 1
        self.index.generation = self.generation


class SnapshotFollower:
    """A worker's side of SettingsFile: every `every` seconds, loads the master's newest
    snapshot if the index holds an older generation (in 5 ms turns between requests)."""

    def __init__(
        self,
        snapshot: Path,
        index: SettingsIndex,
        published: Callable[[], int],
        on_reload: Callable[[], None] = lambda: None,
        on_current: Callable[[], None] = lambda: None,
        every: float = 0.5,
    ) -> None:
        self.snapshot, self.index, self.published = snapshot, index, published
        self.on_reload, self.on_current, self.every = on_reload, on_current, every
        self._thread = threading.Thread(target=self._run, name="settings-file", daemon=True)

    def start(self) -> SnapshotFollower:
        self._thread.start()
        return self

    def _run(self) -> None:
        while True:
            time.sleep(self.every)
            generation = self.published()
            if generation == self.index.generation:
                self.on_current()
                continue
            try:  # (a newer snapshot may be read than its number says: read again next time)
                load_file(self.snapshot, self.index, yield_to_requests)
            except SourceError as e:  # the master checked it: only a broken disk gets here
                log.error("cannot read the settings the master published: %s", e)
                continue
            self.index.generation = generation
            self.on_reload()
            self.on_current()
