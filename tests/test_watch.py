"""The cluster source of the settings (webhook/settings/watch.py) against a real kube-apiserver,
also when the API server or the path to it misbehaves: changes arrive within seconds, a restart
is survived, a refused, cut short or stalled watch neither storms the API server nor goes stale
unseen, the last settings keep being served meanwhile, and the warnings say what to check."""

from __future__ import annotations

import base64
import http.server
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import jsonpatch
import pytest
import requests
import yaml

from tests.cluster import EXAMPLES, PLAIN_USER, Installed, control_plane, pod_file
from tests.procs import free_port, wait_until
from tests.promtext import total
from tests.reviews import pod_review
from tests.tcpproxy import TcpProxy
from tests.test_cluster import env_of
from tests.webhookproc import WebhookProcess, serving_certs
from webhook.kube import Api, Credentials
from webhook.settings.index import SettingsIndex
from webhook.settings.watch import SILENCE, ClusterWatcher, Expired

LOGGER = "webhook.settings.watch"


def _tracking_uri(installed: Installed) -> str | None:
    pod = installed.create(pod_file("job", unique=True), dry_run=True).json()
    env = env_of(pod["spec"]["containers"][0])
    return env["MLFLOW_TRACKING_URI"]["value"] if "MLFLOW_TRACKING_URI" in env else None


def test_a_changed_setting_reaches_the_next_pod_within_two_seconds(installed: Installed) -> None:
    setting = next(
        d
        for d in yaml.safe_load_all((EXAMPLES / "settings.yaml").read_text())
        if d["metadata"]["name"] == "phusers"
    )
    setting["spec"]["trackingUri"] = "http://app-mlflow-new:5000"
    assert installed.apply([setting]).returncode == 0
    changed = time.monotonic()
    wait_until(lambda: _tracking_uri(installed) == "http://app-mlflow-new:5000", 2, "update")
    assert time.monotonic() - changed < 2

    installed.cp.kubectl("delete", "-n", "hub", "mlflowsetting", "phusers")
    deleted = time.monotonic()
    wait_until(lambda: _tracking_uri(installed) is None, 2, "delete")
    assert time.monotonic() - deleted < 2
    # Put it back for the other tests.
    assert installed.apply((EXAMPLES / "settings.yaml").read_text()).returncode == 0
    wait_until(lambda: _tracking_uri(installed) == "http://app-mlflow-xyz12:5000", 5, "restore")


def test_the_settings_watch_reconnects_after_the_api_server_restarts(installed: Installed) -> None:
    installed.cp.restart_apiserver()  # the webhook's watch connection drops
    setting = """
apiVersion: mlflow.primehub.io/v1alpha1
kind: MLflowSetting
metadata: {name: research-team, namespace: team-b}
spec: {group: Research_Team, trackingUri: "http://mlflow.team-b:5000"}
"""
    assert installed.apply(setting).returncode == 0
    notebook = pod_file("notebook", unique=True)
    del notebook["metadata"]["namespace"]

    def injected() -> bool:
        pod = installed.create(notebook, "team-b", dry_run=True).json()
        return (
            env_of(pod["spec"]["containers"][0]).get("MLFLOW_TRACKING_URI", {}).get("value")
            == "http://mlflow.team-b:5000"
        )

    # Listed again after a back-off of at most 30 s (45 with its jitter), once the API server
    # is back.
    wait_until(injected, 60, "the change made after the restart")
    installed.cp.kubectl("delete", "-n", "team-b", "mlflowsetting", "research-team")
    wait_until(lambda: not injected(), 5, "delete")


def first_warning(api: Api, caplog: pytest.LogCaptureFixture) -> str:
    """What the settings watch logs when its list fails (it never becomes ready)."""
    watcher = ClusterWatcher(SettingsIndex(), api)
    with caplog.at_level("WARNING", logger=LOGGER):
        watcher.start()
        try:
            wait_until(lambda: "cannot list mlflowsettings" in caplog.text, 10, "the warning")
        finally:
            watcher.stop()
    assert not watcher.ready.is_set()
    return caplog.text


def test_an_identity_that_may_not_list_settings_is_named_in_the_log(
    installed: Installed, caplog: pytest.LogCaptureFixture
) -> None:
    """The certificate keeper's identity may not list MLflowSettings: the watch's warning says
    what to check (RBAC) instead of a bare HTTP 403."""
    text = first_warning(installed.cp.client(installed.cp.certs_kubeconfig), caplog)
    assert "HTTP 403" in text
    assert "the webhook's identity may not list mlflowsettings (manifests/base/rbac.yaml)" in text


