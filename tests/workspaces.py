"""Real MLflow servers with workspaces, for the tests of teams that share one MLflow: the same
model name lives in several workspaces, chosen per request by the `X-MLFLOW-WORKSPACE` header.
Two providers: MLflow's built-in one (workspaces in its own database), and Kubeflow's
`mlflow-kubernetes-plugins` (namespaces are the workspaces, every request authorized by the
real API server from the caller's ServiceAccount token)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from tests.cluster import ControlPlane, Installed
from tests.procs import environ, free_port, running, wait_until
from tests.registry import Registered, make_model_dir, register
from tests.servers import Mlflow, launch_mlflow, wait_mlflow

# What tests/mlflow/install-kubernetes.sh installed (the plugin needs Python >= 3.12).
K8S_MLFLOW_BIN = Path(
    os.environ.get("MLFLOW_K8S_SERVER_BIN")
    or Path.home() / ".cache/primehub-mlflow-webhook/mlflow-kubernetes-3.17.2/bin"
)
HEADER = "X-MLFLOW-WORKSPACE"
API_GROUP = "mlflow.kubeflow.org"


@contextlib.contextmanager
def workspace_server(tmp: Path) -> Iterator[Mlflow]:
    """The tests' usual server (tests/mlflow/install.sh) with the built-in provider; a request
    without the header lands in the workspace `default`."""
    with contextlib.ExitStack() as stack:
        # launch_mlflow has no way to add a flag; the server reads this as --enable-workspaces.
        with environ({"MLFLOW_ENABLE_WORKSPACES": "true"}):
            server = launch_mlflow(stack, tmp, "mlflow-workspaces")
        yield wait_mlflow(server)


@contextlib.contextmanager
def kubernetes_workspace_server(tmp: Path, cp: ControlPlane, **env: str) -> Iterator[Mlflow]:
    """The plugin server against the tests' API server, as the admin (the server's own identity
    only lists and watches namespaces). `env`: more settings, e.g.
    MLFLOW_K8S_AUTH_CACHE_TTL_SECONDS (it keeps each allow/deny 300 s by default)."""
    if not (K8S_MLFLOW_BIN / "mlflow").exists():
        raise RuntimeError(f"{K8S_MLFLOW_BIN} missing: run tests/mlflow/install-kubernetes.sh")
    tmp.mkdir(parents=True, exist_ok=True)
    port = free_port()
    args = [str(K8S_MLFLOW_BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port)]
    args += ["--workers", "1", "--backend-store-uri", f"sqlite:///{tmp}/mlflow.db"]
    args += ["--artifacts-destination", str(tmp / "artifacts"), "--enable-workspaces"]
    args += ["--workspace-store-uri", "kubernetes://", "--app-name", "kubernetes-auth"]
    # Without the switch it also starts a job runner and 7 huey consumers: 2.4 GB, not 550 MB.
    env = {"KUBECONFIG": str(cp.kubeconfig), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **env}
    with running(args, tmp / "mlflow-kubernetes.log", env=env, cwd=tmp) as proc:
        url = f"http://127.0.0.1:{port}"
        # Its first start on 2 busy cores (imports, namespace cache) can take minutes.
        wait_until(lambda: requests.get(f"{url}/health", timeout=2).ok, 300, "mlflow", proc)
        yield Mlflow(url, proc, {"MLFLOW_TRACKING_URI": url})


def create_workspace(url: str, name: str) -> dict[str, Any]:
    """Built-in provider only: the plugin's workspaces are namespaces, made in Kubernetes."""
    r = requests.post(f"{url}/api/3.0/mlflow/workspaces", json={"name": name}, timeout=30)
    assert r.status_code == 201, r.text
    workspace: dict[str, Any] = r.json()["workspace"]
    return workspace


def register_in_workspace(
    url: str,
    workspace: str,
    name: str,
    model_dir: Path,
    token: str | None = None,
    registered: Registered | None = None,
) -> str:
    """tests.registry.register through MLflow's own client, which sends the header from
    MLFLOW_WORKSPACE and `Authorization: Bearer` from MLFLOW_TRACKING_TOKEN on every call, the
    artifact uploads included. Returns the version."""
    values = {"MLFLOW_WORKSPACE": workspace}
    if token is not None:
        values["MLFLOW_TRACKING_TOKEN"] = token
    with environ(values):
        return register(url, "models", None, name, model_dir, registered)


