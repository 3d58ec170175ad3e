"""Which artifacts a model URI means, asked of the group's MLflow server: a registry version (by
number, alias, stage or latest) or an MLflow 3 logged model. Over MLflow's REST API (rest.py)
where the server is reached over HTTP(S), else with MLflow's own client."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from webhook.copier import identity, rest
from webhook.copier.errors import CopyError, Exit
from webhook.modeluri import ModelUri


@dataclass(frozen=True)
class Resolved:
    name: str  # the registered model, or the logged model's id
    version: str  # "" for a logged model
    source: str  # where the artifacts are downloaded from


def resolve(uri: ModelUri) -> Resolved:
    registry, tracking = rest.registry_uri(), os.environ.get("MLFLOW_TRACKING_URI", "")
    if not (rest.speaks(registry) and rest.speaks(tracking)):
        return _resolve_with_client(uri)
    if uri.model_id is not None:
        logged = rest.call(tracking, f"/logged-models/{quote(uri.model_id, safe='')}", {})
        return Resolved(uri.model_id, "", str(logged["model"]["info"]["artifact_uri"]))
    if uri.version is not None:
        params = {"name": uri.name, "version": uri.version}
        version = rest.call(registry, "/model-versions/get", params)["model_version"]
    elif uri.alias is not None:
        params = {"name": uri.name, "alias": uri.alias}
        version = rest.call(registry, "/registered-models/alias", params)["model_version"]
    else:
        body: dict[str, Any] = {"name": uri.name}
        if uri.stage != "latest":
            body["stages"] = [uri.stage]
        found = rest.call(registry, "/registered-models/get-latest-versions", body, post=True)
        versions = found.get("model_versions", [])
        if not versions:
            raise _no_version_in_stage(uri)
        version = max(versions, key=lambda v: int(v["version"]))
    number = str(version["version"])
    params = {"name": uri.name, "version": number}
    source = rest.call(registry, "/model-versions/get-download-uri", params)["artifact_uri"]
    return Resolved(uri.name, number, str(source))


def _no_version_in_stage(uri: ModelUri) -> CopyError:
    sentence = f"{uri.describe()} does not exist: no version is in that stage"
    return CopyError(Exit.NOT_FOUND, sentence)


def _resolve_with_client(uri: ModelUri) -> Resolved:
    from mlflow import MlflowClient

    client = MlflowClient()
    if uri.model_id is not None:
        logged = client.get_logged_model(uri.model_id)
        return Resolved(uri.model_id, "", str(logged.artifact_location))
    if uri.version is not None:
        version = client.get_model_version(uri.name, uri.version)
    elif uri.alias is not None:
        version = client.get_model_version_by_alias(uri.name, uri.alias)
    else:
        stages = None if uri.stage == "latest" else [uri.stage]
        with warnings.catch_warnings():  # stages are deprecated in MLflow, still served
            warnings.simplefilter("ignore")
            found = client.get_latest_versions(uri.name, stages=stages)
        if not found:
            raise _no_version_in_stage(uri)
        version = max(found, key=lambda v: int(v.version))
    source = client.get_model_version_download_uri(uri.name, version.version)
    return Resolved(uri.name, str(version.version), str(source))


def _model_exists(name: str) -> bool | None:
    """Whether the registry has this model (None: it could not say)."""
    if rest.speaks(rest.registry_uri()):
        try:
            rest.call(rest.registry_uri(), "/registered-models/get", {"name": name})
        except rest.RestError as e:
            return False if e.error_code == "RESOURCE_DOES_NOT_EXIST" else None
        except Exception:
            return None
        return True
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        MlflowClient().get_registered_model(name)
    except MlflowException as e:
        return False if e.error_code == "RESOURCE_DOES_NOT_EXIST" else None
    return True


def _workspace_problem() -> CopyError | None:
    """A "not found" that is the workspace's, not the model's: the workspace named does not exist
    (a search in it answers 404, where in one that exists it answers even without rights), or
    the server requires one and none is named (a search without it answers 400)."""
    registry = rest.registry_uri()
    if not rest.speaks(registry):
        return None
    try:
        rest.call(registry, "/registered-models/search", {"max_results": 1})
    except rest.RestError as e:
        workspace = identity.workspace()
        if workspace is not None and e.error_code == "RESOURCE_DOES_NOT_EXIST":
            return CopyError(
                Exit.NOT_FOUND,
                f"MLflow workspace {workspace!r} ({identity.named_by()}) does not exist on the "
                "group's MLflow server",
            )
        if workspace is None and e.error_code == "INVALID_PARAMETER_VALUE":
            return CopyError(
                Exit.USAGE,
                "the group's MLflow server serves workspaces and wants one named, and the pod "
                f"names none ({e}): set workspace (or trackingAuth: kubernetes-namespaced) in "
                "the MLflowSetting",
            )
    except Exception:
        return None
    return None


def explain_missing(uri: ModelUri) -> CopyError | None:
    """Whether the workspace or the model itself is missing, which says more than "version not
    found"."""
    problem = _workspace_problem()
    if problem is not None:
        return problem
    if uri.model_id is not None:
        return CopyError(
            Exit.NOT_FOUND, f"{uri.describe()} does not exist in the group's MLflow server"
        )
    exists = _model_exists(uri.name)
    if exists is None:
        return None
    if not exists:
        return CopyError(
            Exit.NOT_FOUND, f'model "{uri.name}" does not exist in the group\'s MLflow registry'
        )
    return CopyError(
        Exit.NOT_FOUND, f"{uri.describe()} does not exist in the group's MLflow registry"
    )
