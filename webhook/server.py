"""The Flask app: /mutate, /healthz, /readyz, /metrics. I/O edge around `mutation.decide`."""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Protocol

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from webhook.admission import BadReview, Request, failure, parse_review, response
from webhook.config import Config
from webhook.metrics import Metrics
from webhook.mutation import Decision, decide, on_error
from webhook.settings.index import SettingsIndex
from webhook.validation import judge_setting

log = logging.getLogger("webhook.requests")

# How long /mutate waits for this process's settings before answering 503: well under the
# API server's timeout, so `failurePolicy` decides rather than the clock.
SYNC_WAIT = 2.0


class Health(Protocol):
    def ready(self) -> bool:
        """For /readyz: the server as a whole answers correctly now."""

    def wait_synced(self, timeout: float) -> bool:
        """Whether this process holds a complete list of settings (waiting up to `timeout`)."""

    def workers(self) -> dict[str, int]:
        """The server's workers by state (booting, serving, stalled), for /readyz."""

    def settings_age(self) -> float | None:
        """Seconds since the worker with the oldest settings knew them current, for /readyz
        (None: not known)."""

    def doubt(self) -> str | None:
        """Why this process's settings may lack one that exists (its source is failing), or
        None (mutation.decide)."""


class AlwaysReady:
    """For an index filled before the app starts (a file, a test)."""

    def ready(self) -> bool:
        return True

    def wait_synced(self, timeout: float) -> bool:
        return True

    def workers(self) -> dict[str, int]:
        return {}

    def settings_age(self) -> float | None:
        return None

    def doubt(self) -> str | None:
        return None


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body, allow_nan=False), status=status, mimetype="application/json")


def _error(code: int, message: str) -> Response:
    return _json(failure(code, message), code)


def create_app(
    index: SettingsIndex,
    config: Config,
    health: Health | None = None,
    metrics: Metrics | None = None,
) -> Flask:
    app = Flask("webhook")
    app.config["MAX_CONTENT_LENGTH"] = config.max_request_bytes
    metrics = metrics or Metrics()
    health = health or AlwaysReady()

    def refresh_settings_gauges() -> None:
        metrics.settings.set(len(index))
        metrics.invalid.set(len(index.errors()))
        metrics.conflicts.set(index.conflicts())

    app.extensions["refresh_settings_gauges"] = refresh_settings_gauges
    refresh_settings_gauges()

    @app.errorhandler(HTTPException)
    def http_error(e: HTTPException) -> Response:
        if e.code == 413:  # body over the limit: a bad request like any other
            return _error(400, f"body larger than {config.max_request_bytes} bytes")
        return _error(e.code or 500, e.description or e.name)

    @app.errorhandler(Exception)
    def unexpected(e: Exception) -> Response:
        log.exception("unexpected error")
        return _error(500, "internal error (logged)")

    def bad_request(reason: str, start: float) -> Response:
        _log(None, None, "bad-request", start, reason=reason)
        metrics.requests.labels("bad-request", "none").inc()
        return _error(400, reason)

    def read_review(start: float) -> Request | Response:
        """The request's AdmissionReview, or the 400 that says why it is not one."""
        try:
            body = request.get_data(cache=False)
        except HTTPException:
            raise  # over the size limit: answered by http_error
        except Exception as e:  # the HTTP server's body parser: a broken chunk, a short body
            return bad_request(f"body could not be read: {type(e).__name__}", start)
        if request.content_length is None and len(body) >= config.max_request_bytes:
            # Chunked: werkzeug stops reading at the limit instead of refusing the rest.
            return bad_request(f"body of {config.max_request_bytes} bytes or more", start)
        try:
            return parse_review(body)
        except BadReview as e:
            return bad_request(str(e), start)

    def not_ready(req: Request, start: float) -> Response:
        _log(req, None, "not-ready", start)
        metrics.requests.labels("not-ready", "none").inc()
        return _error(
            503,
            "the MLflow settings are not loaded yet (the webhook is starting, or cannot list "
            "them from the API server); try again",
        )

    @app.post("/mutate")
    def mutate() -> Response:
        start = time.perf_counter()
        req = read_review(start)
        if isinstance(req, Response):
            return req
        if not req.is_pod_create:
            decision = Decision(True, "ignored")
        elif not health.wait_synced(SYNC_WAIT):
            return not_ready(req, start)
        else:
            doubt = health.doubt()  # read before the index: a list that clears it came first
            try:
                decision = decide(req.obj, req.namespace, index, config, doubt)
            except RecursionError:
                _log(req, None, "bad-request", start, reason="nested too deeply")
                return _error(400, "request.object is nested too deeply")
            except Exception:
                log.exception("mutation failed for request %s", req.uid)
                decision = on_error(req.obj, config)
        elapsed = _log(req, decision, decision.outcome, start)
        metrics.requests.labels(decision.outcome, decision.kind.value).inc()
        metrics.latency.observe(elapsed)
        if decision.outcome == "unsure":  # an error, for failurePolicy to decide
            return _error(503, decision.message)
        body = response(
            req,
            allowed=decision.allowed,
            patch=decision.patch,
            warnings=decision.warnings,
            message=decision.message,
        )
        return _json(body)

    @app.post("/validate")
    def validate() -> Response:
        start = time.perf_counter()
        req = read_review(start)
        if isinstance(req, Response):
            return req
        if not req.is_setting_write:
            return _json(response(req))
        if not health.wait_synced(SYNC_WAIT):  # without the list, a duplicate goes unseen
            return not_ready(req, start)
        verdict = judge_setting(req.obj, req.namespace, index)
        _log(req, None, "accepted" if verdict.allowed else "refused", start)
        return _json(response(req, allowed=verdict.allowed, message=verdict.message))

    @app.get("/healthz")
    def healthz() -> Response:
        return _json({"status": "ok"})

    @app.get("/readyz")
    def readyz() -> Response:
        """Ready or not, the server's workers by state and how old the oldest settings they
        serve are: a server that cannot reach the API server stays ready (it answers from the
        settings it last listed) and says here since when."""
        about: dict[str, Any] = {"workers": w} if (w := health.workers()) else {}
        if (age := health.settings_age()) is not None:
            about["settingsAgeSeconds"] = round(age, 1)
        if health.ready():
            return _json({"status": "ready", "settings": len(index), **about})
        return _json({"status": "not ready: settings not loaded, or shutting down", **about}, 503)

    @app.get("/metrics")
    def prometheus() -> Response:
        return Response(metrics.render(), mimetype="text/plain; version=0.0.4")

    return app


def _log(
    req: Request | None, decision: Decision | None, outcome: str, start: float, **extra: str
) -> float:
    """One structured line per request. Pods are never logged: env values could be sensitive."""
    elapsed = time.perf_counter() - start
    if log.isEnabledFor(logging.INFO):
        line: dict[str, Any] = {"outcome": outcome, "ms": round(elapsed * 1000, 3), **extra}
        if req is not None:
            line.update(
                uid=req.uid,
                namespace=req.namespace,
                resource=req.resource,
                operation=req.operation,
                dryRun=req.dry_run,
            )
        if decision is not None:
            line.update(kind=decision.kind.value, group=decision.group, setting=decision.setting)
            if decision.message:
                line["message"] = decision.message
        log.info(json.dumps(line))
    return elapsed
