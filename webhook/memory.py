"""Giving memory back: glibc keeps freed heap pages (after parsing thousands of settings), and a
process (or every worker forked from it) would go on counting them as its own."""

from __future__ import annotations

import contextlib
import ctypes


def release_free_memory() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
