"""The in-memory index the admission path reads: (namespace, escaped group) -> setting.

Sources write to it (whole snapshots or single objects); a request only does a dict lookup.
A broken or duplicated setting is indexed as a Problem so the pod's answer can say what is wrong.
"""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from webhook import KIND
from webhook.groups import escape_group, group_name
from webhook.memory import release_free_memory
from webhook.settings.model import NAMESPACE_KEY, MLflowSetting, SettingError, parse_setting
from webhook.settings.rules import LOGIN_NAMES

log = logging.getLogger(__name__)

Key = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Problem:
    """Why the group's setting cannot be used, in words for the pod's owner."""

    message: str


Resolved = MLflowSetting | Problem


@dataclass(frozen=True, slots=True)
class Entry:
    """What the index keeps of one object. Sources make one as each object is read, so the
    object (and the parser's garbage) can go before the next is read: memory freed in between
    is reused, where a list of thousands of parsed objects, freed at the end, left holes that
    kept about 12 MB per 10,000 settings."""

    ref: str  # namespace/name
    key: Key | None
    value: MLflowSetting | SettingError
    generation: int = 0
    status: Any = None  # the object's status as last seen (for the status writer)
    version: str = ""  # changes whenever the object does: resourceVersion, or a file's digest


@dataclass(frozen=True)
class Readiness:
    """What one setting's Ready condition should say, beside what its status says now."""

    ref: str
    generation: int
    ready: bool
    reason: str  # Valid, Invalid or Conflict
    message: str
    current: Any


def _claim(key: Key | None) -> str:
    """What a key stands for, in words."""
    if key is None:
        return "nothing"
    namespace, group = key
    if group == NAMESPACE_KEY:
        return f"namespace {namespace} (a setting with no group)"
    return f"group {group_name(group)!r} in namespace {namespace}"


def _ref(obj: Any, default_namespace: str) -> str:
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    meta = meta if isinstance(meta, dict) else {}
    return f"{meta.get('namespace') or default_namespace}/{meta.get('name') or '?'}"


