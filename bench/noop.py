"""The baseline for bench/admission.py: the same gunicorn, TLS and worker settings, and an
endpoint that only parses the review and admits it (no classification, no patch)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from flask import Flask, Response, request

from webhook.admission import parse_review, response
from webhook.config import Config
from webhook.serve import Loaded, ServeOptions, Shared, serve
from webhook.settings.index import SettingsIndex


def noop_app(_opts: ServeOptions, _shared: Shared) -> Loaded:
    app = Flask("noop")

    @app.post("/mutate")
    def mutate() -> Response:
        req = parse_review(request.get_data(cache=False))
        return Response(json.dumps(response(req)), mimetype="application/json")

    @app.get("/readyz")
    def readyz() -> Response:
        return Response("{}", mimetype="application/json")

    return Loaded(app, lambda _timeout: True)


if __name__ == "__main__":
    cert, key, port, workers = sys.argv[1:5]
    serve(
        ServeOptions(
            Config(),
            Path(cert),
            Path(key),
            port=int(port),
            workers=int(workers),
            log_level="warning",
        ),
        SettingsIndex(),
        load=noop_app,
    )
