"""`mlflow-webhook serve`: the Flask app under gunicorn, with TLS, gevent workers
(`webhook.worker`) and a master that outlives any worker.

The master prepares what every worker shares before it forks: the settings file, parsed once
(workers inherit the index), the metrics folder (removed only by the master, when it exits), and
the run state (`webhook.runstate`). With the cluster source each worker lists and watches for
itself after the fork (gevent-friendly sockets exist only there) and accepts connections only
once its list is complete.

On SIGTERM the master does not stop at once: `/readyz` turns 503 in every worker, answers carry
`Connection: close`, and the listener keeps serving for `shutdown_delay` seconds, so load
balancers and the API server's keep-alive connections move elsewhere; then workers stop taking
connections, finish what is in flight, and exit. A second SIGTERM (or SIGINT) stops at once.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import resource
import shutil
import ssl
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter

from webhook.config import Config
from webhook.memory import release_free_memory
from webhook.runstate import RunState, WorkerState
from webhook.settings.index import SettingsIndex
from webhook.tlscontext import ReloadingContext, first_context, not_after

if TYPE_CHECKING:
    from webhook.kube import Credentials
    from webhook.settings.sources import SettingsFile

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServeOptions:
    config: Config
    cert_file: Path
    key_file: Path
    watch_namespace: str | None = None
    host: str = "127.0.0.1"
    port: int = 8443
    workers: int = 2
    connections: int = 1000  # per worker
    log_level: str = "info"
    request_timeout: float = 10.0  # TLS handshake, and each request's headers and body
    keepalive: float = 120.0  # idle time between requests; above Go's 90 s client default
    shutdown_delay: float = 5.0  # after SIGTERM: not ready, still serving
    ready_timeout: float = 10.0  # how long a worker waits for its settings before accepting
    status_namespace: str | None = None  # with the cluster source: write setting status (Lease)
    webhook_configuration: str = ""  # with the cluster source: align its matchConditions


@dataclass(frozen=True)
class Loaded:
    """One worker's WSGI app, whether its settings are complete (waits up to `timeout`), and
    what to do when the worker stops."""

    app: Any
    wait_synced: Callable[[float], bool]
    stop: Callable[[], None] = lambda: None


@dataclass(frozen=True)
class Shared:
    """What the master prepared before the fork."""

    runstate: RunState
    # The settings file, as the master holds it (workers inherit the parsed index and follow
    # its newer versions); None with the cluster source.
    settings: SettingsFile | None = None
    # With the cluster source: read once (a kubeconfig's inline data is written to files once).
    credentials: Credentials | None = None


Loader = Callable[[ServeOptions, Shared], Loaded]


def build_app(opts: ServeOptions, shared: Shared) -> Loaded:
    """Index, source and Flask app for one worker process."""
    from webhook.metrics import Metrics  # after PROMETHEUS_MULTIPROC_DIR is set
    from webhook.server import create_app

    metrics = Metrics()
    metrics.scrape_hooks += [
        lambda: metrics.ready.set(1 if shared.runstate.ready() else 0),
        lambda: metrics.certificate_expiry.set(not_after(opts.cert_file)),
    ]

    runstate = shared.runstate

    def synced(at: float | None = None) -> None:
        metrics.last_sync.set(at or time.time())
        runstate.synced(at)

    if shared.settings is not None:
        from webhook.settings.sources import SnapshotFollower

        index = shared.settings.index
        app = create_app(index, opts.config, _Health(runstate, _always, _sure), metrics)
        follower = SnapshotFollower(
            shared.settings.snapshot,
            index,
            lambda: runstate.published,
            on_reload=app.extensions["refresh_settings_gauges"],
            # As current as the master's last look at the file, while it holds that version.
            on_current=lambda: synced(runstate.confirmed),
        )
        synced(runstate.confirmed)
        follower.start()
        return Loaded(app, _always)
    from webhook.kube import Api  # in the worker: see webhook/kube.py
    from webhook.settings.watch import ClusterWatcher

    index = SettingsIndex(opts.config.default_namespace, opts.config.login_names)
    assert shared.credentials is not None
    client = Api(shared.credentials)
    failures = {verb: metrics.source_failures.labels(verb) for verb in ("list", "watch")}
    watcher = ClusterWatcher(
        index,
        client,
        opts.watch_namespace,
        on_sync=synced,
        on_failure=lambda verb: failures[verb].inc(),
    )
    health = _Health(shared.runstate, watcher.ready.wait, lambda: watcher.doubt)
    app = create_app(index, opts.config, health, metrics)
    changed = [app.extensions["refresh_settings_gauges"]]
    stop: Callable[[], None] = _nothing
    if opts.status_namespace:
        from webhook.settings.status import StatusWriter

        writer = StatusWriter(index, client, opts.status_namespace).start()
        changed.append(writer.poke)
        stop = writer.stop

    def on_change() -> None:
        for f in changed:
            f()

    watcher.on_change = on_change
    watcher.start()
    if opts.webhook_configuration:
        import threading

        from webhook.routing import align

        args = (client, opts.config, opts.webhook_configuration)
        threading.Thread(target=align, args=args, name="align", daemon=True).start()
    return Loaded(app, watcher.ready.wait, stop)


def _always(_timeout: float) -> bool:
    return True


def _sure() -> None:
    """A settings file: the master checked it; no version of it can lack a setting unseen."""


def _nothing() -> None:
    pass


@dataclass(frozen=True)
class _Health:
    runstate: RunState
    wait_synced: Callable[[float], bool]
    doubt: Callable[[], str | None]

    def ready(self) -> bool:
        return self.runstate.ready()

    def workers(self) -> dict[str, int]:
        return self.runstate.counts()

    def settings_age(self) -> float | None:
        return self.runstate.settings_age()


def kube_client(kubeconfig: Path | None) -> Any:
    from webhook.kube import Api, credentials  # in the worker: see webhook/kube.py

    return Api(credentials(kubeconfig))


class _Arbiter(Arbiter):  # type: ignore[misc]
    """gunicorn's master with a shutdown delay: the first SIGTERM drains, it does not stop."""

    drain_until: float | None = None

    def handle_term(self) -> None:
        delay = self.app.opts.shutdown_delay
        if self.drain_until is None and delay > 0:
            self.app.runstate.start_draining()
            self.drain_until = time.monotonic() + delay
            self.log.info(
                "SIGTERM: not ready any more; serving %.1f s longer, then stopping", delay
            )
            return
        raise StopIteration

    def manage_workers(self) -> None:
        if self.drain_until is not None:
            if time.monotonic() >= self.drain_until:
                raise StopIteration
            return  # no worker is started to be stopped a moment later
        self.app.master_tick()  # before any fork: a new worker inherits what it did
        super().manage_workers()

    def stop(self, graceful: bool = True) -> None:
        self.app.runstate.start_stopping()
        super().stop(graceful)


