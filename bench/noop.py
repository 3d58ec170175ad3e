"""The baselines for the benchmarks: the same gunicorn, TLS and worker settings, and an endpoint
that only parses the review and admits it (no classification, no patch); or, given a patch
file, answers every review with that patch (what the webhook answered for the benchmark's pod),
so the API server applies and stores the same change without any of our rules being run.

    python -m bench.noop CERT KEY PORT WORKERS [PATCH_FILE]
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

from flask import Flask, Response, request

from webhook.admission import parse_review, response
from webhook.config import Config
from webhook.patch import Op
from webhook.serve import Loaded, ServeOptions, Shared, serve


def noop_app(_opts: ServeOptions, _shared: Shared, patch: list[Op] | None = None) -> Loaded:
    app = Flask("noop")

    @app.post("/mutate")
    def mutate() -> Response:
        req = parse_review(request.get_data(cache=False))
        return Response(json.dumps(response(req, patch=patch)), mimetype="application/json")

    @app.get("/readyz")
    def readyz() -> Response:
        return Response("{}", mimetype="application/json")

    return Loaded(app, lambda _timeout: True)


if __name__ == "__main__":
    cert, key, port, workers = sys.argv[1:5]
    replay = json.loads(Path(sys.argv[5]).read_text()) if len(sys.argv) > 5 else None
    serve(
        ServeOptions(
            Config(),
            Path(cert),
            Path(key),
            port=int(port),
            workers=int(workers),
            log_level="warning",
        ),
        load=functools.partial(noop_app, patch=replay),
    )
