"""Prometheus metrics. Under gunicorn with several workers they are aggregated across processes
(prometheus_client's multiprocess mode, enabled by PROMETHEUS_MULTIPROC_DIR before import)."""

from __future__ import annotations

import os
from collections.abc import Callable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)


class Metrics:
    def __init__(self) -> None:
        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        own = None if self.multiprocess else CollectorRegistry()
        self.registry = CollectorRegistry() if self.multiprocess else own
        if self.multiprocess:
            multiprocess.MultiProcessCollector(self.registry)  # type: ignore[no-untyped-call]
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
        self.reload_errors = Counter(
            "mlflow_webhook_settings_reload_errors",
            "Changes of the settings file that could not be used (the last good one stays)",
            registry=own,
        )
        self.scrape_hooks: list[Callable[[], None]] = []  # run before each scrape

    def render(self) -> bytes:
        for hook in self.scrape_hooks:
            hook()
        assert self.registry is not None
        return generate_latest(self.registry)
