"""Runs a container of a pod spec as a local process, the way a kubelet would start it: env
resolved from Secrets and ConfigMaps (given as manifests), volume mounts mapped to folders."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.procs import BIN

Manifest = dict[str, Any]
# Where a pod's containers find its ServiceAccount's token and namespace: a fixed path, which no
# argument or variable can redirect; a private mount namespace puts a folder there for one
# process (the host's /var/run is /run, which has no secrets/: an empty tmpfs takes its place).
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
_AT_SERVICE_ACCOUNT_DIR = (
    "set -e; mount --make-rprivate /; mount -t tmpfs tmpfs /run; "
    f'mkdir -p {SERVICE_ACCOUNT_DIR}; mount --bind "$1" {SERVICE_ACCOUNT_DIR}; '
    'shift; exec "$@"'
)


def with_service_account(folder: Path, command: list[str]) -> list[str]:
    """`command`, run with `folder` (files `token`, `namespace`) where a pod has its
    ServiceAccount's, as MLflow's client and the copier read them."""
    wrapper = ["unshare", "--mount", "--fork", "--", "bash", "-c", _AT_SERVICE_ACCOUNT_DIR, "_"]
    return [*wrapper, str(folder), *command]


def project_identity(pod: dict[str, Any], token: str, root: Path) -> dict[str, Path]:
    """Folders for the pod's projected volumes that carry its ServiceAccount token (and its
    namespace), as the kubelet projects them, `token` standing for the one it would request."""
    folders: dict[str, Path] = {}
    for volume in pod["spec"].get("volumes") or []:
        sources = (volume.get("projected") or {}).get("sources") or []
        if not any("serviceAccountToken" in s for s in sources):
            continue
        folder = root / volume["name"]
        folder.mkdir(parents=True)
        for source in sources:
            if "serviceAccountToken" in source:
                (folder / source["serviceAccountToken"]["path"]).write_text(token)
            for item in (source.get("downwardAPI") or {}).get("items") or []:
                if item["fieldRef"]["fieldPath"] == "metadata.namespace":
                    (folder / item["path"]).write_text(pod["metadata"]["namespace"])
        folders[volume["name"]] = folder
    return folders


def _data(objects: list[Manifest], kind: str, name: str) -> dict[str, str]:
    for obj in objects:
        if obj.get("kind") == kind and obj["metadata"]["name"] == name:
            data = dict(obj.get("data") or {})
            if kind == "Secret":  # base64 in data, plain in stringData
                data = {k: base64.b64decode(v).decode() for k, v in data.items()}
            return {**data, **(obj.get("stringData") or {})}
    raise KeyError(f"{kind} {name} not among the manifests")


def resolve_env(container: dict[str, Any], objects: list[Manifest]) -> dict[str, str]:
    """The container's environment exactly as the kubelet computes it: `envexpand`, built by
    tests/controlplane/build.sh on Kubernetes' own expansion package (envFrom in order, the last
    source winning; then env in order, `$(NAME)` expanded against what is defined before)."""
    maps: dict[str, dict[str, dict[str, str]]] = {"configMaps": {}, "secrets": {}}
    for obj in objects:
        if obj.get("kind") in ("ConfigMap", "Secret"):
            key = "configMaps" if obj["kind"] == "ConfigMap" else "secrets"
            maps[key][obj["metadata"]["name"]] = _data(
                objects, obj["kind"], obj["metadata"]["name"]
            )
    result = subprocess.run(
        [str(BIN / "envexpand")],
        input=json.dumps({"container": container, **maps}),
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    env: dict[str, str] = json.loads(result.stdout)
    return env


def mounts(
    pod: dict[str, Any], container: dict[str, Any], folders: dict[str, Path]
) -> dict[str, Path]:
    """mountPath -> host folder, for the pod volumes given a host folder by name (others, such
    as PrimeHub's downward-API `podinfo`, are not needed to copy a model)."""
    return {
        m["mountPath"]: folders[m["name"]]
        for m in container.get("volumeMounts") or []
        if m["name"] in folders
    }


def project(pod: dict[str, Any], objects: list[Manifest], root: Path) -> dict[str, Path]:
    """Folders for the pod's ConfigMap and Secret volumes, holding their items as the kubelet
    projects them (key -> path)."""
    folders: dict[str, Path] = {}
    for volume in pod["spec"].get("volumes") or []:
        for kind, field in (("ConfigMap", "configMap"), ("Secret", "secret")):
            source = volume.get(field)
            if source is None:
                continue
            data = _data(objects, kind, source.get("name") or source.get("secretName"))
            folder = root / volume["name"]
            folder.mkdir(parents=True)
            items = source.get("items") or [{"key": k, "path": k} for k in data]
            for item in items:
                (folder / item["path"]).write_text(data[item["key"]])
            folders[volume["name"]] = folder
    return folders


def run_container(
    pod: dict[str, Any],
    name: str,
    objects: list[Manifest],
    folders: dict[str, Path],
    termination_log: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Runs init or regular container `name`; paths under its mounts are mapped to the folders."""
    spec = pod["spec"]
    container = next(
        c for c in spec.get("initContainers", []) + spec["containers"] if c["name"] == name
    )
    mapped = mounts(pod, container, folders)

    def host(arg: str) -> str:
        for path, folder in sorted(mapped.items(), key=lambda kv: -len(kv[0])):
            if arg == path or arg.startswith(path.rstrip("/") + "/"):
                return str(folder) + arg[len(path.rstrip("/")) :]
        return arg

    command = [host(a) for a in container["command"] + container.get("args", [])]
    command[0] = shutil.which(command[0]) or command[0]
    if termination_log is not None:  # copy-artifacts' own stand-in for /dev/termination-log
        command += ["--termination-message-path", str(termination_log)]
    # A path the container reads from one of its mounts (a CA bundle) is that folder here.
    env = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/"),
        **{k: host(v) for k, v in resolve_env(container, objects).items()},
    }
    if SERVICE_ACCOUNT_DIR in mapped:
        command = with_service_account(mapped[SERVICE_ACCOUNT_DIR], command)
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


def run_tags(container: dict[str, Any], tracking_uri: str, home: Path, user: str) -> dict[str, str]:
    """MLflow's own client, in the environment the container gets (as a kubelet computes it),
    starts a run: the tags the tracking server stored for it. `user` is the login name the
    image runs as (MLflow's default `mlflow.user`)."""
    script = "import mlflow\nwith mlflow.start_run() as run:\n    print('run', run.info.run_id)\n"
    env = resolve_env(container, [])
    done = subprocess.run(
        [sys.executable, "-c", script],
        env={"PATH": os.environ["PATH"], "HOME": str(home), **env, "USER": user},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    from mlflow import MlflowClient

    run_id = next(line.split()[1] for line in done.stdout.splitlines() if line.startswith("run "))
    tags: dict[str, str] = MlflowClient(tracking_uri=tracking_uri).get_run(run_id).data.tags
    return tags
