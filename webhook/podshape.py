"""The shape of the pod fields the injection rules read, checked once at the edge.

The API server sends well-typed pods (it decodes them into its Pod type before admission), so a
pod of another shape comes from some other client: it gets HTTP 400 naming the field, and the
rules never have to guard against a label that is a number or a container that is a string.
A JSON null is accepted wherever a field may be absent: Kubernetes treats them alike.
Fields not listed here are never read, so they may hold anything.
"""

from __future__ import annotations

from typing import Any


class ShapeError(ValueError):
    pass


class StrMap:
    """An object whose values are all strings (labels, annotations, resource quantities)."""


class Required:
    """A field Kubernetes requires (a name, a mount path): absent or null is an error."""

    def __init__(self, schema: Schema) -> None:
        self.schema = schema


Schema = Any  # type | StrMap | Required | dict[str, Schema] | list[Schema] (one item schema)
NAME = Required(str)

_KEY_REF: Schema = {"name": str, "key": str}
_ENV_VAR: Schema = {
    "name": NAME,
    "value": str,
    "valueFrom": {"secretKeyRef": _KEY_REF, "configMapKeyRef": _KEY_REF},
}
_CONTAINER: Schema = {
    "name": NAME,
    "env": [_ENV_VAR],
    "envFrom": [{"prefix": str, "secretRef": {"name": str}, "configMapRef": {"name": str}}],
    "volumeMounts": [
        {"name": NAME, "mountPath": Required(str), "subPath": str, "subPathExpr": str}
    ],
    "command": [str],
    "args": [str],
    "restartPolicy": str,
    "resources": {"requests": dict, "limits": dict},  # quantities: read only if they are ones
}
_KEY_TO_PATH: Schema = [{"key": str, "path": str}]
_VOLUME: Schema = {
    "name": NAME,
    "persistentVolumeClaim": {"claimName": str},
    "emptyDir": {"sizeLimit": str},
    "secret": {"secretName": str, "items": _KEY_TO_PATH},
    "configMap": {"name": str, "items": _KEY_TO_PATH},
}
POD: Schema = {
    "metadata": {"name": str, "generateName": str, "labels": StrMap, "annotations": StrMap},
    "spec": {
        "containers": [_CONTAINER],
        "initContainers": [_CONTAINER],
        "volumes": [_VOLUME],
        "imagePullSecrets": [{"name": str}],
        "resources": {"requests": dict, "limits": dict},
        "os": {"name": str},
    },
}


def check(value: Any, schema: Schema = POD, path: str = "object") -> None:
    """Raises ShapeError naming the first field whose type is not what the rules expect."""
    if isinstance(schema, dict):
        if not isinstance(value, dict):
            raise ShapeError(f"{path}: expected an object")
        for key, sub in schema.items():
            item = value.get(key)
            if isinstance(sub, Required):
                if item is None:
                    raise ShapeError(f"{path}.{key}: required")
                sub = sub.schema
            if item is not None:
                check(item, sub, f"{path}.{key}")
    elif isinstance(schema, list):
        if not isinstance(value, list):
            raise ShapeError(f"{path}: expected a list")
        for i, item in enumerate(value):
            if item is None:
                raise ShapeError(f"{path}[{i}]: expected a value, not null")
            check(item, schema[0], f"{path}[{i}]")
    elif schema is StrMap:
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise ShapeError(f"{path}: expected an object of strings")
    elif not isinstance(value, schema):
        raise ShapeError(f"{path}: expected {schema.__name__}")
