"""The patterns a setting's fields must match, shared by the webhook's parser (model.py) and the
CRD's CEL rules (manifests/base/crd.yaml), which a test holds to these exact strings. Written in
the common subset of Python's `re` and RE2 (CEL's `matches`)."""

from __future__ import annotations

import functools
import re
from decimal import Decimal

# MLFLOW_TRACKING_URI: an http(s) URL with a host and no user:password@, or Databricks (with an
# optional profile). Credentials travel in Secrets, never in a URI.
TRACKING_URI = r"^(https?://[^/@\s]+(/\S*)?|databricks(://[^/@\s]+)?)$"
UI_URL = r"^https?://[^/@\s]+(/\S*)?$"
# A URL with user:password@ (for env values: refused as a plain value).
URL_WITH_USERINFO = r"^[A-Za-z][A-Za-z0-9+.-]*://[^/\s]*@"
# Names whose value is a credential whatever the configuration says.
CREDENTIAL_NAME = r"(?i)(PASSWORD|PASSWD|TOKEN|SECRET|ACCESS_?KEY|PRIVATE_?KEY|API_?KEY)"
ENV_NAME = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"
# A key of a Secret or ConfigMap (k8s.io/apimachinery IsConfigMapKey): not ".", not "..."-led.
CONFIG_KEY = r"^\.?[-_a-zA-Z0-9][-._a-zA-Z0-9]*$"
DNS1123 = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
NOT_BLANK = r"\S"
# A container image reference: no whitespace anywhere (a pod refuses it at either end).
IMAGE = r"^\S+$"
# A Kubernetes storage quantity: 10Gi, 500M, 1.5Ti.
QUANTITY = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$"
# A container's resource quantity, as a pod takes it (k8s.io/apimachinery resource.Quantity,
# not negative, an exponent of two digits at most): 500m, 0.5, 2Gi, 1e3.
RESOURCE_QUANTITY = (
    r"^\+?([0-9]+(\.[0-9]*)?|\.[0-9]+)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?[0-9]{1,2})?$"
)

# An MLflow workspace (MLflow >= 3.10): its own rule (mlflow/store/workspace/abstract_store.py,
# WorkspaceNameValidator: this pattern, 2 to 63 characters, here in the pattern) and its
# reserved names.
WORKSPACE = r"^[a-z0-9][-a-z0-9]{0,61}[a-z0-9]$"
RESERVED_WORKSPACES = ("workspaces", "api", "ajax-api", "static-files")
# MLFLOW_TRACKING_AUTH values that make MLflow's client (>= 3.11) send the pod's ServiceAccount
# token, and with `-namespaced` its namespace as the workspace when none is named.
KUBERNETES_AUTH = ("kubernetes", "kubernetes-namespaced")


# Names that form one login by default (config.py may add more): a container setting any of them
# gets none of the setting's, and a setting may give them only from Secrets.
TRACKING_LOGIN = frozenset(
    {
        "MLFLOW_TRACKING_USERNAME",
        "MLFLOW_TRACKING_PASSWORD",
        "MLFLOW_TRACKING_TOKEN",
        "MLFLOW_TRACKING_CLIENT_CERT_PATH",
    }
)
ARTIFACT_LOGIN = frozenset(
    {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"}
)
LOGIN_NAMES = TRACKING_LOGIN | ARTIFACT_LOGIN
# How a pod logs in to its tracking server: a login, or MLFLOW_TRACKING_AUTH (its Kubernetes
# identity, or another of MLflow's auth plugins). A container that sets any gets none of the
# group's; a setting with trackingAuth may set none of them in trackingEnv.
TRACKING_AUTH = "MLFLOW_TRACKING_AUTH"
TRACKING_LOGIN_OR_AUTH = TRACKING_LOGIN | {TRACKING_AUTH}


def matches(pattern: str, text: str) -> bool:
    """As CEL's `matches`: a match anywhere unless the pattern is anchored."""
    return compiled(pattern).search(text) is not None


@functools.cache
def compiled(pattern: str) -> re.Pattern[str]:
    """A pattern as the API server's regular expressions (RE2) read it: there `$` is the end of
    the text, where Python's `$` also matches before a final newline (so "NAME\n" would pass
    `^[A-Z]+$` here and fail there); it becomes `\\Z`."""
    out, escaped, in_class = [], False, False
    for c in pattern:
        if escaped:
            escaped = False
        elif c == "\\":
            escaped = True
        elif c == "[":
            in_class = True
        elif c == "]":
            in_class = False
        elif c == "$" and not in_class:
            c = r"\Z"
        out.append(c)
    return re.compile("".join(out))


_SUFFIXES = {
    **{s: Decimal(1024) ** (i + 1) for i, s in enumerate(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"))},
    **{s: Decimal(10) ** e for s, e in (("n", -9), ("u", -6), ("m", -3), ("", 0), ("k", 3))},
    **{s: Decimal(10) ** (3 * (i + 2)) for i, s in enumerate(("M", "G", "T", "P", "E"))},
}


def quantity(value: str | int) -> Decimal:
    """A quantity matching RESOURCE_QUANTITY (or an int), as a number."""
    if isinstance(value, int):
        return Decimal(value)
    number = re.match(r"^\+?([0-9.]*)", value)
    assert number is not None
    digits, suffix = number.group(1), value[number.end() :]
    if re.fullmatch(r"[eE][+-]?[0-9]+", suffix):
        return Decimal(digits) * Decimal(10) ** int(suffix[1:])
    return Decimal(digits) * _SUFFIXES[suffix]


# What the model init container may ask for: the API server refuses a pod whose container names
# another resource that is not fully qualified, and an extended one (a GPU) is of no use to a copy.
RESOURCE_NAMES = ("cpu", "memory", "ephemeral-storage")
# CEL twin of `unknown_resource`.
KNOWN_RESOURCES = " && ".join(
    f"(!has(self.{kind}) || self.{kind}.all(k, k in {list(RESOURCE_NAMES)}))"
    for kind in ("requests", "limits")
)


def unknown_resource(resources: dict[str, dict[str, str | int]]) -> str | None:
    """The first resource named in requests or limits that is not one of RESOURCE_NAMES."""
    for kind in ("requests", "limits"):
        for name in resources.get(kind) or {}:
            if name not in RESOURCE_NAMES:
                return name
    return None


# CEL twin of `request_over_limit` (the CRD's rule on resources).
REQUESTS_WITHIN_LIMITS = (
    "!has(self.requests) || !has(self.limits) || self.requests.all(k, !(k in self.limits) || "
    "quantity(string(self.requests[k])).compareTo(quantity(string(self.limits[k]))) <= 0)"
)


def request_over_limit(resources: dict[str, dict[str, str | int]]) -> str | None:
    """The first resource whose request is above its limit (a pod with it is refused)."""
    requests, limits = resources.get("requests") or {}, resources.get("limits") or {}
    for name, amount in requests.items():
        if name in limits and quantity(amount) > quantity(limits[name]):
            return name
    return None


def resources_problem(resources: dict[str, dict[str, str | int]]) -> str | None:
    """Why a modelInit's resources (a setting's or the configuration's) would make every model
    pod one the API server refuses, if they would: both CEL rules on them, in their order."""
    unknown = unknown_resource(resources)
    if unknown is not None:
        return f"{unknown!r}: resources are {', '.join(RESOURCE_NAMES)}"
    over = request_over_limit(resources)
    if over is not None:
        return f"the {over} request is above its limit"
    return None
