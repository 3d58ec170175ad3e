"""Reading cluster credentials (webhook/kube.py): kubeconfigs as kubectl writes them."""

from __future__ import annotations

import base64
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.cluster import WEBHOOK_USER, ControlPlane, Installed
from tests.procs import free_port, wait_until
from tests.webhookproc import WebhookProcess, serving_certs
from webhook.kube import Api, ApiError, ConfigError, LoginFailed, from_kubeconfig, in_cluster


def kubeconfig(tmp_path: Path, user: str, cluster: str) -> Path:
    path = tmp_path / "config"
    path.write_text(f"""apiVersion: v1
kind: Config
current-context: c
contexts: [{{name: c, context: {{cluster: k, user: u}}}}]
clusters: [{{name: k, cluster: {{server: "https://10.0.0.1:6443", {cluster}}}}}]
users: [{{name: u, user: {{{user}}}}}]
""")
    return path


def test_inline_data_and_a_token(tmp_path: Path) -> None:
    ca = base64.b64encode(b"CA PEM").decode()
    creds = from_kubeconfig(kubeconfig(tmp_path, "token: abc", f"certificate-authority-data: {ca}"))
    assert creds.server == "https://10.0.0.1:6443"
    assert isinstance(creds.verify, str) and Path(creds.verify).read_bytes() == b"CA PEM"
    assert creds.bearer() == "abc"


def test_files_relative_to_the_kubeconfig_and_a_client_certificate(tmp_path: Path) -> None:
    path = kubeconfig(
        tmp_path,
        "client-certificate: certs/me.crt, client-key: certs/me.key",
        "certificate-authority: ca.crt",
    )
    creds = from_kubeconfig(path)
    assert creds.verify == str(tmp_path / "ca.crt")
    assert creds.cert == (str(tmp_path / "certs/me.crt"), str(tmp_path / "certs/me.key"))
    assert creds.bearer() is None