def test_a_cluster_without_the_crd_is_named_in_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A real API server where the CRD was never installed answers 404: the warning asks for it."""
    with control_plane(tmp_path) as bare:
        text = first_warning(bare.client(), caplog)
    assert "HTTP 404" in text
    assert "no mlflowsettings resource; is the CRD installed (manifests/base/crd.yaml)?" in text


def test_a_watch_from_an_expired_version_ends_so_the_settings_are_listed_again(
    installed: Installed,
) -> None:
    watcher = ClusterWatcher(SettingsIndex(), installed.cp.client(installed.cp.webhook_kubeconfig))
    started = time.monotonic()
    with pytest.raises(Expired):
        watcher._watch("1")  # long compacted away: the API server answers 410 Gone
    assert time.monotonic() - started < 30  # at once, not at the watch's end


LIST_ONLY = f"""
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {{name: tests-settings-list-only}}
rules: [{{apiGroups: [mlflow.primehub.io], resources: [mlflowsettings], verbs: [get, list]}}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: tests-settings-list-only}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: tests-settings-list-only}}
subjects: [{{apiGroup: rbac.authorization.k8s.io, kind: User, name: "{PLAIN_USER}"}}]
"""


def failing_watcher(api: Api, failures: int) -> tuple[ClusterWatcher, list[tuple[float, str]]]:
    """A watcher run until it has failed `failures` times: when and what failed."""
    seen: list[tuple[float, str]] = []
    watcher = ClusterWatcher(
        SettingsIndex(), api, on_failure=lambda verb: seen.append((time.monotonic(), verb))
    )
    watcher.start()
    try:
        # 1 + 2 + 4 + 8 s of back-off and more, with jitter up to half as much again.
        wait_until(lambda: len(seen) >= failures, 60, f"{failures} failures")
    finally:
        watcher.stop()
    return watcher, seen


def test_a_watch_refused_by_rbac_costs_a_few_lists_a_minute_not_a_storm(
    installed: Installed, caplog: pytest.LogCaptureFixture
) -> None:
    """An identity that may list the settings but not watch them: each list works and each
    watch is refused. One back-off for both, not reset by the lists that work, so the lists
    slow to about two a minute (before: the back-off began anew after every list, 8 lists in
    5 s, forever); the warning names the verb refused."""
    assert installed.apply(LIST_ONLY).returncode == 0
    cp = installed.cp

    before = cp.settings_calls("list")
    with caplog.at_level("WARNING", logger=LOGGER):
        watcher, failed = failing_watcher(cp.client(cp.plain_kubeconfig), 5)
    listed = cp.settings_calls("list") - before
    assert [verb for _, verb in failed[:5]] == ["watch"] * 5
    assert failed[4][0] - failed[0][0] >= 1 + 2 + 4 + 8
    assert listed <= 6  # one list before each watch, and one that may be on its way
    assert watcher.ready.is_set()  # it serves meanwhile, from settings listed moments ago
    assert "cannot watch mlflowsettings (ApiError: HTTP 403" in caplog.text
    assert "the webhook's identity may not watch mlflowsettings" in caplog.text


class _EndsWatchesAtOnce(http.server.BaseHTTPRequestHandler):
    """A fake API server, for what no real one does by itself but a proxy or load balancer in
    front of one can: every watch answered 200 and ended at once, with nothing in it. It
    lists no settings."""

    server: Any

    def do_GET(self) -> None:
        watching = parse_qs(urlparse(self.path).query).get("watch") == ["true"]
        self.server.calls.append("watch" if watching else "list")
        body = b"" if watching else json.dumps({"items": [], "metadata": {"resourceVersion": "7"}})
        data = body if isinstance(body, bytes) else body.encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture
def ends_watches_at_once() -> Iterator[http.server.ThreadingHTTPServer]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _EndsWatchesAtOnce)
    server.calls = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()


def test_a_watch_that_ends_at_once_counts_as_a_failure(
    ends_watches_at_once: http.server.ThreadingHTTPServer,
) -> None:
    """Before: each empty watch was followed by another at once (67 watches in 3 s); now it is
    a failure, listed again after the shared back-off."""
    port = ends_watches_at_once.server_address[1]
    api = Api(Credentials(f"http://127.0.0.1:{port}", False))
    _, failed = failing_watcher(api, 4)
    assert [verb for _, verb in failed[:4]] == ["watch"] * 4
    assert failed[3][0] - failed[0][0] >= 1 + 2 + 4
    calls: list[str] = ends_watches_at_once.calls  # type: ignore[attr-defined]
    assert calls[:8] == ["list", "watch"] * 4
    assert len(calls) <= 10


GROUP = "stall_team"


def _setting(namespace: str, uri: str) -> dict[str, Any]:
    return {
        "apiVersion": "mlflow.primehub.io/v1alpha1",
        "kind": "MLflowSetting",
        "metadata": {"name": "stall-team", "namespace": namespace},
        "spec": {"group": GROUP, "trackingUri": uri},
    }


def _answered_uri(webhook: WebhookProcess, ca: Path, namespace: str) -> str | None:
    """The tracking URI the webhook gives a notebook of the group now (asked directly)."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "nb",
            "namespace": namespace,
            "labels": {"component": "singleuser-server", "mlflow.primehub.io/group": GROUP},
        },
        "spec": {"containers": [{"name": "notebook", "image": "jupyter"}]},
    }
    reply = requests.post(
        f"{webhook.url}/mutate", json=pod_review(pod, namespace=namespace), verify=ca, timeout=5
    ).json()["response"]
    if "patch" not in reply:
        return None
    patched = jsonpatch.apply_patch(pod, json.loads(base64.b64decode(reply["patch"])))
    env = env_of(patched["spec"]["containers"][0])
    return env.get("MLFLOW_TRACKING_URI", {}).get("value")


