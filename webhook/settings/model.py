"""The `MLflowSetting` custom resource as the webhook uses it, validated once when loaded.

Env entries stay in Kubernetes' own shape (plain dicts) so they are injected exactly as written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from webhook import API_GROUP, API_VERSION, KIND
from webhook.config import QUANTITY, Config
from webhook.groups import escape_group
from webhook.settings import rules

EnvVar = dict[str, Any]
EnvFromSource = dict[str, Any]

_ENV_NAME = re.compile(rules.ENV_NAME)
_DNS1123 = re.compile(rules.DNS1123)
# Names that form a login by default (config.py): their values come from Secrets only.
LOGIN_NAMES = Config.tracking_credentials | Config.artifact_credentials
# Set from trackingUri and uiUrl: never from a setting's env.
OWN_NAMES = ("MLFLOW_TRACKING_URI", "MLFLOW_UI_URL")


class SettingError(ValueError):
    """A setting that cannot be used. `str()` names the object and the field."""

    def __init__(self, ref: str, path: str, message: str) -> None:
        super().__init__(f"{KIND} {ref}: {path}: {message}")
        self.ref = ref
        self.path = path


@dataclass(frozen=True, slots=True)
class ArtifactVolume:
    claim_name: str
    mount_path: str


@dataclass(frozen=True, slots=True)
class CaBundle:
    """A private CA for the tracking server and the S3 endpoint: one key of a ConfigMap or a
    Secret in the setting's namespace, holding PEM certificates."""

    kind: str  # "configMap" or "secret"
    name: str
    key: str


@dataclass(frozen=True, slots=True)
class ModelInitOverride:
    image: str | None = None
    resources: dict[str, Any] | None = None
    env: tuple[EnvVar, ...] = ()
    volume_size: str | None = None
    storage_class: str | None = None
    image_pull_secrets: tuple[str, ...] = ()


NO_OVERRIDE = ModelInitOverride()  # shared: most settings have none (10,000 copies are 1 MB)


@dataclass(frozen=True, slots=True)
class MLflowSetting:
    namespace: str
    name: str
    group: str
    tracking_uri: str
    ui_url: str | None = None
    tracking_env: tuple[EnvVar, ...] = ()
    tracking_env_from: tuple[EnvFromSource, ...] = ()
    artifact_env: tuple[EnvVar, ...] = ()
    artifact_env_from: tuple[EnvFromSource, ...] = ()
    artifact_volume: ArtifactVolume | None = None
    model_init: ModelInitOverride = NO_OVERRIDE
    ca_bundle: CaBundle | None = None

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def group_key(self) -> str:
        return escape_group(self.group)


def is_unicode(text: str) -> bool:
    """False for a string with a lone surrogate (JSON's \\ud800 escape makes one): no encoder
    takes it, so neither a Secret nor a pod could hold it."""
    if text.isascii():
        return True
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


