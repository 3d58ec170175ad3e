"""Prometheus metrics. Under gunicorn with several workers they are aggregated across processes
(prometheus_client's multiprocess mode, enabled by PROMETHEUS_MULTIPROC_DIR before import).

Each process writes its own files in that folder, and prometheus_client leaves the counters and
histograms of a dead process there, so that totals survive it: with workers replaced over and
over (crashes, timeouts, OOM kills), every scrape would read more files. The master folds a dead
worker's values into one archive file per type and removes the worker's (`retire`), under a
lock that every scrape takes too, so no scrape sees a value twice or not at all.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.mmap_dict import MmapedDict

# The files of a process's values that outlive it (live gauges are removed instead).
_KEPT = ("counter", "histogram")


@contextlib.contextmanager
def _folder_lock(folder: str, how: int) -> Iterator[None]:
    with open(os.path.join(folder, ".lock"), "a") as f:
        fcntl.flock(f, how)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


class _Collector(multiprocess.MultiProcessCollector):
    def collect(self) -> Any:
        with _folder_lock(self._path, fcntl.LOCK_SH):
            return list(super().collect())


def retire(pid: int, folder: str | None = None) -> None:
    """A worker exited: its counters and histograms are added to the archive files, its files
    removed (called by the master, once per worker)."""
    folder = folder or os.environ["PROMETHEUS_MULTIPROC_DIR"]
    with _folder_lock(folder, fcntl.LOCK_EX):
        multiprocess.mark_process_dead(pid, folder)
        for kind in _KEPT:
            dead = Path(folder) / f"{kind}_{pid}.db"
            if not dead.exists():
                continue
            archive = MmapedDict(str(Path(folder) / f"{kind}_archive.db"))
            try:
                for key, value, timestamp, _ in MmapedDict.read_all_values_from_file(str(dead)):
                    total, _ = archive.read_value(key)
                    archive.write_value(key, total + value, timestamp)
            finally:
                archive.close()
            dead.unlink()


def reload_errors(registry: CollectorRegistry | None = None) -> Counter:
    """Counted by the master, which alone reads the settings file; every worker shows it."""
    return Counter(
        "mlflow_webhook_settings_reload_errors",
        "Changes of the settings file that could not be used (the last good one stays)",
        registry=registry,
    )


class Metrics:
    def __init__(self) -> None:
        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        own = None if self.multiprocess else CollectorRegistry()
        self.registry = CollectorRegistry() if self.multiprocess else own
        if self.multiprocess:
            _Collector(self.registry)
        self.requests = Counter(
            "mlflow_webhook_admission_requests",
            "Admission requests by outcome and pod kind",
            ["outcome", "pod_kind"],
            registry=own,
        )
        self.latency = Histogram(
            "mlflow_webhook_admission_duration_seconds",
            "Time to answer one admission request",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=own,
        )
        self.settings = Gauge(
            "mlflow_webhook_settings_loaded",
            "MLflowSetting objects in the index (invalid ones included)",
            registry=own,
            multiprocess_mode="livemax",
        )
        self.invalid = Gauge(
            "mlflow_webhook_settings_invalid",
            "MLflowSetting objects that failed validation",
            registry=own,
            multiprocess_mode="livemax",
        )

        self.conflicts = Gauge(
            "mlflow_webhook_settings_conflicts",
            "Groups that more than one MLflowSetting claims in one namespace",
            registry=own,
            multiprocess_mode="livemax",
        )
        # Timestamps, not ages (an alert computes time() - x); "livemin": the worst worker.
        self.last_sync = Gauge(
            "mlflow_webhook_settings_last_sync_timestamp_seconds",
            "When this process last knew its settings to be current (a list, a watch event, "
            "a file load)",
            registry=own,
            multiprocess_mode="livemin",
        )
        # Server-wide values, set by whichever worker is scraped: the most recent one counts.
        self.certificate_expiry = Gauge(
            "mlflow_webhook_certificate_expiry_timestamp_seconds",
            "When the serving certificate expires",
            registry=own,
            multiprocess_mode="livemostrecent",
        )
        self.ready = Gauge(
            "mlflow_webhook_ready",
            "1 while the server answers correctly (as /readyz), else 0",
            registry=own,
            multiprocess_mode="livemostrecent",
        )
        self.reload_errors = reload_errors(own)
        self.source_failures = Counter(
            "mlflow_webhook_settings_source_failures",
            "Failed calls for the settings: a list, or a watch that was refused, broke, stalled "
            "or ended at once (each is followed by a list, after a back-off)",
            ["verb"],
            registry=own,
        )
        self.scrape_hooks: list[Callable[[], None]] = []  # run before each scrape

    def render(self) -> bytes:
        for hook in self.scrape_hooks:
            hook()
        assert self.registry is not None
        return generate_latest(self.registry)
