"""Reading cluster credentials (webhook/kube.py): kubeconfigs as kubectl writes them."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from webhook.kube import ConfigError, from_kubeconfig, in_cluster


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
        ("exec: {command: aws, apiVersion: client.authentication.k8s.io/v1}", "login plugins"),
        ("auth-provider: {name: oidc}", "login plugins"),
    ],
)
def test_login_plugins_are_refused_in_words(tmp_path: Path, user: str, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        from_kubeconfig(kubeconfig(tmp_path, user, "insecure-skip-tls-verify: true"))


def test_outside_a_cluster_without_a_kubeconfig(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(ConfigError, match="not running in a cluster"):
        in_cluster()
