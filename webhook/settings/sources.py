"""The file source: a YAML file of MLflowSettings (the embedded default), read into a
SettingsIndex and reloaded when it changes; the cluster source is `watch.py`. Nothing here runs
on the admission path.
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
from webhook.files import FileProblem, iter_yaml
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


def read_file(path: Path) -> Iterator[tuple[str, Any]]:
    """The documents of a YAML file (items of a `kind: List` included), each with where it is,
    one at a time (SourceError may come at any of them)."""
    try:
        for n, doc in enumerate(iter_yaml(path), 1):
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


def load_file(path: Path, index: SettingsIndex, pause: Callable[[], None] | None = None) -> None:
    """Fills the index from a file. Every document must be a valid MLflowSetting (or a Secret or
    ConfigMap, skipped), with a name no other document has, and there must be one at least:
    anything else stops start-up with every problem named, and nothing is loaded. `pause`: see
    `in_turns` (for a reload while serving)."""
    stamp = file_stamp(path)  # before reading: a change meanwhile is read again later
    errors: list[str] = []
    entries: list[Entry] = []
    seen: dict[str, str] = {}
    for where, obj in in_turns(read_file(path), pause):
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
    index.source_stamp = index.tried_stamp = stamp


class FileWatcher:
    """Reloads the settings file when it changes (checked every `every` seconds): a good new
    file replaces the settings at once, a bad one is refused (with an error logged, if
    `report`) and the last good settings stay.

    The master of the server keeps its own copy current too (`catch_up` on its loop, quietly),
    and a worker catches up before it serves: a worker forked after a change then starts from
    the same settings as the others, never from those the master read at start; and one forked
    after a bad file does not try that file again (the index remembers the version tried)."""

    def __init__(
        self,
        path: Path,
        index: SettingsIndex,
        on_reload: Callable[[bool], None] = lambda _ok: None,
        on_sync: Callable[[], None] = lambda: None,
        every: float = 1.0,
        report: bool = True,
    ) -> None:
        self.path, self.index, self.every, self.report = path, index, every, report
        self.on_reload = on_reload  # a changed file was loaded (True) or refused (False)
        self.on_sync = on_sync  # the settings held are the file's current ones
        self._thread = threading.Thread(target=self._run, name="settings-file", daemon=True)

    def start(self) -> FileWatcher:
        self._thread.start()
        return self

    def catch_up(self, pause: Callable[[], None] | None = None) -> None:
        """Reads the file if it changed since the version the index holds was read (or since
        a bad version was refused). `pause`: see `in_turns`."""
        stamp = file_stamp(self.path)
        if stamp is not None and stamp != self.index.tried_stamp:
            self.index.tried_stamp = stamp
            try:
                load_file(self.path, self.index, pause)
            except SourceError as e:
                if self.report:
                    log.error(
                        "settings file changed but cannot be used; keeping the last good one: %s",
                        e,
                    )
                self.on_reload(False)
            else:
                if self.report:
                    log.info("reloaded %d MLflowSettings from %s", len(self.index), self.path)
                self.on_reload(True)
        if stamp is not None and stamp == self.index.source_stamp:
            self.on_sync()

    def _run(self) -> None:
        while True:
            time.sleep(self.every)
            self.catch_up(yield_to_requests)
