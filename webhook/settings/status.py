"""MLflowSetting status, so `kubectl get mlflowsettings` says which settings work: a `Ready`
condition (reason Valid, Invalid or Conflict, with the field or the other objects named) and
`observedGeneration`, in the usual Kubernetes shape.

Every webhook process knows every verdict (its own index), but only one writes: the holder of a
coordination.k8s.io Lease in the webhook's namespace, so replicas never fight over a status.
Writes go through the `status` subresource only, and only when the status says something else.
Nothing here can touch admission: failures are logged and tried again later.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import socket
import threading
import time
from typing import Any

from webhook import API_GROUP, API_VERSION, PLURAL
from webhook.brief import brief
from webhook.kube import Api, Conflict
from webhook.settings.index import Readiness, SettingsIndex

log = logging.getLogger(__name__)

LEASE = "mlflow-webhook-status"
LEASE_SECONDS = 15
FIELD_MANAGER = "mlflow-webhook-status"


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _micro(t: datetime.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _ready_condition(status: Any) -> dict[str, Any]:
    conditions = (status or {}).get("conditions") if isinstance(status, dict) else None
    for c in conditions or []:
        if isinstance(c, dict) and c.get("type") == "Ready":
            return c
    return {}


def stale(r: Readiness) -> bool:
    """The setting's status does not say what its verdict is."""
    current = _ready_condition(r.current)
    return (
        (r.current or {}).get("observedGeneration") != r.generation
        or current.get("status") != ("True" if r.ready else "False")
        or current.get("reason") != r.reason
        or current.get("message") != r.message
        or current.get("observedGeneration") != r.generation
    )


def status_of(r: Readiness, now: datetime.datetime) -> dict[str, Any]:
    current = _ready_condition(r.current)
    status = "True" if r.ready else "False"
    since = current.get("lastTransitionTime") if current.get("status") == status else None
    return {
        "observedGeneration": r.generation,
        "conditions": [
            {
                "type": "Ready",
                "status": status,
                "reason": r.reason,
                "message": r.message[:32000],
                "observedGeneration": r.generation,
                "lastTransitionTime": since or now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
        ],
    }


class Lease:
    """One holder at a time among all webhook processes; a silent holder loses it after
    LEASE_SECONDS. Optimistic concurrency (resourceVersion) settles races."""

    def __init__(self, api: Api, namespace: str, identity: str) -> None:
        self.api, self.identity = api, identity
        self.path = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
        self.namespace = namespace

    def hold(self) -> bool:
        now = _now()
        lease = self.api.call("GET", f"{self.path}/{LEASE}")
        if lease is None:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": LEASE, "namespace": self.namespace},
                "spec": self._spec(now, now, 0),
            }
            try:
                self.api.call("POST", self.path, body)
            except Conflict:
                return False
            return True
        spec = lease.get("spec") or {}
        mine = spec.get("holderIdentity") == self.identity
        if not mine and not self._expired(spec, now):
            return False
        transitions = int(spec.get("leaseTransitions") or 0) + (0 if mine else 1)
        acquired = spec.get("acquireTime") if mine else None
        lease["spec"] = self._spec(now, acquired or now, transitions)
        try:
            self.api.call("PUT", f"{self.path}/{LEASE}", lease)
        except Conflict:
            return False
        if not mine:
            log.info("now writing MLflowSetting status (lease %s)", LEASE)
        return True

    def release(self) -> None:
        """Give the lease up now (a stopping process), so another takes over at once."""
        lease = self.api.call("GET", f"{self.path}/{LEASE}")
        if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.identity:
            return
        lease["spec"] = {**lease["spec"], "holderIdentity": None, "renewTime": None}
        with contextlib.suppress(Conflict):
            self.api.call("PUT", f"{self.path}/{LEASE}", lease)

    def _spec(self, now: datetime.datetime, acquired: Any, transitions: int) -> dict[str, Any]:
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": LEASE_SECONDS,
            "acquireTime": acquired if isinstance(acquired, str) else _micro(acquired),
            "renewTime": _micro(now),
            "leaseTransitions": transitions,
        }

    @staticmethod
    def _expired(spec: dict[str, Any], now: datetime.datetime) -> bool:
        try:
            renewed = datetime.datetime.fromisoformat(str(spec["renewTime"]).replace("Z", "+00:00"))
        except (KeyError, ValueError):
            return True
        seconds = int(spec.get("leaseDurationSeconds") or LEASE_SECONDS)
        return renewed + datetime.timedelta(seconds=seconds) < now


class StatusWriter:
    """Writes stale statuses while this process holds the lease: at once when the index
    changes (`poke`), and every `every` seconds (to renew the lease and catch up)."""

    def __init__(self, index: SettingsIndex, api: Api, namespace: str, every: float = 2.0) -> None:
        self.index = index
        self.api = api
        self.lease = Lease(self.api, namespace, f"{socket.gethostname()}/{os.getpid()}")
        self.every = every
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="status-writer", daemon=True)

    def start(self) -> StatusWriter:
        self._thread.start()
        return self

    def poke(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        try:
            self.lease.release()
        except Exception as e:
            log.info("lease not released: %s", brief(e, 200))

    def _run(self) -> None:
        leading, last = False, 0.0
        while True:
            poked = self._wake.is_set()
            self._wake.clear()
            try:
                was, leading = leading, self.lease.hold()
                # Verdicts are computed when something changed, on taking over, and now and
                # then to catch up; the lease is renewed every round.
                if leading and (poked or not was or time.monotonic() - last > 30):
                    last = time.monotonic()
                    self._write()
            except Exception as e:  # the API server away, RBAC missing: admission goes on
                log.warning("cannot write MLflowSetting status: %s", brief(e, 200))
            self._wake.wait(self.every)

    def _write(self) -> None:
        now = _now()
        for r in self.index.readiness():
            if not stale(r):
                continue
            namespace, name = r.ref.split("/", 1)
            path = f"/apis/{API_GROUP}/{API_VERSION}/namespaces/{namespace}/{PLURAL}/{name}/status"
            try:
                self.api.call(
                    "PATCH",
                    path,
                    {"status": status_of(r, now)},
                    content_type="application/merge-patch+json",
                    query=[("fieldManager", FIELD_MANAGER)],
                )
            except Exception as e:  # deleted meanwhile, say: the next round sees the rest
                log.warning("status of %s not written: %s", r.ref, brief(e, 200))
