"""The `MLflowSetting` custom resource as the webhook uses it, validated once when loaded.

Env entries stay in Kubernetes' own shape (plain dicts) so they are injected exactly as written.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from webhook import API_GROUP, API_VERSION, KIND
from webhook.groups import escape_group
from webhook.settings import rules, schema
from webhook.settings.crd import spec_schema
from webhook.settings.rules import LOGIN_NAMES

EnvVar = dict[str, Any]
# The index key of a namespace's setting (one that names no group): a group's key always starts
# with "escaped-" (groups.py).
NAMESPACE_KEY = ""
EnvFromSource = dict[str, Any]

_DNS1123 = rules.compiled(rules.DNS1123)
SPEC_SCHEMA = spec_schema()
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
    group: str | None  # None: the namespace's setting (for pods whose group has none)
    tracking_uri: str
    ui_url: str | None = None
    tracking_env: tuple[EnvVar, ...] = ()
    tracking_env_from: tuple[EnvFromSource, ...] = ()
    artifact_env: tuple[EnvVar, ...] = ()
    artifact_env_from: tuple[EnvFromSource, ...] = ()
    artifact_volume: ArtifactVolume | None = None
    model_init: ModelInitOverride = NO_OVERRIDE
    ca_bundle: CaBundle | None = None
    workspace: str | None = None  # MLFLOW_WORKSPACE
    tracking_auth: str | None = None  # MLFLOW_TRACKING_AUTH: kubernetes or kubernetes-namespaced

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def group_key(self) -> str:
        return NAMESPACE_KEY if self.group is None else escape_group(self.group)

    @property
    def scope(self) -> str:
        """Whom it serves, in words for messages."""
        if self.group is None:
            return f"namespace {self.namespace} (pods whose group has no setting of its own)"
        return f"group {self.group!r}"


class _Checker:
    """Raises SettingError at the first wrong field. The CRD's schema (schema.py) has already
    checked types, names, lengths and fields; what is left are the rules the CRD writes in CEL,
    each twinned here in the same words."""

    def __init__(self, ref: str, secret_names: frozenset[str]) -> None:
        self.ref = ref
        self.secret_names = secret_names

    def fail(self, path: str, message: str) -> SettingError:
        return SettingError(self.ref, path, message)

    def url(self, text: str | None, path: str, pattern: str) -> str | None:
        if text is not None and not rules.matches(pattern, text):
            # The value is not echoed: it may hold a password.
            what = "or databricks[://profile] " if "databricks" in pattern else ""
            raise self.fail(
                path, f"must be an http(s):// URL with a host {what}and no user:password@"
            )
        return text

    def env(self, value: list[EnvVar] | None, path: str) -> tuple[EnvVar, ...]:
        for i, item in enumerate(value or ()):
            where = f"{path}[{i}]"
            name = item["name"]
            if name in OWN_NAMES:
                raise self.fail(f"{where}.name", f"{name} comes from trackingUri/uiUrl, not env")
            if (item.get("value") is None) == (item.get("valueFrom") is None):
                raise self.fail(where, "needs exactly one of value or valueFrom")
            if item.get("value") is not None:
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
                self.one_of(
                    item["valueFrom"], f"{where}.valueFrom", "secretKeyRef", "configMapKeyRef"
                )
        return tuple(schema.pruned(item) for item in value or ())

    def env_from(self, value: list[EnvFromSource] | None, path: str) -> tuple[EnvFromSource, ...]:
        for i, item in enumerate(value or ()):
            self.one_of(item, f"{path}[{i}]", "secretRef", "configMapRef")
        return tuple(schema.pruned(item) for item in value or ())

    def one_of(self, value: dict[str, Any], path: str, *names: str) -> str:
        """The one of `names` that `value` holds (CEL: `has(self.a) != has(self.b)`)."""
        held = [n for n in names if value.get(n) is not None]
        if len(held) != 1:
            raise self.fail(path, f"needs exactly one of {' or '.join(names)}")
        return held[0]


def primehub_group_volume(group: str) -> tuple[str, str]:
    """PrimeHub's group volume: claim `project-<g>` mounted at `/project/<g>`, where <g> is the
    group name lower-cased with `_` as `-` (pkg/graphql/spawn.go in primehub-controller)."""
    g = group.lower().replace("_", "-")
    return f"project-{g}", f"/project/{g}"


def _artifact_volume(
    c: _Checker, av: dict[str, Any] | None, group: str | None
) -> ArtifactVolume | None:
    if av is None:
        return None
    where = "spec.artifactVolume"
    claim, mount = av.get("claimName"), av.get("mountPath")
    if av.get("groupVolume") is not None:
        if av["groupVolume"] is not True or claim is not None or mount is not None:
            raise c.fail(where, "must be {groupVolume: true} alone, or claimName and mountPath")
        if group is None:
            raise c.fail(
                f"{where}.groupVolume",
                "a namespace's setting (no group) has no group volume: set claimName and "
                "mountPath instead",
            )
        derived, path = primehub_group_volume(group)
        if len(derived) > 253 or not _DNS1123.fullmatch(derived):
            raise c.fail(
                f"{where}.groupVolume",
                f"group {group!r} gives the claim name {derived!r}, which Kubernetes refuses; "
                "set claimName and mountPath instead",
            )
        return ArtifactVolume(derived, path)
    if claim is None or mount is None:
        raise c.fail(where, "must be {groupVolume: true} alone, or claimName and mountPath")
    return ArtifactVolume(claim, mount.rstrip("/") or "/")


def _ca_bundle(c: _Checker, value: dict[str, Any] | None) -> CaBundle | None:
    if value is None:
        return None
    kind = c.one_of(value, "spec.caBundle", "configMapKeyRef", "secretKeyRef")
    ref = value[kind]
    return CaBundle("configMap" if kind == "configMapKeyRef" else "secret", ref["name"], ref["key"])


def _model_init(c: _Checker, mi: dict[str, Any] | None) -> ModelInitOverride:
    if mi is None:
        return NO_OVERRIDE
    volume = mi.get("volume") or {}
    resources = schema.pruned(mi["resources"]) if mi.get("resources") is not None else None
    problem = rules.resources_problem(resources or {})
    if problem is not None:
        raise c.fail("spec.modelInit.resources", problem)
    return ModelInitOverride(
        image=mi.get("image"),
        resources=resources,
        env=c.env(mi.get("env"), "spec.modelInit.env"),
        volume_size=volume.get("size"),
        storage_class=volume.get("storageClassName"),
        image_pull_secrets=tuple(p["name"] for p in mi.get("imagePullSecrets") or ()),
    )


def _shared_server(
    c: _Checker,
    spec: dict[str, Any],
    tracking_env: tuple[EnvVar, ...],
    artifact_env: tuple[EnvVar, ...],
) -> tuple[str | None, str | None]:
    """The workspace and the Kubernetes identity, for one MLflow server shared by teams (the
    CRD's rules on them, in its words)."""
    workspace, auth = spec.get("workspace"), spec.get("trackingAuth")
    if workspace in rules.RESERVED_WORKSPACES:
        reserved = ", ".join(rules.RESERVED_WORKSPACES)
        raise c.fail("spec.workspace", f"is a name MLflow reserves ({reserved})")
    if auth is not None:
        if any(e["name"] in rules.TRACKING_LOGIN_OR_AUTH for e in tracking_env):
            raise c.fail(
                "spec",
                "trackingAuth makes the pods' Kubernetes identity their login: trackingEnv may "
                "not set another (a token or password, or MLFLOW_TRACKING_AUTH)",
            )
        if not rules.matches("^https?://", spec["trackingUri"]):
            raise c.fail("spec", "trackingAuth needs an http(s) tracking server")
    elif any(
        e["name"] == rules.TRACKING_AUTH and e.get("value") in rules.KUBERNETES_AUTH
        for e in tracking_env
    ):
        raise c.fail(
            "spec",
            "a Kubernetes identity is set with trackingAuth, not MLFLOW_TRACKING_AUTH in "
            "trackingEnv (then the model copier gets the pod's token too)",
        )
    if workspace is not None and any(
        e["name"] == "MLFLOW_WORKSPACE" for e in tracking_env + artifact_env
    ):
        raise c.fail(
            "spec",
            "MLFLOW_WORKSPACE comes from workspace: trackingEnv and artifactEnv may not set it",
        )
    return workspace, auth


def parse_setting(
    obj: Any, default_namespace: str, secret_names: frozenset[str] = LOGIN_NAMES
) -> MLflowSetting:
    """Validates one MLflowSetting object (as YAML or the API gives it): the CRD's schema, then
    its CEL rules. `secret_names`: the configured login names, whose values must come from
    Secrets."""
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
    if not name or not _DNS1123.fullmatch(name):
        raise c.fail("metadata.name", "required, a lowercase DNS-1123 name")
    spec = obj.get("spec")
    if spec is None:
        raise c.fail("spec", "required")
    try:
        schema.check(spec, SPEC_SCHEMA, "spec")
    except schema.SchemaProblem as problem:
        raise c.fail(problem.path, str(problem)) from None
    group: str | None = spec.get("group")
    if group is not None and not rules.matches(rules.NOT_BLANK, group):
        raise c.fail("spec.group", "must not be blank")
    tracking_uri = c.url(spec["trackingUri"], "spec.trackingUri", rules.TRACKING_URI)
    ui_url = c.url(spec.get("uiUrl"), "spec.uiUrl", rules.UI_URL)
    tracking_env = c.env(spec.get("trackingEnv"), "spec.trackingEnv")
    artifact_env = c.env(spec.get("artifactEnv"), "spec.artifactEnv")
    tracking_names = {e["name"] for e in tracking_env}
    for i, item in enumerate(artifact_env):
        if item["name"] in tracking_names:
            raise c.fail(
                f"spec.artifactEnv[{i}].name",
                "a variable may be set in trackingEnv or artifactEnv, not both",
            )
    ca_bundle = _ca_bundle(c, spec.get("caBundle"))
    insecure = [e for e in tracking_env if e["name"] == "MLFLOW_TRACKING_INSECURE_TLS"]
    if ca_bundle is not None and insecure and insecure[0].get("value", "").lower() == "true":
        raise c.fail("spec.caBundle", "MLFLOW_TRACKING_INSECURE_TLS=true and a CA bundle conflict")
    workspace, tracking_auth = _shared_server(c, spec, tracking_env, artifact_env)
    assert tracking_uri is not None
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
        artifact_volume=_artifact_volume(c, spec.get("artifactVolume"), group),
        model_init=_model_init(c, spec.get("modelInit")),
        ca_bundle=ca_bundle,
        workspace=workspace,
        tracking_auth=tracking_auth,
    )
