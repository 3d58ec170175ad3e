"""What the processes of one server know about each other: whether it is draining, and which
workers are serving. It lives in an anonymous shared memory page that the master maps before it
forks, so every worker reads and writes the same bytes without a lock file or a socket.

Why it exists: `/readyz` must describe the server as a whole (a probe lands on one random
worker), and a SIGTERM received by the master must reach every worker's `/readyz` and keep-alive
decisions at once, while the workers keep serving through the shutdown delay. Each worker also
writes when it last knew its settings to be current, so any worker can say how old the oldest
settings being served are.
"""

from __future__ import annotations

import enum
import mmap
import struct
import time
from collections import Counter

SLOTS = 64
_DRAINING, _STOPPING, _FIRST_SLOT = 0, 1, 2  # a byte each; then a byte (WorkerState) per slot
_SYNCED = 8 * ((_FIRST_SLOT + SLOTS + 7) // 8)  # then a double (time.time()) per slot
# Then, with a settings file: the generation the master published, and when it last found the
# file unchanged since (sources.py, SettingsFile).
_PUBLISHED = _SYNCED + 8 * SLOTS
_CONFIRMED = _PUBLISHED + 8
_SIZE = _CONFIRMED + 8


class WorkerState(enum.IntEnum):
    FREE = 0
    BOOTING = 1  # forked, loading settings, not accepting connections
    SERVING = 2  # accepting, with a complete list of settings
    STALLED = 3  # accepting (its wait for the settings ran out), answering 503 to /mutate


class RunState:
    def __init__(self) -> None:
        self._page = mmap.mmap(-1, _SIZE)
        self.mine: int | None = None  # in a worker: its own slot

    @property
    def draining(self) -> bool:
        return bool(self._page[_DRAINING])

    def start_draining(self) -> None:
        self._page[_DRAINING] = 1

    @property
    def stopping(self) -> bool:
        """Set by the master before it signals the workers to stop: a worker forked just before
        may not have its signal handlers yet, and would miss the signal."""
        return bool(self._page[_STOPPING])

    def start_stopping(self) -> None:
        self._page[_STOPPING] = 1

    def reserve(self) -> int:
        """A free slot for a worker about to be forked (called by the master, which forks one
        worker at a time, so no two workers get the same slot)."""
        for slot in range(SLOTS):
            if self._page[_FIRST_SLOT + slot] == WorkerState.FREE:
                self.set(slot, WorkerState.BOOTING)
                return slot
        raise RuntimeError(f"more than {SLOTS} workers")

    def set(self, slot: int, state: WorkerState) -> None:
        self._page[_FIRST_SLOT + slot] = state

    def release(self, slot: int) -> None:
        self.set(slot, WorkerState.FREE)
        struct.pack_into("d", self._page, _SYNCED + 8 * slot, 0.0)

    def synced(self, at: float | None = None) -> None:
        """This worker's settings are known to be current (now, or `at`: a list, a watch event
        or bookmark, the master's look at the settings file)."""
        if self.mine is not None:
            struct.pack_into("d", self._page, _SYNCED + 8 * self.mine, at or time.time())

    def publish(self, generation: int) -> None:
        """The master holds this version of the settings file now."""
        struct.pack_into("q", self._page, _PUBLISHED, generation)

    @property
    def published(self) -> int:
        return int(struct.unpack_from("q", self._page, _PUBLISHED)[0])

    def confirm(self) -> None:
        """The master found the settings file as it was last published (or published it)."""
        struct.pack_into("d", self._page, _CONFIRMED, time.time())

    @property
    def confirmed(self) -> float:
        return float(struct.unpack_from("d", self._page, _CONFIRMED)[0])

    def settings_age(self) -> float | None:
        """Seconds since the serving worker whose settings are oldest knew them current."""
        times = [
            struct.unpack_from("d", self._page, _SYNCED + 8 * slot)[0]
            for slot in range(SLOTS)
            if self._page[_FIRST_SLOT + slot] in (WorkerState.SERVING, WorkerState.STALLED)
        ]
        known = [t for t in times if t > 0]
        return max(0.0, time.time() - min(known)) if known else None

    def states(self) -> list[WorkerState]:
        return [
            WorkerState(b)
            for b in self._page[_FIRST_SLOT : _FIRST_SLOT + SLOTS]
            if b != WorkerState.FREE
        ]

    def counts(self) -> dict[str, int]:
        """Workers by state, named in lower case (booting, serving, stalled)."""
        return dict(Counter(s.name.lower() for s in self.states()))

    def ready(self) -> bool:
        """Every worker that accepts connections answers from a complete list of settings, at
        least one does, and the server is not shutting down. Booting workers do not count: they
        take no connections, so they cannot answer wrongly."""
        states = self.states()
        return (
            not self.draining
            and WorkerState.SERVING in states
            and WorkerState.STALLED not in states
        )
