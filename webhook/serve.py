"""`mlflow-webhook serve`: the Flask app under gunicorn (gthread workers, keep-alive) with TLS.

Each worker builds its own index (and, for the cluster source, its own watch) after the fork,
so no lock or connection is shared across processes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import ssl
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gunicorn.app.base import BaseApplication

from webhook.config import Config
from webhook.settings.index import SettingsIndex
from webhook.settings.sources import load_file
from webhook.tls import ReloadingContext


@dataclass(frozen=True)
class ServeOptions:
    config: Config
    cert_file: Path
    key_file: Path
    settings_file: Path | None = None  # None: watch the cluster
    kubeconfig: Path | None = None
    watch_namespace: str | None = None
    host: str = "127.0.0.1"
    port: int = 8443
    workers: int = 2
    threads: int = 4
    log_level: str = "info"


def build_app(opts: ServeOptions) -> Any:
    """Index, source and Flask app for one worker process."""
    from webhook.metrics import Metrics  # after PROMETHEUS_MULTIPROC_DIR is set
    from webhook.server import create_app

    index = SettingsIndex(opts.config.default_namespace)
    metrics = Metrics()
    ready: Callable[[], bool] = lambda: True  # noqa: E731
    if opts.settings_file is not None:
        load_file(opts.settings_file, index)
        app = create_app(index, opts.config, ready, metrics)
    else:
        from webhook.settings.sources import ClusterWatcher

        app = create_app(index, opts.config, lambda: watcher.ready.is_set(), metrics)
        watcher = ClusterWatcher(
            index,
            kube_client(opts.kubeconfig),
            opts.watch_namespace,
            on_change=app.extensions["refresh_settings_gauges"],
        ).start()
    return app


def kube_client(kubeconfig: Path | None) -> Any:
    from kubernetes import config

    if kubeconfig is not None:
        return config.new_client_from_config(str(kubeconfig))
    config.load_incluster_config()
    from kubernetes import client

    return client.ApiClient()


class GunicornServer(BaseApplication):  # type: ignore[misc]
    """gunicorn with the webhook's settings; `load` builds the WSGI app in each worker."""

    def __init__(self, opts: ServeOptions, load: Callable[[ServeOptions], Any] = build_app) -> None:
        self.opts = opts
        self._load = load
        self.tls = ReloadingContext(opts.cert_file, opts.key_file)
        super().__init__()

    def load_config(self) -> None:
        from prometheus_client import multiprocess

        o = self.opts
        tls = self.tls
        settings: dict[str, Any] = {
            "bind": f"[{o.host}]:{o.port}" if ":" in o.host else f"{o.host}:{o.port}",
            "workers": o.workers,
            "threads": o.threads,
            "worker_class": "gthread",
            "keepalive": 75,  # the API server reuses connections; outlive its idle timeout
            "timeout": 30,
            "graceful_timeout": 10,
            "certfile": str(o.cert_file),
            "keyfile": str(o.key_file),
            "ssl_context": lambda _conf, _default: tls.get(),
            "loglevel": o.log_level,
            "accesslog": None,
            "child_exit": lambda _server, worker: multiprocess.mark_process_dead(  # type: ignore[no-untyped-call]
                worker.pid
            ),
            "post_worker_init": lambda _worker: _setup_logging(o.log_level),
            "proc_name": "mlflow-webhook",
            "control_socket_disable": True,  # it would write under $HOME (read-only root fs)
        }
        for key, value in settings.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        return self._load(self.opts)


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s", force=True
    )


def serve(opts: ServeOptions, load: Callable[[ServeOptions], Any] = build_app) -> None:
    _setup_logging(opts.log_level)
    if opts.settings_file is not None:
        load_file(opts.settings_file, SettingsIndex(opts.config.default_namespace))  # fail fast
    with contextlib.ExitStack() as stack:
        if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # the workers' metric files
            metrics_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="mlflow-webhook-"))
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        try:
            server = GunicornServer(opts, load)
        except (OSError, ssl.SSLError) as e:
            raise SystemExit(f"cannot load the TLS certificate: {e}") from None
        server.run()
