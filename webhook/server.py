"""The Flask app: /mutate, /healthz, /readyz, /metrics. I/O edge around `mutation.decide`."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from webhook.admission import BadReview, Request, parse_review, response
from webhook.config import Config
from webhook.metrics import Metrics
from webhook.mutation import Decision, decide
from webhook.pods import kind_of
from webhook.settings.index import SettingsIndex

log = logging.getLogger("webhook.requests")


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json")


def create_app(
    index: SettingsIndex,
    config: Config,
    ready: Callable[[], bool] = lambda: True,
    metrics: Metrics | None = None,
) -> Flask:
    app = Flask("webhook")
    app.config["MAX_CONTENT_LENGTH"] = config.max_request_bytes
    metrics = metrics or Metrics()

    def refresh_settings_gauges() -> None:
        metrics.settings.set(len(index))
        metrics.invalid.set(len(index.errors()))
        metrics.conflicts.set(index.conflicts())

    app.extensions["refresh_settings_gauges"] = refresh_settings_gauges
    refresh_settings_gauges()

    @app.errorhandler(HTTPException)
    def http_error(e: HTTPException) -> Response:
        if e.code == 413:  # body over the limit: a bad request like any other
            return _json({"error": f"body larger than {config.max_request_bytes} bytes"}, 400)
        return _json({"error": e.description or e.name}, e.code or 500)

    @app.errorhandler(Exception)
    def unexpected(e: Exception) -> Response:
        log.exception("unexpected error")
        return _json({"error": "internal error (logged)"}, 500)

    @app.post("/mutate")
    def mutate() -> Response:
        start = time.perf_counter()
        try:
            req = parse_review(request.get_data(cache=False))
        except BadReview as e:
            _log(None, None, "bad-request", start, reason=str(e))
            return _json({"error": str(e)}, 400)
        if not req.is_pod_create:
            decision = Decision(True, "ignored")
        else:
            try:
                decision = decide(req.obj, req.namespace, index, config)
            except Exception:  # a bug must not block pods: admit, warn, and log it
                log.exception("mutation failed for request %s", req.uid)
                decision = Decision(True, "error", kind=kind_of(req.obj, config))
                decision.warnings.append("mlflow webhook: internal error; MLflow not injected")
        body = response(
            req,
            allowed=decision.allowed,
            patch=decision.patch,
            warnings=decision.warnings,
            message=decision.message,
        )
        elapsed = _log(req, decision, decision.outcome, start)
        metrics.requests.labels(decision.outcome, decision.kind.value).inc()
        metrics.latency.observe(elapsed)
        return _json(body)

    @app.get("/healthz")
    def healthz() -> Response:
        return _json({"status": "ok"})

    @app.get("/readyz")
    def readyz() -> Response:
        if ready():
            return _json({"status": "ready", "settings": len(index)})
        return _json({"status": "waiting for the first list of settings"}, 503)

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
