"""`models:/` URIs of the MLflow model registry, parsed once for the webhook and the copier."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote, unquote

_VERSION = re.compile(r"^[0-9]+$")
_MODEL_ID = re.compile(r"^m-[0-9a-f]{1,64}$")  # MLflow 3 logged models: m-<hex id>
# What MLflow's registry takes as an alias (mlflow.utils.validation, since aliases exist).
_ALIAS = re.compile(r"^[\w-]{1,255}$")
_STAGES = {"none": "None", "staging": "Staging", "production": "Production", "archived": "Archived"}


class ModelUriError(ValueError):
    pass


@dataclass(frozen=True)
class ModelUri:
    """One of: version ("7"), alias ("champion"), stage ("Production"), latest, or an MLflow 3
    logged model (`models:/m-<id>`: `name` is empty, `model_id` set)."""

    name: str
    version: str | None = None
    alias: str | None = None
    stage: str | None = None  # "latest" means the newest version in any stage
    model_id: str | None = None

    @property
    def pinned(self) -> bool:
        """It always means the same files (a version number, a logged model)."""
        return self.version is not None or self.model_id is not None

    def __str__(self) -> str:
        """The canonical form MLflow's client takes (name decoded, path-safe quoting)."""
        if self.model_id is not None:
            return f"models:/{self.model_id}"
        name = quote(self.name, safe=" ")
        if self.alias is not None:
            return f"models:/{name}@{self.alias}"
        return f"models:/{name}/{self.version or self.stage}"

    def describe(self) -> str:
        if self.model_id is not None:
            return f'logged model "{self.model_id}"'
        if self.version is not None:
            return f'version {self.version} of model "{self.name}"'
        if self.alias is not None:
            return f'alias "{self.alias}" of model "{self.name}"'
        if self.stage == "latest":
            return f'the latest version of model "{self.name}"'
        return f'the {self.stage} version of model "{self.name}"'


def _show(text: str) -> str:
    """The URI for a message, cut short: an annotation may be 256 KiB long."""
    return repr(text if len(text) <= 200 else text[:200] + "...")


def parse_model_uri(text: str) -> ModelUri:
    """Accepts models:/<name>/<version|stage|latest>, models:/<name>@<alias> (names URL-encoded
    or not: PrimeHub encodes them) and models:/m-<id> (an MLflow 3 logged model)."""
    text = text.strip()
    if not text.startswith("models:/"):
        raise ModelUriError(f"{_show(text)} is not a models:/ URI")
    rest = text[len("models:/") :].lstrip("/")
    if "/" in rest:
        raw_name, _, ref = rest.rpartition("/")
        name = unquote(raw_name)
        if not name or not ref or "@" in ref:
            raise ModelUriError(f"{_show(text)}: expected models:/<name>/<version or stage>")
        if _VERSION.fullmatch(ref):
            version = ref.lstrip("0") or "0"
            if len(version) > 18:  # MLflow keeps versions as 64-bit integers
                raise ModelUriError(f"{_show(text)}: version {version[:20]}... is too large")
            return ModelUri(name, version=version)
        if ref.lower() == "latest":
            return ModelUri(name, stage="latest")
        if ref.lower() in _STAGES:
            return ModelUri(name, stage=_STAGES[ref.lower()])
        raise ModelUriError(
            f"{_show(text)}: {_show(ref)} is neither a version number, a stage "
            f"({', '.join(_STAGES.values())}) nor latest"
        )
    raw_name, at, alias = rest.rpartition("@")
    if at and raw_name and alias:
        if not _ALIAS.fullmatch(unquote(alias)):
            raise ModelUriError(
                f"{_show(text)}: alias {_show(unquote(alias))} is not one MLflow takes "
                "(letters, digits, '_' and '-')"
            )
        return ModelUri(unquote(raw_name), alias=unquote(alias))
    if not at and _MODEL_ID.fullmatch(rest):  # as MLflow reads a single segment: a logged model
        return ModelUri("", model_id=rest)
    raise ModelUriError(
        f"{_show(text)}: expected models:/<name>/<version>, models:/<name>@<alias>, "
        "models:/<name>/<stage> or models:/m-<logged model id>"
    )