class _Checker:
    """Walks one object's spec and raises SettingError at the first wrong field."""

    def __init__(self, ref: str, secret_names: frozenset[str]) -> None:
        self.ref = ref
        self.secret_names = secret_names

    def fail(self, path: str, message: str) -> SettingError:
        return SettingError(self.ref, path, message)

    def string(self, value: Any, path: str, *, required: bool = False) -> str | None:
        if value is None:
            if required:
                raise self.fail(path, "required")
            return None
        if not isinstance(value, str) or (required and not value.strip()):
            raise self.fail(path, "must be a non-empty string")
        if not is_unicode(value):
            raise self.fail(path, "is not valid Unicode")
        return value

    def url(self, value: Any, path: str, pattern: str, *, required: bool) -> str | None:
        text = self.string(value, path, required=required)
        if text is None:
            return None
        if not rules.matches(pattern, text):
            # The value is not echoed: it may hold a password.
            what = "or databricks[://profile] " if "databricks" in pattern else ""
            raise self.fail(
                path, f"must be an http(s):// URL with a host {what}and no user:password@"
            )
        return text

    def key_ref(self, value: Any, path: str) -> None:
        if not isinstance(value, dict):
            raise self.fail(path, "must be an object with name and key")
        for k in ("name", "key"):
            if not isinstance(value.get(k), str) or not value[k]:
                raise self.fail(f"{path}.{k}", "required")
        if not _DNS1123.match(value["name"]):
            raise self.fail(f"{path}.name", f"{value['name']!r} is not a valid object name")
        unknown = set(value) - {"name", "key", "optional"}
        if unknown:
            raise self.fail(path, f"unknown fields {sorted(unknown)}")

    def env(self, value: Any, path: str) -> tuple[EnvVar, ...]:
        if value is None:
            return ()
        if not isinstance(value, list):
            raise self.fail(path, "must be a list of EnvVar")
        out: list[EnvVar] = []
        for i, item in enumerate(value):
            where = f"{path}[{i}]"
            if not isinstance(item, dict):
                raise self.fail(where, "must be an EnvVar object")
            name = item.get("name")
            if not isinstance(name, str) or not _ENV_NAME.match(name):
                raise self.fail(
                    f"{where}.name", f"{name!r} is not a valid environment variable name"
                )
            if name in OWN_NAMES:
                raise self.fail(f"{where}.name", f"{name} comes from trackingUri/uiUrl, not env")
            unknown = set(item) - {"name", "value", "valueFrom"}
            if unknown:
                raise self.fail(where, f"unknown fields {sorted(unknown)}")
            if ("value" in item) == ("valueFrom" in item):
                raise self.fail(where, "needs exactly one of value or valueFrom")
            if "value" in item:
                if not isinstance(item["value"], str):
                    raise self.fail(f"{where}.value", "must be a string")
                if name in self.secret_names or rules.matches(rules.CREDENTIAL_NAME, name):
                    raise self.fail(
                        f"{where}.value",
                        f"{name} looks like a credential: put it in a Secret and use "
                        "valueFrom.secretKeyRef",
                    )
                if rules.matches(rules.URL_WITH_USERINFO, item["value"]):
                    raise self.fail(
                        f"{where}.value",
                        f"{name} holds a URL with user:password@: put the credentials in a Secret",
                    )
            else:
                source = item["valueFrom"]
                if (
                    not isinstance(source, dict)
                    or len(source) != 1
                    or not (set(source) <= {"secretKeyRef", "configMapKeyRef"})
                ):
                    raise self.fail(
                        f"{where}.valueFrom", "needs exactly one of secretKeyRef or configMapKeyRef"
                    )
                ((kind, ref),) = source.items()
                self.key_ref(ref, f"{where}.valueFrom.{kind}")
            out.append(item)
        return tuple(out)

    def env_from(self, value: Any, path: str) -> tuple[EnvFromSource, ...]:
        if value is None:
            return ()
        if not isinstance(value, list):
            raise self.fail(path, "must be a list of EnvFromSource")
        for i, item in enumerate(value):
            where = f"{path}[{i}]"
            if not isinstance(item, dict):
                raise self.fail(where, "must be an EnvFromSource object")
            refs = [k for k in ("secretRef", "configMapRef") if k in item]
            if len(refs) != 1 or set(item) - {"secretRef", "configMapRef", "prefix"}:
                raise self.fail(
                    where, "needs exactly one of secretRef or configMapRef (and prefix)"
                )
            ref = item[refs[0]]
            if not isinstance(ref, dict) or not _DNS1123.match(str(ref.get("name", ""))):
                raise self.fail(f"{where}.{refs[0]}.name", "must be a valid object name")
        return tuple(value)


def primehub_group_volume(group: str) -> tuple[str, str]:
    """PrimeHub's group volume: claim `project-<g>` mounted at `/project/<g>`, where <g> is the
    group name lower-cased with `_` as `-` (pkg/graphql/spawn.go in primehub-controller)."""
    g = group.lower().replace("_", "-")
    return f"project-{g}", f"/project/{g}"


def _artifact_volume(c: _Checker, av: Any, group: str | None) -> ArtifactVolume | None:
    if av is None:
        return None
    where = "spec.artifactVolume"
    if not isinstance(av, dict) or set(av) - {"claimName", "mountPath", "groupVolume"}:
        raise c.fail(where, "must be {groupVolume: true} or {claimName, mountPath}")
    if av.get("groupVolume") is not None:
        if av["groupVolume"] is not True or set(av) != {"groupVolume"}:
            raise c.fail(
                where, "groupVolume: true stands alone (claim and path come from the group)"
            )
        assert group is not None
        derived, path = primehub_group_volume(group)
        if not _DNS1123.match(derived):
            raise c.fail(
                f"{where}.groupVolume",
                f"group {group!r} gives the claim name {derived!r}, which Kubernetes refuses; "
                "set claimName and mountPath instead",
            )
        return ArtifactVolume(derived, path)
    claim = c.string(av.get("claimName"), f"{where}.claimName", required=True)
    mount = c.string(av.get("mountPath"), f"{where}.mountPath", required=True)
    assert claim is not None and mount is not None
    if not _DNS1123.match(claim):
        raise c.fail(f"{where}.claimName", f"{claim!r} is not a valid claim name")
    if not mount.startswith("/"):
        raise c.fail(f"{where}.mountPath", f"{mount!r} is not an absolute path")
    return ArtifactVolume(claim, mount.rstrip("/") or "/")


def _ca_bundle(c: _Checker, value: Any) -> CaBundle | None:
    if value is None:
        return None
    where = "spec.caBundle"
    if (
        not isinstance(value, dict)
        or len(value) != 1
        or not (set(value) <= {"configMapKeyRef", "secretKeyRef"})
    ):
        raise c.fail(where, "needs exactly one of configMapKeyRef or secretKeyRef")
    ((kind, ref),) = value.items()
    c.key_ref(ref, f"{where}.{kind}")
    if set(ref) - {"name", "key"}:
        raise c.fail(f"{where}.{kind}", "may hold only name and key")
    return CaBundle("configMap" if kind == "configMapKeyRef" else "secret", ref["name"], ref["key"])


