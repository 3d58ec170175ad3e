"""Where settings come from: a YAML file (the embedded default) or the cluster (list + watch).

Both feed a SettingsIndex; nothing here runs on the admission path.
"""

from __future__ import annotations

import hashlib
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from webhook import API_GROUP, API_VERSION, KIND, PLURAL
from webhook.brief import brief
from webhook.files import FileProblem, iter_yaml
from webhook.kube import Api, ApiError
from webhook.settings.index import Entry, SettingsIndex
from webhook.settings.model import SettingError

log = logging.getLogger(__name__)
T = TypeVar("T")
# What an admin checks first when the settings cannot be listed, by the API server's status.
_HINTS = {
    401: ": the API server refused the webhook's credentials",
    403: f": the webhook's identity may not list {PLURAL} (manifests/base/rbac.yaml)",
    404: f": no {PLURAL} resource; is the CRD installed (manifests/base/crd.yaml)?",
}


class SourceError(ValueError):
    pass


# Objects that may share a file with the settings (a bundle for `kubectl apply`): skipped.
COMPANIONS = {("v1", "Secret"), ("v1", "ConfigMap")}


def yield_to_requests() -> None:
    """In a worker (gevent patched `time.sleep`): the event loop serves the requests waiting
    on this worker, then comes back."""
    time.sleep(0.001)


def _in_turns(items: Iterable[T], pause: Callable[[], None] | None) -> Iterator[T]:
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
    `_in_turns` (for a reload while serving)."""
    stamp = file_stamp(path)  # before reading: a change meanwhile is read again later
    errors: list[str] = []
    entries: list[Entry] = []
    seen: dict[str, str] = {}
    for where, obj in _in_turns(read_file(path), pause):
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
    index.source_stamp = stamp


class ClusterWatcher:
    """Lists then watches MLflowSettings into the index, re-listing on expiry and reconnecting
    with capped exponential backoff. `ready` is set once the first full list has arrived."""

    def __init__(
        self,
        index: SettingsIndex,
        api: Api,
        namespace: str | None = None,
        on_change: Callable[[], None] = lambda: None,
        on_sync: Callable[[], None] = lambda: None,
        watch_timeout: int = 300,
    ) -> None:
        self.index = index
        self.api = api
        where = f"namespaces/{namespace}/" if namespace else ""
        self.path = f"/apis/{API_GROUP}/{API_VERSION}/{where}{PLURAL}"
        self.on_change = on_change
        self.on_sync = on_sync  # the settings are known to be current (a list, an event)
        self.watch_timeout = watch_timeout
        self.page_size = 500
        self.ready = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="settings-watch", daemon=True)

    def start(self) -> ClusterWatcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        delay = 0.5
        while not self._stop.is_set():
            try:
                version = self._list()
                delay = 0.5
                self._watch(version)  # returns when the version expired: list again
            except Exception as e:  # any failure: back off, then list again
                log.warning(
                    "settings watch failed (%s)%s; retrying in %.1f s",
                    brief(f"{type(e).__name__}: {e}"),
                    _HINTS.get(e.status, "") if isinstance(e, ApiError) else "",
                    delay,
                )
                self._stop.wait(delay * (1 + random.random() / 2))
                delay = min(delay * 2, 30.0)

    def _list(self) -> str:
        """All settings, in pages (so a large list never sits in memory whole), each object
        made into its index entry as its page is read (the entry keeps the parsed setting and
        the status, not the object); returns the list's resourceVersion to watch from."""
        entries: list[Entry] = []
        token = None
        pause = yield_to_requests if self.ready.is_set() else None  # a re-list while serving
        while True:
            query: dict[str, Any] = {"limit": self.page_size}
            if token:
                query["continue"] = token
            page = self.api.call("GET", self.path, query=query)
            if page is None:  # a GET's 404: the API server has no such resource
                raise ApiError(404, f"{self.path} not found")
            items = _in_turns(page.get("items") or [], pause)
            entries.extend(self.index.entry(o) for o in items)
            meta = page.get("metadata") or {}
            version, token = str(meta["resourceVersion"]), meta.get("continue")
            del page
            if not token:
                break
        self.index.replace_entries(entries)
        self.on_change()
        self.on_sync()
        self.ready.set()
        log.info("listed %d MLflowSettings", len(self.index))
        return version

    def _watch(self, version: str) -> None:
        while not self._stop.is_set():
            query = {"resourceVersion": version, "allowWatchBookmarks": "true"}
            try:
                for event in self.api.watch(self.path, query, self.watch_timeout):
                    obj, kind = event.get("object") or {}, event.get("type")
                    version = (obj.get("metadata") or {}).get("resourceVersion") or version
                    self.on_sync()  # bookmarks too: the watch is alive and current
                    if kind in ("ADDED", "MODIFIED"):
                        self.index.upsert(obj)
                    elif kind == "DELETED":
                        self.index.delete(obj)
                    else:
                        continue
                    self.on_change()
                    if self._stop.is_set():
                        return
                self.on_sync()  # the server ended the watch in order: nothing was missed
            except ApiError as e:
                if e.status == 410:  # the version expired: list again
                    return
                raise


class FileWatcher:
    """Reloads the settings file when it changes (checked every `every` seconds): a good new
    file replaces the settings at once, a bad one is refused with an error logged, and the last
    good settings stay."""

    def __init__(
        self,
        path: Path,
        index: SettingsIndex,
        on_reload: Callable[[bool], None],
        every: float = 1.0,
    ) -> None:
        self.path, self.index, self.on_reload, self.every = path, index, on_reload, every
        self._stamp = index.source_stamp  # the version the index holds, read by the master
        self._thread = threading.Thread(target=self._run, name="settings-file", daemon=True)

    def start(self) -> FileWatcher:
        self._thread.start()
        return self

    def _run(self) -> None:
        while True:
            time.sleep(self.every)
            stamp = file_stamp(self.path)
            if stamp == self._stamp or stamp is None:
                continue
            self._stamp = stamp
            try:
                load_file(self.path, self.index, yield_to_requests)
            except SourceError as e:
                log.error(
                    "settings file changed but cannot be used; keeping the last good one: %s", e
                )
                self.on_reload(False)
                continue
            log.info("reloaded %d MLflowSettings from %s", len(self.index), self.path)
            self.on_reload(True)
