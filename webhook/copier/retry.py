"""Transient failures are tried again, with capped exponential backoff, until a deadline; what
cannot succeed (not found, refused) is not."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

from webhook.copier.errors import CopyError, Exit, classify
from webhook.copier.resolve import explain_missing
from webhook.modeluri import ModelUri

log = logging.getLogger("webhook.copy")
T = TypeVar("T")


def with_retries(
    uri: ModelUri, deadline: float, what: str, action: Callable[[], T], where: str
) -> T:
    delay = 1.0
    attempt = 1
    while True:
        try:
            return action()
        except CopyError:
            raise
        except Exception as e:
            error = classify(e, uri, where, what)
            if isinstance(error, CopyError):
                if error.code is Exit.NOT_FOUND and what == "resolve":
                    raise explain_missing(uri) or error from None
                raise error from None
            wait = min(delay, 30.0) * (1 + random.random() / 4)
            if time.monotonic() + wait > deadline:
                raise CopyError(
                    Exit.UNAVAILABLE,
                    f"could not {what} {uri.describe()} after {attempt} attempts: {error}",
                ) from None
            log.warning(
                "%s failed (attempt %d, %s); retrying in %.1f s", what, attempt, error, wait
            )
            time.sleep(wait)
            delay *= 2
            attempt += 1
