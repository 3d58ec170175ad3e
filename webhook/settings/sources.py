"""Where settings come from: a YAML file (the embedded default) or the cluster (list + watch).

Both feed a SettingsIndex; nothing here runs on the admission path.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from webhook import API_GROUP, API_VERSION, KIND, PLURAL
from webhook.settings.index import SettingsIndex
from webhook.settings.model import SettingError, parse_setting

log = logging.getLogger(__name__)


class SourceError(ValueError):
    pass


def read_file(path: Path) -> list[dict[str, Any]]:
    """The MLflowSetting documents of a YAML file (several documents, or a `kind: List`)."""
    try:
        docs = list(yaml.safe_load_all(path.read_text()))
    except (OSError, yaml.YAMLError) as e:
        raise SourceError(f"{path}: {e}") from None
    objects: list[dict[str, Any]] = []
    for doc in docs:
        if doc is None:
            continue
        if isinstance(doc, dict) and doc.get("kind") == "List":
            objects.extend(doc.get("items") or [])
        else:
            objects.append(doc)
    return objects


def load_file(path: Path, index: SettingsIndex) -> None:
    """Fills the index from a file; every invalid object is reported, and none is loaded then."""
    objects = read_file(path)
    errors: list[str] = []
    for i, obj in enumerate(objects):
        if isinstance(obj, dict) and obj.get("kind") not in (KIND, None):
            continue  # a file may also hold the Secrets of the example
        try:
            parse_setting(obj, index.default_namespace)
        except SettingError as e:
            errors.append(f"document {i + 1}: {e}")
    if errors:
        raise SourceError(f"{path}:\n  " + "\n  ".join(errors))
    index.replace_all(o for o in objects if isinstance(o, dict) and o.get("kind") == KIND)


class ClusterWatcher:
    """Lists then watches MLflowSettings into the index, re-listing on expiry and reconnecting
    with capped exponential backoff. `ready` is set once the first full list has arrived."""

    def __init__(
        self,
        index: SettingsIndex,
        api_client: Any,
        namespace: str | None = None,
        on_change: Callable[[], None] = lambda: None,
        watch_timeout: int = 300,
    ) -> None:
        from kubernetes import client

        self.index = index
        self.api = client.CustomObjectsApi(api_client)
        self.namespace = namespace
        self.on_change = on_change
        self.watch_timeout = watch_timeout
        self.ready = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="settings-watch", daemon=True)

    def start(self) -> ClusterWatcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _list_call(self) -> tuple[Callable[..., Any], dict[str, Any]]:
        args: dict[str, Any] = {"group": API_GROUP, "version": API_VERSION, "plural": PLURAL}
        if self.namespace:
            return self.api.list_namespaced_custom_object, {**args, "namespace": self.namespace}
        return self.api.list_cluster_custom_object, args

    def _run(self) -> None:
        delay = 0.5
        while not self._stop.is_set():
            try:
                version = self._list()
                delay = 0.5
                self._watch(version)  # returns when the version expired: list again
            except Exception as e:  # any failure: back off, then list again
                log.warning("settings watch failed (%s); retrying in %.1f s", _short(e), delay)
                self._stop.wait(delay * (1 + random.random() / 2))
                delay = min(delay * 2, 30.0)

    def _list(self) -> str:
        call, args = self._list_call()
        result = call(**args)
        self.index.replace_all(result.get("items") or [])
        self.on_change()
        self.ready.set()
        log.info("listed %d MLflowSettings", len(self.index))
        return str(result["metadata"]["resourceVersion"])

    def _watch(self, version: str) -> None:
        from kubernetes import watch
        from kubernetes.client.rest import ApiException

        call, args = self._list_call()
        while not self._stop.is_set():
            stream = watch.Watch()
            try:
                for event in stream.stream(
                    call,
                    **args,
                    resource_version=version,
                    timeout_seconds=self.watch_timeout,
                    allow_watch_bookmarks=True,
                ):
                    obj, kind = event["object"], event["type"]
                    version = obj.get("metadata", {}).get("resourceVersion") or version
                    if kind in ("ADDED", "MODIFIED"):
                        self.index.upsert(obj)
                    elif kind == "DELETED":
                        self.index.delete(obj)
                    else:
                        continue
                    self.on_change()
                    if self._stop.is_set():
                        return
            except ApiException as e:
                if e.status == 410:  # the client turns an expired version into this
                    return
                raise
            finally:
                stream.stop()


def _short(error: Exception) -> str:
    text = f"{type(error).__name__}: {error}"
    return text.splitlines()[0][:300]