class GunicornServer(BaseApplication):  # type: ignore[misc]
    """gunicorn with the webhook's settings; `load` builds the WSGI app in each worker."""

    def __init__(self, opts: ServeOptions, shared: Shared, load: Loader = build_app) -> None:
        self.opts = opts
        self.shared = shared
        self.runstate = shared.runstate
        self._load = load
        ReloadingContext(opts.cert_file, opts.key_file)  # fail now, in the master, if unusable
        if shared.settings is not None:
            self.runstate.publish(shared.settings.generation)
            self.runstate.confirm()
        super().__init__()

    def master_tick(self) -> None:
        """On the master's loop (about once a second): the settings file read again if it
        changed, a good new version published to the workers (sources.py, SettingsFile)."""
        settings = self.shared.settings
        if settings is None:
            return
        changed = settings.check()
        if changed is False:
            self.reload_errors.inc()
            return
        if changed:
            self.runstate.publish(settings.generation)
        self.runstate.confirm()

    def load_config(self) -> None:
        from webhook.metrics import reload_errors, retire  # after PROMETHEUS_MULTIPROC_DIR is set

        self.reload_errors = reload_errors()  # counted by the master, which reads the file

        o = self.opts
        runstate = self.runstate

        def pre_fork(_server: Any, worker: Any) -> None:
            worker.slot = runstate.reserve()

        def post_fork(_server: Any, worker: Any) -> None:
            runstate.set(worker.slot, WorkerState.BOOTING)
            runstate.mine = worker.slot

        def child_exit(_server: Any, worker: Any) -> None:
            runstate.release(worker.slot)
            retire(worker.pid)

        settings: dict[str, Any] = {
            "bind": f"[{o.host}]:{o.port}" if ":" in o.host else f"{o.host}:{o.port}",
            "workers": o.workers,
            "worker_class": "webhook.worker.WebhookWorker",
            "worker_connections": o.connections,
            # gunicorn takes whole seconds; our worker waits the exact time (opts.keepalive).
            "keepalive": max(1, math.ceil(o.keepalive)),
            "timeout": 30,  # a worker silent this long (stuck) is replaced
            "graceful_timeout": 20,
            "backlog": 1024,
            "loglevel": o.log_level,
            "accesslog": None,
            # TLS is ours, not gunicorn's: its sendfile would write a file past it, in clear.
            "sendfile": False,
            "pre_fork": pre_fork,
            "post_fork": post_fork,
            "child_exit": child_exit,
            "post_worker_init": lambda _worker: _setup_logging(o.log_level),
            "proc_name": "mlflow-webhook",
            "control_socket_disable": True,  # it would write under $HOME (read-only root fs)
        }
        for key, value in settings.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        """In the worker, after gevent patched the standard library: build what uses sockets."""
        self.tls = first_context(self.opts.cert_file, self.opts.key_file)
        self.runtime = self._load(self.opts, self.shared)
        return self.runtime.app

    def run(self) -> None:
        _Arbiter(self).run()


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s", force=True
    )
    logging.getLogger("gunicorn.error").addFilter(_listening_over_tls)