def test_a_token_file_is_read_again_each_time(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("first\n")
    creds = from_kubeconfig(
        kubeconfig(tmp_path, "tokenFile: token", "insecure-skip-tls-verify: true")
    )
    assert creds.verify is False and creds.bearer() == "first"
    (tmp_path / "token").write_text("rotated\n")
    assert creds.bearer() == "rotated"


@pytest.mark.parametrize(
    ("user", "words"),
    [
        ("auth-provider: {name: oidc}", "auth-provider login is not supported"),
        ("exec: {command: aws}", "user.exec.apiVersion must be one of"),
        ("exec: {apiVersion: client.authentication.k8s.io/v1}", "user.exec.command is required"),
        (
            "exec: {command: x, apiVersion: client.authentication.k8s.io/v1, env: [{name: A}]}",
            "user.exec.env must be a list of {name, value}",
        ),
    ],
)
def test_login_plugins_are_refused_in_words(tmp_path: Path, user: str, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        from_kubeconfig(kubeconfig(tmp_path, user, "insecure-skip-tls-verify: true"))


def test_outside_a_cluster_without_a_kubeconfig(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(ConfigError, match="not running in a cluster"):
        in_cluster()


# A login plugin as `aws eks get-token` is one: it prints an ExecCredential. This one hands out
# the tokens listed in $TOKENS in turn (the last one from then on) and counts its runs.
PLUGIN = """#!{python}
import json, os, pathlib
runs = pathlib.Path(os.environ["RUNS"])
n = int(runs.read_text()) + 1 if runs.exists() else 1
runs.write_text(str(n))
info = json.loads(os.environ["KUBERNETES_EXEC_INFO"])
if os.environ.get("FAIL"):
    raise SystemExit("no session: run `aws sso login` first")
tokens = os.environ["TOKENS"].split(",")
status = {{"token": tokens[min(n, len(tokens)) - 1]}}
if os.environ.get("EXPIRY"):
    status["expirationTimestamp"] = os.environ["EXPIRY"]
print(json.dumps({{"apiVersion": info["apiVersion"], "kind": "ExecCredential", "status": status}}))
"""


def plugin_kubeconfig(tmp_path: Path, cp: ControlPlane, tokens: str, **env: str) -> Path:
    (tmp_path / "bin").mkdir(exist_ok=True)
    plugin = tmp_path / "bin" / "login"
    plugin.write_text(PLUGIN.format(python=sys.executable))
    plugin.chmod(0o755)
    exec_env = {"RUNS": str(tmp_path / "runs"), "TOKENS": tokens, **env}
    user = (
        "exec: {apiVersion: client.authentication.k8s.io/v1, command: ./bin/login, "
        "interactiveMode: Never, env: ["
        + ", ".join(f"{{name: {k}, value: '{v}'}}" for k, v in exec_env.items())
        + "]}"
    )
    path = kubeconfig(tmp_path, user, f"certificate-authority: {cp.ca_file}")
    path.write_text(path.read_text().replace("https://10.0.0.1:6443", cp.url))
    return path


def runs(tmp_path: Path) -> int:
    return int((tmp_path / "runs").read_text())


def test_an_exec_login_plugin_as_kubectl_runs_it(tmp_path: Path, cluster: ControlPlane) -> None:
    path = plugin_kubeconfig(tmp_path, cluster, cluster.admin_token)
    listed = subprocess.run(
        ["kubectl", f"--kubeconfig={path}", "get", "namespace", "default", "-o", "name"],
        capture_output=True,
        text=True,
    )
    assert listed.stdout.strip() == "namespace/default", listed.stderr  # kubectl agrees
    (tmp_path / "runs").unlink()
    api = Api(from_kubeconfig(path))
    assert api.call("GET", "/api/v1/namespaces/default") is not None
    assert api.call("GET", "/api/v1/namespaces/kube-system") is not None
    assert runs(tmp_path) == 1  # the token is kept while it is good


def test_an_expired_or_refused_token_is_fetched_again(
    tmp_path: Path, cluster: ControlPlane
) -> None:
    past = "2020-01-01T00:00:00Z"
    expired = plugin_kubeconfig(tmp_path, cluster, cluster.admin_token, EXPIRY=past)
    api = Api(from_kubeconfig(expired))
    api.call("GET", "/api/v1/namespaces/default")
    api.call("GET", "/api/v1/namespaces/default")
    assert runs(tmp_path) == 2
    (tmp_path / "runs").unlink()
    stale = plugin_kubeconfig(tmp_path, cluster, f"stale-token,{cluster.admin_token}")
    api = Api(from_kubeconfig(stale))
    with pytest.raises(ApiError) as refused:
        api.call("GET", "/api/v1/namespaces/default")
    assert refused.value.status == 401
    assert api.call("GET", "/api/v1/namespaces/default") is not None
    assert runs(tmp_path) == 2


def test_a_failing_login_plugin_is_one_line(tmp_path: Path, cluster: ControlPlane) -> None:
    path = plugin_kubeconfig(tmp_path, cluster, "x", FAIL="1")
    with pytest.raises(LoginFailed, match=r"failed \(exit 1\): no session: run `aws sso login`"):
        Api(from_kubeconfig(path)).call("GET", "/api/v1/namespaces/default")
    cli = subprocess.run(
        ["mlflow-webhook", "certs", "ensure", f"--kubeconfig={path}"],
        capture_output=True,
        text=True,
    )
    assert cli.returncode == 1 and "Traceback" not in cli.stderr
    assert cli.stderr.count("\n") == 1 and "no session: run `aws sso login`" in cli.stderr


def test_inline_credentials_are_written_once_for_the_owner_only_and_removed_at_exit(
    installed: Installed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kubeconfig with its CA, client certificate and key inline (as `--embed-certs` writes
    it): the server reads it once, before its workers start, into one folder only its user
    can read, which its workers share (also one started later) and which goes when it exits.
    Before: a folder per process (the master, and every worker ever started), none removed,
    the client key left in /tmp."""
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setenv("TMPDIR", str(temporary))
    cp = installed.cp
    kubeconfig = cp.inline_kubeconfig(
        WEBHOOK_USER, ["system:serviceaccounts"], tmp_path / "inline.kubeconfig"
    )
    certs = serving_certs(tmp_path / "certs")
    webhook = WebhookProcess(
        certs,
        free_port(),
        tmp_path / "webhook.log",
        ["--cluster", f"--kubeconfig={kubeconfig}"],
        ["--shutdown-delay=0", "--status-namespace="],
    )
    webhook.start(certs / "ca.crt")  # ready: both workers listed with the client certificate
    try:
        victim = webhook.workers()[0]
        os.kill(victim, signal.SIGKILL)
        wait_until(
            lambda: (
                victim not in webhook.workers()
                and requests.get(f"{webhook.url}/readyz", verify=certs / "ca.crt").json()["workers"]
                == {"serving": 2}
            ),
            30,
            "a new worker that listed the settings",
        )
        folders = [p for p in temporary.iterdir() if p.name.startswith("mlflow-webhook-kube-")]
        assert len(folders) == 1, folders
        assert stat.S_IMODE(folders[0].stat().st_mode) == 0o700
        files = {p.name: stat.S_IMODE(p.stat().st_mode) for p in folders[0].iterdir()}
        assert files == {
            "certificate-authority": 0o600,
            "client-certificate": 0o600,
            "client-key": 0o600,
        }
        webhook.terminate()
        assert webhook.proc is not None and webhook.proc.wait(30) == 0
        assert not folders[0].exists()
    finally:
        webhook.stop()
