"""Which artifacts a model URI means, asked of the group's MLflow server with MLflow's own
client: a registry version (by number, alias, stage or latest) or an MLflow 3 logged model."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

from webhook.copier.errors import CopyError, Exit
from webhook.modeluri import ModelUri


@dataclass(frozen=True)
class Resolved:
    name: str  # the registered model, or the logged model's id
    version: str  # "" for a logged model
    source: str  # where the artifacts are downloaded from


def resolve(uri: ModelUri) -> Resolved:
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
            raise CopyError(
                Exit.NOT_FOUND, f"{uri.describe()} does not exist: no version is in that stage"
            )
        version = max(found, key=lambda v: int(v.version))
    source = client.get_model_version_download_uri(uri.name, version.version)
    return Resolved(uri.name, str(version.version), str(source))


def explain_missing(uri: ModelUri) -> CopyError | None:
    """Whether the model itself is missing, which says more than "version not found"."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    if uri.model_id is not None:
        return CopyError(
            Exit.NOT_FOUND, f"{uri.describe()} does not exist in the group's MLflow server"
        )
    try:
        MlflowClient().get_registered_model(uri.name)
    except MlflowException as e:
        if e.error_code == "RESOURCE_DOES_NOT_EXIST":
            return CopyError(
                Exit.NOT_FOUND, f'model "{uri.name}" does not exist in the group\'s MLflow registry'
            )
        return None
    return CopyError(
        Exit.NOT_FOUND, f"{uri.describe()} does not exist in the group's MLflow registry"
    )