def test_a_stalled_watch_is_dropped_within_90_s_while_the_last_settings_serve(
    installed: Installed, tmp_path: Path
) -> None:
    """The path to the API server stops carrying bytes without closing (a half-open
    connection, a hung proxy: a real TCP relay in front of the real API server): the webhook
    keeps answering from the settings it listed, notices within 90 s (before: the watch's
    read timeout, 330 s), says how old its settings are, and once the path carries again
    serves the change made meanwhile."""
    namespace = "stalled"
    installed.opted_in(namespace, [_setting(namespace, "http://before:5000")])
    certs = serving_certs(tmp_path / "certs")
    ca = certs / "ca.crt"
    proxy = TcpProxy(("127.0.0.1", urlparse(installed.cp.url).port or 443))
    kubeconfig = installed.cp.kubeconfig_via(proxy.url, "webhook", tmp_path / "proxied")
    webhook = WebhookProcess(
        certs,
        free_port(),
        tmp_path / "webhook.log",
        ["--cluster", f"--kubeconfig={kubeconfig}", f"--watch-namespace={namespace}"],
        ["--shutdown-delay=0", "--status-namespace="],
    )

    def failures(verb: str) -> float:
        text = requests.get(f"{webhook.url}/metrics", verify=ca, timeout=5).text
        return total(text, "mlflow_webhook_settings_source_failures_total", verb=verb)

    with proxy.run():
        webhook.start(ca)
        try:
            wait_until(  # both workers have listed (/readyz is ready with one)
                lambda: (
                    requests.get(f"{webhook.url}/readyz", verify=ca).json()["workers"]
                    == {"serving": 2}
                ),
                30,
                "both workers serving",
            )
            assert _answered_uri(webhook, ca, namespace) == "http://before:5000"
            proxy.stall()
            stalled = time.monotonic()
            assert installed.apply([_setting(namespace, "http://after:5000")]).returncode == 0
            assert _answered_uri(webhook, ca, namespace) == "http://before:5000"
            wait_until(lambda: failures("watch") >= 1, 100, "the stall noticed")
            assert time.monotonic() - stalled <= 90
            ready = requests.get(f"{webhook.url}/readyz", verify=ca, timeout=5)
            assert ready.status_code == 200  # it answers, from what it knows, and says how old:
            assert ready.json()["settingsAgeSeconds"] >= SILENCE - 5
            assert _answered_uri(webhook, ca, namespace) == "http://before:5000"
            proxy.resume()
            wait_until(
                lambda: _answered_uri(webhook, ca, namespace) == "http://after:5000",
                60,
                "the change made during the stall",
            )
            wait_until(  # every worker: a list held up by the stall times out after 30 s
                lambda: (
                    requests.get(f"{webhook.url}/readyz", verify=ca).json()["settingsAgeSeconds"]
                    < 5
                ),
                60,
                "every worker current again",
            )
        finally:
            webhook.stop()
            installed.cp.kubectl("delete", "namespace", namespace, "--wait=false")