def parse_setting(
    obj: Any, default_namespace: str, secret_names: frozenset[str] = LOGIN_NAMES
) -> MLflowSetting:
    """Validates one MLflowSetting object (as YAML or the API gives it). `secret_names`: the
    configured login names, whose values must come from Secrets."""
    if not isinstance(obj, dict):
        raise SettingError("?", "(object)", "expected a mapping")
    meta = obj.get("metadata")
    meta = meta if isinstance(meta, dict) else {}
    name = meta.get("name") if isinstance(meta.get("name"), str) else None
    namespace = meta.get("namespace") or default_namespace
    ref = f"{namespace}/{name or '?'}"
    c = _Checker(ref, secret_names | LOGIN_NAMES)
    if obj.get("apiVersion") != f"{API_GROUP}/{API_VERSION}" or obj.get("kind") != KIND:
        got = f"{str(obj.get('apiVersion'))[:60]} {str(obj.get('kind'))[:60]}"
        raise c.fail("apiVersion/kind", f"expected {API_GROUP}/{API_VERSION} {KIND}, got {got}")
    if not name or not _DNS1123.match(name):
        raise c.fail("metadata.name", "required, a lowercase DNS-1123 name")
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        raise c.fail("spec", "required")
    known = {
        "group",
        "trackingUri",
        "uiUrl",
        "trackingEnv",
        "trackingEnvFrom",
        "artifactEnv",
        "artifactEnvFrom",
        "artifactVolume",
        "modelInit",
        "caBundle",
    }
    if set(spec) - known:
        raise c.fail("spec", f"unknown fields {sorted(set(spec) - known)}")
    group = c.string(spec.get("group"), "spec.group", required=True)
    tracking_uri = c.url(
        spec.get("trackingUri"), "spec.trackingUri", rules.TRACKING_URI, required=True
    )
    ui_url = c.url(spec.get("uiUrl"), "spec.uiUrl", rules.UI_URL, required=False)
    tracking_env = c.env(spec.get("trackingEnv"), "spec.trackingEnv")
    artifact_env = c.env(spec.get("artifactEnv"), "spec.artifactEnv")
    seen: set[str] = set()
    for path, env in (("spec.trackingEnv", tracking_env), ("spec.artifactEnv", artifact_env)):
        for i, item in enumerate(env):
            if item["name"] in seen:
                raise c.fail(f"{path}[{i}].name", f"{item['name']} is set twice")
            seen.add(item["name"])
    volume = _artifact_volume(c, spec.get("artifactVolume"), group)
    model_init = NO_OVERRIDE
    if spec.get("modelInit") is not None:
        mi = spec["modelInit"]
        fields = {"image", "resources", "env", "volume", "imagePullSecrets"}
        if not isinstance(mi, dict) or set(mi) - fields:
            raise c.fail("spec.modelInit", f"may hold only {', '.join(sorted(fields))}")
        resources = mi.get("resources")
        if resources is not None and (
            not isinstance(resources, dict) or set(resources) - {"requests", "limits"}
        ):
            raise c.fail("spec.modelInit.resources", "may hold only requests and limits")
        model_volume = mi.get("volume") or {}
        if not isinstance(model_volume, dict) or set(model_volume) - {"size", "storageClassName"}:
            raise c.fail("spec.modelInit.volume", "may hold only size and storageClassName")
        size = c.string(model_volume.get("size"), "spec.modelInit.volume.size")
        if size is not None and not QUANTITY.match(size):
            raise c.fail("spec.modelInit.volume.size", f"{size!r} is not a quantity like 20Gi")
        pull = mi.get("imagePullSecrets") or []
        if not isinstance(pull, list) or not all(
            isinstance(p, dict) and set(p) == {"name"} and _DNS1123.match(str(p["name"]))
            for p in pull
        ):
            raise c.fail("spec.modelInit.imagePullSecrets", "must be a list of {name: <Secret>}")
        model_init = ModelInitOverride(
            image=c.string(mi.get("image"), "spec.modelInit.image"),
            resources=resources,
            env=c.env(mi.get("env"), "spec.modelInit.env"),
            volume_size=size,
            storage_class=c.string(
                model_volume.get("storageClassName"), "spec.modelInit.volume.storageClassName"
            ),
            image_pull_secrets=tuple(p["name"] for p in pull),
        )
    ca_bundle = _ca_bundle(c, spec.get("caBundle"))
    insecure = [e for e in tracking_env if e["name"] == "MLFLOW_TRACKING_INSECURE_TLS"]
    if ca_bundle is not None and insecure and insecure[0].get("value", "").lower() == "true":
        raise c.fail("spec.caBundle", "MLFLOW_TRACKING_INSECURE_TLS=true and a CA bundle conflict")
    assert group is not None and tracking_uri is not None
    return MLflowSetting(
        namespace=namespace,
        name=name,
        group=group,
        tracking_uri=tracking_uri,
        ui_url=ui_url,
        tracking_env=tracking_env,
        tracking_env_from=c.env_from(spec.get("trackingEnvFrom"), "spec.trackingEnvFrom"),
        artifact_env=artifact_env,
        artifact_env_from=c.env_from(spec.get("artifactEnvFrom"), "spec.artifactEnvFrom"),
        artifact_volume=volume,
        model_init=model_init,
        ca_bundle=ca_bundle,
    )