def _create(cp: ControlPlane, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """Creates, or reads back what is there already: the helpers may be called twice."""
    r = cp.request("POST", path, body)
    if r.status_code == 409:
        r = cp.request("GET", f"{path}/{body['metadata']['name']}")
    assert r.ok, r.text
    obj: dict[str, Any] = r.json()
    return obj


def create_namespace(cp: ControlPlane, name: str) -> None:
    _create(cp, "/api/v1/namespaces", {"metadata": {"name": name}})


def service_account_token(
    cp: ControlPlane, namespace: str, name: str, bound_secret: str | None = None
) -> str:
    """A token as the kubelet projects it into a pod (TokenRequest). The ServiceAccount is made
    here: the test API server has no controller-manager and no ServiceAccount admission. With
    `bound_secret` (made if missing), the token dies with that Secret, as a pod's dies with the
    pod: how a test revokes a token."""
    _create(cp, f"/api/v1/namespaces/{namespace}/serviceaccounts", {"metadata": {"name": name}})
    spec: dict[str, Any] = {"audiences": [], "expirationSeconds": 3600}
    if bound_secret is not None:
        secret = _create(
            cp, f"/api/v1/namespaces/{namespace}/secrets", {"metadata": {"name": bound_secret}}
        )
        uid = secret["metadata"]["uid"]
        ref = {"kind": "Secret", "apiVersion": "v1", "name": bound_secret, "uid": uid}
        spec["boundObjectRef"] = ref
    r = cp.request(
        "POST",
        f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec},
    )
    assert r.status_code == 201, r.text
    token: str = r.json()["status"]["token"]
    return token


def grant_read(
    cp: ControlPlane, namespace: str, service_account: str, verbs: tuple[str, ...] = ("get", "list")
) -> None:
    """What a team's pod needs to read and download its namespace's models through the plugin
    (an artifact download is authorized as `experiments` get); more `verbs` (create, update) to
    register them."""
    role = f"mlflow-{service_account}"
    resources = ["registeredmodels", "experiments"]
    rules = [{"apiGroups": [API_GROUP], "resources": resources, "verbs": list(verbs)}]
    base = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}"
    _create(cp, f"{base}/roles", {"metadata": {"name": role}, "rules": rules})
    subject = {"kind": "ServiceAccount", "name": service_account, "namespace": namespace}
    ref = {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role}
    body = {"metadata": {"name": role}, "roleRef": ref, "subjects": [subject]}
    _create(cp, f"{base}/rolebindings", body)


# Two teams on one shared MLflow (Kubeflow's KEP-897): each namespace a workspace holding
# registered model `iris` version 1 with files of its own, served by one MLflowSetting with no
# group and trackingAuth kubernetes-namespaced. Its ServiceAccount `default` may read models and
# log runs; TEAMS[0]'s `norole` may do nothing.
TEAMS = ("ws-team-a", "ws-team-b")
READER_VERBS = ("get", "list", "create", "update")


@dataclass(frozen=True)
class SharedMlflow:
    server: Mlflow
    cp: ControlPlane
    models: dict[str, dict[str, str]]  # namespace -> the files of its iris version 1

    def pod_env(self, uri: str | None = None) -> dict[str, str]:
        """What the webhook gives the teams' pods (their namespace's setting)."""
        return {
            "MLFLOW_TRACKING_URI": uri or self.server.url,
            "MLFLOW_TRACKING_AUTH": "kubernetes-namespaced",
        }

    def identity(self, namespace: str, account: str, folder: Path) -> Path:
        """What the kubelet puts at /var/run/secrets/kubernetes.io/serviceaccount."""
        folder.mkdir(parents=True)
        (folder / "token").write_text(service_account_token(self.cp, namespace, account))
        (folder / "namespace").write_text(namespace)
        return folder


@contextlib.contextmanager
def shared_mlflow(installed: Installed, tmp: Path) -> Iterator[SharedMlflow]:
    cp = installed.cp
    # The plugin keeps each allow or deny 300 s by default: 1 s, so a revoked token is seen.
    with kubernetes_workspace_server(
        tmp / "server", cp, MLFLOW_K8S_AUTH_CACHE_TTL_SECONDS="1"
    ) as server:
        models = {}
        for seed, namespace in enumerate(TEAMS, start=20):
            setting = {
                "apiVersion": "mlflow.primehub.io/v1alpha1",
                "kind": "MLflowSetting",
                "metadata": {"name": "shared", "namespace": namespace},
                "spec": {"trackingUri": server.url, "trackingAuth": "kubernetes-namespaced"},
            }
            installed.opted_in(namespace, [setting])
            service_account_token(cp, namespace, "default")  # no controller makes it here
            grant_read(cp, namespace, "default", READER_VERBS)
            held = Registered()
            model = make_model_dir(tmp / namespace, seed)
            register_in_workspace(server.url, namespace, "iris", model, cp.admin_token, held)
            models[namespace] = held.versions["iris"]["1"]
        service_account_token(cp, TEAMS[0], "norole")
        assert models[TEAMS[0]] != models[TEAMS[1]]
        yield SharedMlflow(server, cp, models)
