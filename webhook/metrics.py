"""Prometheus metrics. Under gunicorn with several workers they are aggregated across processes
(prometheus_client's multiprocess mode, enabled by PROMETHEUS_MULTIPROC_DIR before import)."""

from __future__ import annotations

import os

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

    def render(self) -> bytes:
        assert self.registry is not None
        return generate_latest(self.registry)