def _listening_over_tls(record: logging.LogRecord) -> bool:
    """gunicorn logs its listener as http:// (it does not know of the TLS, which the worker sets
    up per connection): an admin reading the log must not think the webhook serves plain HTTP."""
    if str(record.msg).startswith("Listening at: %s") and isinstance(record.args, tuple):
        record.args = (str(record.args[0]).replace("http://", "https://"), *record.args[1:])
    return True


def _all_descriptors() -> None:
    """As many open files as the system lets this user have (the soft limit is often 1,024):
    each worker takes `--connections` (1,000) at once."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft != resource.RLIM_INFINITY and soft < want:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def serve(
    opts: ServeOptions,
    settings: SettingsFile | None = None,
    load: Loader = build_app,
    credentials: Credentials | None = None,
) -> None:
    """`settings`: the settings file, loaded (the workers inherit it); None to watch the
    cluster, with `credentials`."""
    _setup_logging(opts.log_level)
    _all_descriptors()
    master = os.getpid()
    own_metrics_dir = not os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if own_metrics_dir:  # the workers' metric files; outlives every worker
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="mlflow-webhook-")
    # What every worker imports, imported once here (after the metrics folder is known): the
    # workers share these pages, and the parse's garbage goes back to the system before the fork.
    import webhook.server  # noqa: F401

    release_free_memory()
    try:
        try:
            server = GunicornServer(opts, Shared(RunState(), settings, credentials), load)
        except (OSError, ssl.SSLError) as e:
            raise SystemExit(f"cannot load the TLS certificate: {e}") from None
        server.run()
    finally:
        if own_metrics_dir and os.getpid() == master:  # workers leave through here too
            with contextlib.suppress(OSError):
                shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"])