class SettingsIndex:
    def __init__(
        self, default_namespace: str = "hub", secret_names: frozenset[str] = LOGIN_NAMES
    ) -> None:
        """`secret_names`: the configured login names (Config.login_names), whose values must
        come from Secrets."""
        self.default_namespace = default_namespace
        self.secret_names = secret_names
        self.generation = 0  # which version of a settings file this holds (sources.py)
        self._lock = threading.Lock()
        self._entries: dict[str, Entry] = {}
        self._refs_by_key: dict[Key, set[str]] = {}
        self._resolved: dict[Key, Resolved] = {}

    def entry(self, obj: Any, version: str = "") -> Entry:
        """What the index keeps of `obj`. `version`: what changes whenever the object does (its
        resourceVersion by default; a file gives a digest of the document). An object the
        index holds at the same version gets its entry back: reading the settings again (a
        re-list after the API server restarted, a reloaded file) parses nothing the index
        already has, and allocates next to nothing."""
        ref = _ref(obj, self.default_namespace)
        meta = obj.get("metadata") if isinstance(obj, dict) else None
        meta = meta if isinstance(meta, dict) else {}
        if not version:
            found = meta.get("resourceVersion")
            version = found if isinstance(found, str) else ""
        held = self._entries.get(ref)
        if version and held is not None and held.version == version:
            return held
        found = meta.get("generation")
        generation = found if isinstance(found, int) else 0
        status = obj.get("status") if isinstance(obj, dict) else None
        try:
            setting = parse_setting(obj, self.default_namespace, self.secret_names)
            claims = (setting.namespace, setting.group_key)
            return Entry(ref, claims, setting, generation, status, version)
        except SettingError as error:
            # Still file the error under its group (or its namespace, when it names no group),
            # so its pods hear about it.
            spec = obj.get("spec") if isinstance(obj, dict) else None
            group = spec.get("group", NAMESPACE_KEY) if isinstance(spec, dict) else None
            namespace = ref.split("/", 1)[0]
            key: Key | None = None
            if group == NAMESPACE_KEY:
                key = (namespace, NAMESPACE_KEY)
            elif isinstance(group, str) and group:
                key = (namespace, escape_group(group))
            return Entry(ref, key, error, generation, status, version)

    def lookup(self, namespace: str, group_key: str) -> Resolved | None:
        return self._resolved.get((namespace, group_key))

    def __len__(self) -> int:
        return len(self._entries)

    def errors(self) -> list[str]:
        return [str(e.value) for e in self._entries.values() if isinstance(e.value, SettingError)]

    def claimants(self, namespace: str, group_key: str) -> set[str]:
        """The settings (namespace/name) that claim this group in this namespace."""
        return set(self._refs_by_key.get((namespace, group_key), ()))

    def readiness(self) -> list[Readiness]:
        """Each setting's verdict, in the words its status gives: Valid, Invalid (and why), or
        Conflict (naming the others that claim its group)."""
        with self._lock:
            entries = dict(self._entries)
            refs_by_key = {k: set(v) for k, v in self._refs_by_key.items()}
        out = []
        for ref, entry in entries.items():
            others = sorted(refs_by_key.get(entry.key, set()) - {ref}) if entry.key else []
            if isinstance(entry.value, SettingError):
                verdict = (False, "Invalid", str(entry.value))
            elif others:
                verdict = (
                    False,
                    "Conflict",
                    f"{_claim(entry.key)} is also claimed by {', '.join(others)}: "
                    "its pods get none of them until all but one are deleted",
                )
            else:
                verdict = (True, "Valid", f"serving {entry.value.scope}")
            out.append(Readiness(ref, entry.generation, *verdict, entry.status))
        return out

    def conflicts(self) -> int:
        """Groups that more than one setting claims in one namespace."""
        return sum(1 for refs in self._refs_by_key.values() if len(refs) > 1)

    def replace_entries(self, made: Iterable[Entry]) -> None:
        """Makes the index hold exactly these entries (made by `entry`)."""
        entries = {entry.ref: entry for entry in made}
        refs_by_key: dict[Key, set[str]] = {}
        for ref, entry in entries.items():
            if entry.key is not None:
                refs_by_key.setdefault(entry.key, set()).add(ref)
        resolved = {key: self._resolve(key, refs, entries) for key, refs in refs_by_key.items()}
        with self._lock:
            self._entries, self._refs_by_key, self._resolved = entries, refs_by_key, resolved
        self._log_errors(entries.values())
        # The index is long-lived: keep the cyclic GC from walking it on every full collection
        # (with 10,000 settings that cost ~7% of throughput); and give back the pages that the
        # old index and the reading freed.
        gc.freeze()
        release_free_memory()

    def upsert(self, obj: Any) -> None:
        entry = self.entry(obj)
        with self._lock:
            old = self._entries.get(entry.ref)
            self._entries[entry.ref] = entry
            self._reindex(entry.ref, old.key if old else None, entry.key)
        self._log_errors([entry])

    def delete(self, obj: Any) -> None:
        ref = _ref(obj, self.default_namespace)
        with self._lock:
            old = self._entries.pop(ref, None)
            if old is not None:
                self._reindex(ref, old.key, None)

    def _reindex(self, ref: str, old: Key | None, new: Key | None) -> None:
        if old is not None:
            self._refs_by_key.get(old, set()).discard(ref)
        if new is not None:
            self._refs_by_key.setdefault(new, set()).add(ref)
        for key in {old, new} - {None}:
            assert key is not None
            refs = self._refs_by_key.get(key)
            if refs:
                self._resolved[key] = self._resolve(key, refs, self._entries)
            else:
                self._refs_by_key.pop(key, None)
                self._resolved.pop(key, None)

    @staticmethod
    def _resolve(key: Key, refs: set[str], entries: dict[str, Entry]) -> Resolved:
        if len(refs) > 1:
            names = ", ".join(sorted(refs))
            log.error("%d %ss claim %s: %s", len(refs), KIND, _claim(key), names)
            return Problem(
                f"{len(refs)} {KIND}s claim {_claim(key)} ({names}); an admin must delete all "
                "but one"
            )
        value = entries[next(iter(refs))].value
        if isinstance(value, SettingError):
            whose = "the namespace's" if key[1] == NAMESPACE_KEY else "the group's"
            return Problem(f"{whose} setting is invalid: {value}")
        return value

    @staticmethod
    def _log_errors(entries: Iterable[Entry]) -> None:
        for entry in entries:
            if isinstance(entry.value, SettingError):
                log.error("invalid setting: %s", entry.value)
