"""The environment MLflow's client runs in, for `copy-artifacts` and `check` alike: the tracking
URI the group's setting gave the pod, judged the same way, and no call beyond the tracking
server and the artifact store (clusters are often offline; MLflow's telemetry is on by default,
and its own retries would outlast any deadline of ours)."""

from __future__ import annotations

import os

from webhook.settings import rules

# What MLflow's client can talk to: a tracking server, Databricks (never a local store here).
_REACHABLE_URI = r"^(https?://[^/\s]+(/\S*)?|databricks(://\S+)?)$"


def tracking_uri_problem() -> str | None:
    """Why MLFLOW_TRACKING_URI cannot be used, if it cannot (the value is never echoed)."""
    tracking_uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    if not tracking_uri:
        return (
            "MLFLOW_TRACKING_URI is not set: this pod got no MLflow setting (is its namespace "
            "labelled mlflow.primehub.io/injection=enabled? does `kubectl get mlflowsettings` "
            "there show its group's setting, or one with no group, READY? is the webhook "
            "running?)"
        )
    if not rules.matches(_REACHABLE_URI, tracking_uri):
        return (
            "MLFLOW_TRACKING_URI is not a tracking server's URL (http(s)://host or "
            "databricks): check trackingUri in the group's MLflowSetting"
        )
    return None


def quiet_client(request_timeout: int) -> None:
    """MLflow's client makes one attempt per request (the caller retries) and nothing else."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(request_timeout))
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    os.environ["DO_NOT_TRACK"] = "true"
