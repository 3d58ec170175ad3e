"""The CRD's OpenAPI schema (crd.py) applied to a setting as the API server applies it, so a
setting read from a file, or judged by the validating webhook, meets exactly the types, names,
lengths and fields the API server demands: one schema, two judges. The CEL rules are not run
here; the parser (model.py) holds their twins, and a test feeds both judges generated settings.

What the API server does, and so this does: a null object field counts as absent (it prunes
it), a null list item does not; strings are measured in characters; an unknown field is an error
(kubectl's strict field validation). Messages show a value only where the schema has a pattern
(names, paths, sizes): never a value that might be a credential.

One difference, on purpose: a string with a lone surrogate (JSON's \\ud800) is refused here,
where the API server would store U+FFFD in its place; it never hands such a string to a watch,
so only a settings file can hold one, and there it is a mistake."""

from __future__ import annotations

from typing import Any

from webhook.settings import rules

Schema = dict[str, Any]

# What a failed pattern means, in words.
_PATTERN_WORDS = {
    rules.DNS1123: "is not a valid object name (lowercase letters, digits, '-' and '.')",
    rules.ENV_NAME: "is not a valid environment variable name",
    rules.CONFIG_KEY: "is not a valid key of a Secret or ConfigMap",
    rules.QUANTITY: "is not a quantity like 20Gi",
    rules.RESOURCE_QUANTITY: "is not a quantity like 500m or 2Gi",
    rules.IMAGE: "is not an image reference (it holds whitespace)",
    rules.WORKSPACE: "is not an MLflow workspace name (2 to 63 lowercase letters, digits and "
    "'-', a letter or digit at each end)",
    "^/": "is not an absolute path",
}
_TYPE_WORDS = {
    "object": "an object",
    "array": "a list",
    "string": "a string",
    "boolean": "true or false",
    "integer": "an integer",
}


class SchemaProblem(ValueError):
    """`path`: the field, from the root given; the message says what is wrong with it."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path


def pruned(value: Any) -> Any:
    """Without null fields, as the API server stores an object: so a setting from a file is
    injected exactly as the same setting from the cluster."""
    if isinstance(value, dict):
        return {k: pruned(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [pruned(v) for v in value]
    return value


def _type_ok(value: Any, schema: Schema) -> bool:
    if schema.get("x-kubernetes-int-or-string"):
        return isinstance(value, str) or (type(value) is int and -(2**63) <= value < 2**63)
    kind = schema.get("type")
    if kind == "object":
        return isinstance(value, dict)
    if kind == "array":
        return isinstance(value, list)
    if kind == "string":
        return isinstance(value, str)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "integer":
        return type(value) is int and -(2**63) <= value < 2**63
    return True


def check(value: Any, schema: Schema, path: str) -> None:
    """Raises SchemaProblem for the first place where `value` breaks `schema`."""
    if not _type_ok(value, schema):
        if schema.get("x-kubernetes-int-or-string"):
            raise SchemaProblem(path, "must be an integer or a string")
        raise SchemaProblem(path, f"must be {_TYPE_WORDS[schema['type']]}")
    if isinstance(value, str):
        _check_string(value, schema, path)
    elif isinstance(value, int) and value < schema.get("minimum", value):
        raise SchemaProblem(path, f"may not be less than {schema['minimum']}")
    elif isinstance(value, list):
        _check_list(value, schema, path)
    elif isinstance(value, dict):
        _check_object(value, schema, path)


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


def _check_string(value: str, schema: Schema, path: str) -> None:
    if not is_unicode(value):
        raise SchemaProblem(path, "is not valid Unicode")
    if len(value) > schema.get("maxLength", len(value)):
        raise SchemaProblem(path, f"may not be longer than {schema['maxLength']} characters")
    if len(value) < schema.get("minLength", 0):
        raise SchemaProblem(path, "must not be empty")
    if value not in schema.get("enum", (value,)):
        raise SchemaProblem(path, f"must be one of {', '.join(schema['enum'])}")
    pattern = schema.get("pattern")
    if pattern is not None and not rules.compiled(pattern).search(value):
        words = _PATTERN_WORDS.get(pattern, f"does not match {pattern}")
        shown = value if len(value) <= 80 else value[:80] + "..."
        raise SchemaProblem(path, f"{shown!r} {words}")


def _check_list(value: list[Any], schema: Schema, path: str) -> None:
    if len(value) > schema.get("maxItems", len(value)):
        raise SchemaProblem(path, f"may hold at most {schema['maxItems']} items")
    items = schema.get("items", {})
    for i, item in enumerate(value):
        check(item, items, f"{path}[{i}]")
    if schema.get("x-kubernetes-list-type") == "map":
        seen: set[tuple[Any, ...]] = set()
        for i, item in enumerate(value):
            key = tuple(item.get(k) for k in schema["x-kubernetes-list-map-keys"])
            if key in seen:
                raise SchemaProblem(f"{path}[{i}]", f"{', '.join(map(str, key))} is set twice")
            seen.add(key)


def _check_object(value: dict[str, Any], schema: Schema, path: str) -> None:
    properties: Schema = schema.get("properties", {})
    extra = schema.get("additionalProperties")
    if extra is None:  # even a null unknown field is one (strict decoding looks at names)
        for name in value:
            if name not in properties:
                raise SchemaProblem(path, f"unknown field {str(name)[:80]!r}")
    present = [k for k, v in value.items() if v is not None]
    if len(present) > schema.get("maxProperties", len(present)):
        raise SchemaProblem(path, f"may hold at most {schema['maxProperties']} fields")
    for name in schema.get("required", ()):
        if name not in present:
            raise SchemaProblem(f"{path}.{name}", "required")
    for name in present:
        sub = properties.get(name, extra)
        assert sub is not None  # an unknown name was refused above
        check(value[name], sub, f"{path}.{name}")
