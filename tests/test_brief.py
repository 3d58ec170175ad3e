"""Errors cut to one line for logs and status; an error without a message must not break the
code that reports it."""

from __future__ import annotations

import threading
from typing import Any

from webhook.brief import brief
from webhook.settings.index import SettingsIndex
from webhook.settings.status import StatusWriter


def test_brief_keeps_the_first_line_and_names_an_error_without_a_message() -> None:
    assert brief(RuntimeError("HTTP 500: <html>\n<body>...")) == "HTTP 500: <html>"
    assert brief(TimeoutError()) == "TimeoutError"
    assert brief("x" * 1000, 200) == "x" * 200
    assert brief("") == ""


class _SilentFailures:
    """Stands in for the API client: the real API server cannot be made to fail with an
    exception whose message is empty (a bare socket timeout does), which is what this needs."""

    def __init__(self, calls: int) -> None:
        self.left = calls
        self.done = threading.Event()

    def call(self, *_args: Any, **_kwargs: Any) -> Any:
        if self.done.is_set():
            threading.Event().wait()  # seen enough: hold the (daemon) writer here, quietly
        self.left -= 1
        if self.left <= 0:
            self.done.set()
        raise TimeoutError()


def test_the_status_writer_outlives_an_error_without_a_message() -> None:
    api = _SilentFailures(calls=3)
    writer = StatusWriter(SettingsIndex(), api, "mlflow-webhook", every=0.01).start()  # type: ignore[arg-type]
    assert api.done.wait(10), "the writer stopped trying after an error without a message"
    assert writer._thread.is_alive()
