"""The cluster source: MLflowSettings listed, then watched, into the index, as client-go's
reflector does it. A webhook on a shared cluster must neither storm the API server when the
watch misbehaves nor serve settings that went stale without anyone seeing it:

- One back-off for list and watch alike (`Backoff`), forgotten only after two minutes without a
  failure: a list that works does not reset it. So a watch that is refused (RBAC without the
  `watch` verb, a proxy's 5xx) costs about two lists a minute per process, not two a second.
- A watch that ends within a second with no event in it is a failure, not a normal end.
- Each watch asks for bookmarks and asks the server to end it after 5 to 10 minutes (spread,
  so that replicas do not re-list together). The API server sends a bookmark about once a
  minute, so a watch silent for SILENCE seconds is taken as stalled (a half-open connection, a
  stuck proxy): dropped, and the settings listed again.
- While the API server cannot be reached, the index keeps the settings last listed: they were
  right a moment ago, where an empty index would be wrong for every group at once. How old
  they are is `on_sync`'s to publish (the metrics), and a failure is `on_failure`'s.
- But a setting created since then is missing from it, so from the first failure until a list
  works again the watcher holds a `doubt`: why the index may lack a setting that exists. The
  admission path then answers a pod it finds no setting for with an error, not with "no
  setting" (mutation.py).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any

from webhook import API_GROUP, API_VERSION, PLURAL
from webhook.brief import brief
from webhook.kube import Api, ApiError
from webhook.settings.index import Entry, SettingsIndex
from webhook.settings.sources import in_turns, yield_to_requests

log = logging.getLogger(__name__)

# The API server's watch cache sends a bookmark to every watch that asks about once a minute
# (and just before the watch's timeout): a watch silent for longer has stalled.
BOOKMARK_EVERY = 60.0
SILENCE = BOOKMARK_EVERY + 20
# How long the server may keep one watch open, drawn anew for each (client-go: 5 to 10 min).
WATCH_SECONDS = (300, 600)
# A watch that ends sooner than this with nothing in it failed (client-go says the same).
SHORT_WATCH = 1.0


def _hint(verb: str, error: Exception) -> str:
    """What an admin checks first, by the API server's answer."""
    status = error.status if isinstance(error, ApiError) else None
    return {
        401: ": the API server refused the webhook's credentials",
        403: f": the webhook's identity may not {verb} {PLURAL} (manifests/base/rbac.yaml)",
        404: f": no {PLURAL} resource; is the CRD installed (manifests/base/crd.yaml)?",
    }.get(status or 0, "")


class Backoff:
    """Capped exponential back-off with jitter that is forgotten only after `reset_after`
    seconds without a failure (client-go's backoff manager)."""

    def __init__(
        self,
        initial: float = 1.0,
        cap: float = 30.0,
        reset_after: float = 120.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.initial, self.cap, self.reset_after, self.clock = initial, cap, reset_after, clock
        self._delay = initial
        self._last: float | None = None
        self.since = 0.0  # when the failures that the back-off remembers began (clock's time)

    def failed(self) -> float:
        """A failure now: how long to wait before the next try."""
        now = self.clock()
        if self._last is None or now - self._last > self.reset_after:
            self._delay, self.since = self.initial, now
        self._last = now
        wait = self._delay * (1 + random.random() / 2)
        self._delay = min(self._delay * 2, self.cap)
        return wait


class ShortWatch(Exception):
    """The watch ended at once with nothing in it: counted as a failure, so it cannot loop."""


class Expired(Exception):
    """The watch's resourceVersion is gone (410): list again."""

    def __init__(self, events: int) -> None:
        super().__init__("the watch's resourceVersion expired")
        self.events = events


class ClusterWatcher:
    """Lists then watches MLflowSettings into the index (see the module's docstring). `ready`
    is set once the first full list has arrived."""

    def __init__(
        self,
        index: SettingsIndex,
        api: Api,
        namespace: str | None = None,
        on_change: Callable[[], None] = lambda: None,
        on_sync: Callable[[], None] = lambda: None,
        on_failure: Callable[[str], None] = lambda _verb: None,
        watch_seconds: tuple[int, int] = WATCH_SECONDS,
        silence: float = SILENCE,
        backoff: Backoff | None = None,
    ) -> None:
        self.index = index
        self.api = api
        where = f"namespaces/{namespace}/" if namespace else ""
        self.path = f"/apis/{API_GROUP}/{API_VERSION}/{where}{PLURAL}"
        self.on_change = on_change
        self.on_sync = on_sync  # the settings are known to be current (a list, an event)
        self.on_failure = on_failure  # a list or a watch failed ("list" or "watch")
        self.watch_seconds, self.silence = watch_seconds, silence
        self.backoff = backoff or Backoff()
        self.page_size = 500
        self.ready = threading.Event()
        # Why the index may lack a setting that exists (None: as current as its last event).
        self.doubt: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="settings-watch", daemon=True)

    def start(self) -> ClusterWatcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            verb = "list"
            try:
                version = self._list()
                verb = "watch"
                self._watch(version)
            except Expired as e:
                if e.events:  # the watch had been working: list again at once
                    self.doubt = f"the webhook's watch of {PLURAL} expired; listing them again"
                    continue
                self._failed(verb, e)
            except Exception as e:  # any other failure: back off, then list again
                self._failed(verb, e)

    def _failed(self, verb: str, error: Exception) -> None:
        self.on_failure(verb)
        wait = self.backoff.failed()
        why = f"cannot {verb} {PLURAL} ({brief(f'{type(error).__name__}: {error}')})"
        log.warning("%s%s; retrying in %.1f s", why, _hint(verb, error), wait)
        # What pods' creators read (in their error, in a ReplicaSet's events): not the API
        # server's answer, which is the log's.
        began = time.gmtime(time.time() - (self.backoff.clock() - self.backoff.since))
        self.doubt = (
            f"the webhook cannot {verb} {PLURAL} (its log says why), failing since "
            f"{time.strftime('%H:%M:%S UTC', began)}"
        )
        self._stop.wait(wait)

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
            items = in_turns(page.get("items") or [], pause)
            entries.extend(self.index.entry(o) for o in items)
            meta = page.get("metadata") or {}
            version, token = str(meta["resourceVersion"]), meta.get("continue")
            del page
            if not token:
                break
        self.index.replace_entries(entries)
        self.doubt = None  # as current as the list, and watched from here
        self.on_change()
        self.on_sync()
        self.ready.set()
        log.info("listed %d MLflowSettings", len(self.index))
        return version

    def _watch(self, version: str) -> None:
        """Watches from `version` until stopped; raises on a failure, Expired on a 410."""
        while not self._stop.is_set():
            query = {"resourceVersion": version, "allowWatchBookmarks": "true"}
            started, events = time.monotonic(), 0
            seconds = random.randint(*self.watch_seconds)
            try:
                for event in self.api.watch(self.path, query, seconds, self.silence):
                    events += 1
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
            except ApiError as e:
                if e.status == 410:
                    raise Expired(events) from None
                raise
            if not events and time.monotonic() - started < SHORT_WATCH:
                raise ShortWatch("the API server ended the watch at once, with no event")
            self.on_sync()  # the server ended the watch in order: nothing was missed
