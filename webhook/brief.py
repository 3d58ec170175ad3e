"""Errors cut to one line, for logs, status messages and termination messages: a server's
multi-line answer (an HTML error page, a traceback) must not drown what comes after it, and an
error without a message still says what it is."""

from __future__ import annotations


def brief(error: BaseException | str, limit: int = 300) -> str:
    """The first line of the error's message (its type's name when it has none), at most
    `limit` characters."""
    text = error if isinstance(error, str) else (str(error) or type(error).__name__)
    return (text.strip().splitlines() or [""])[0][:limit]
