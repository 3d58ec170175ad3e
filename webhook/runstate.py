"""What the processes of one server know about each other: whether it is draining, and which
workers are serving. It lives in an anonymous shared memory page that the master maps before it
forks, so every worker reads and writes the same bytes without a lock file or a socket.

Why it exists: `/readyz` must describe the server as a whole (a probe lands on one random
worker), and a SIGTERM received by the master must reach every worker's `/readyz` and keep-alive
decisions at once, while the workers keep serving through the shutdown delay.
"""

from __future__ import annotations

import enum
import mmap
import os
import struct

SLOTS = 64
_HEADER = struct.Struct("<BB")  # draining, stopping
_SLOT = struct.Struct("<iB")  # pid, state


class WorkerState(enum.IntEnum):
    FREE = 0
    BOOTING = 1  # forked, loading settings, not accepting connections
    SERVING = 2  # accepting, with a complete list of settings
    STALLED = 3  # accepting (its wait for the settings ran out), answering 503 to /mutate


class RunState:
    def __init__(self) -> None:
        self._page = mmap.mmap(-1, _HEADER.size + SLOTS * _SLOT.size)

    @property
    def draining(self) -> bool:
        return bool(self._page[0])

    def start_draining(self) -> None:
        self._page[0] = 1

    @property
    def stopping(self) -> bool:
        """Set by the master before it signals the workers to stop: a worker forked just before
        may not have its signal handlers yet, and would miss the signal."""
        return bool(self._page[1])

    def start_stopping(self) -> None:
        self._page[1] = 1

    def _offset(self, slot: int) -> int:
        return _HEADER.size + slot * _SLOT.size

    def _read(self, slot: int) -> tuple[int, WorkerState]:
        pid, state = _SLOT.unpack_from(self._page, self._offset(slot))
        return pid, WorkerState(state)

    def reserve(self) -> int:
        """A free slot for a worker about to be forked (called by the master, which forks one
        worker at a time, so no two workers get the same slot)."""
        for slot in range(SLOTS):
            if self._read(slot)[1] is WorkerState.FREE:
                _SLOT.pack_into(self._page, self._offset(slot), 0, WorkerState.BOOTING)
                return slot
        raise RuntimeError(f"more than {SLOTS} workers")

    def set(self, slot: int, state: WorkerState, pid: int | None = None) -> None:
        _SLOT.pack_into(self._page, self._offset(slot), pid or os.getpid(), state)

    def release(self, slot: int) -> None:
        _SLOT.pack_into(self._page, self._offset(slot), 0, WorkerState.FREE)

    def states(self) -> list[WorkerState]:
        return [s for s in (self._read(i)[1] for i in range(SLOTS)) if s is not WorkerState.FREE]

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
