"""MLflowSetting validation, file loading and the index, as an admin meets them."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from tests.settings_table import SECRET, TABLE, case_id
from tests.settings_table import setting as table_setting
from webhook.groups import escape_group
from webhook.settings.index import Problem, SettingsIndex
from webhook.settings.model import ArtifactVolume, MLflowSetting, SettingError, parse_setting
from webhook.settings.sources import SourceError, load_file

GOOD: dict[str, Any] = {
    "apiVersion": "mlflow.primehub.io/v1alpha1",
    "kind": "MLflowSetting",
    "metadata": {"name": "g", "namespace": "hub"},
    "spec": {
        "group": "G_1",
        "trackingUri": "http://mlflow:5000",
        "trackingEnv": [
            {
                "name": "MLFLOW_TRACKING_PASSWORD",
                "valueFrom": {"secretKeyRef": {"name": "login", "key": "password"}},
            }
        ],
    },
}


def with_spec(**changes: Any) -> dict[str, Any]:
    obj = copy.deepcopy(GOOD)
    obj["spec"].update(changes)
    return obj


def error_of(obj: Any) -> str:
    with pytest.raises(SettingError) as e:
        parse_setting(obj, "hub")
    return str(e.value)


def test_a_good_setting_keeps_its_env_as_written() -> None:
    s = parse_setting(GOOD, "hub")
    assert s.ref == "hub/g" and s.group == "G_1" and s.group_key == "escaped--47-5f1"
    assert s.tracking_env == tuple(GOOD["spec"]["trackingEnv"])


@pytest.mark.parametrize(
    ("spec", "field", "words"),
    [
        (
            {"trackingEnv": [{"name": "MLFLOW_TRACKING_PASSWORD", "value": "x"}]},
            "spec.trackingEnv[0].value",
            "put it in a Secret",
        ),
        (
            {"artifactEnv": [{"name": "AWS_SECRET_ACCESS_KEY", "value": "x"}]},
            "spec.artifactEnv[0].value",
            "looks like a credential",
        ),
        (
            {"trackingEnv": [{"name": "my_token", "value": "x"}]},
            "spec.trackingEnv[0].value",
            "looks like a credential",
        ),
        (
            {"artifactEnv": [{"name": "1BAD=NAME", "value": "x"}]},
            "spec.artifactEnv[0].name",
            "not a valid environment variable name",
        ),
        ({"trackingUri": "mlflow:5000"}, "spec.trackingUri", "must be an http(s):// URL"),
        ({"trackingUri": None}, "spec.trackingUri", "required"),
        ({"group": ""}, "spec.group", "must not be empty"),
        ({"uiUrl": "ftp://x"}, "spec.uiUrl", "must be an http(s):// URL"),
        (
            {
                "artifactEnv": [
                    {"name": "A", "valueFrom": {"secretKeyRef": {"name": "Bad_Name", "key": "k"}}}
                ]
            },
            "spec.artifactEnv[0].valueFrom.secretKeyRef.name",
            "not a valid object name",
        ),
        (
            {"artifactEnv": [{"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "x"}}}]},
            "spec.artifactEnv[0].valueFrom",
            "unknown field 'fieldRef'",
        ),
        (
            {"artifactEnv": [{"name": "A", "value": "1", "valueFrom": {}}]},
            "spec.artifactEnv[0]",
            "exactly one of value or valueFrom",
        ),
        (
            {
                "artifactEnv": [
                    {
                        "name": "MLFLOW_TRACKING_PASSWORD",
                        "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}},
                    }
                ]
            },
            "spec.artifactEnv[0].name",
            "in trackingEnv or artifactEnv, not both",
        ),
        (
            {"trackingEnv": [{"name": "MLFLOW_TRACKING_URI", "value": "http://x"}]},
            "spec.trackingEnv[0].name",
            "comes from trackingUri",
        ),
        (
            {"artifactEnvFrom": [{"secretRef": {"name": "s"}, "configMapRef": {"name": "c"}}]},
            "spec.artifactEnvFrom[0]",
            "exactly one of",
        ),
        (
            {"artifactVolume": {"claimName": "project-x", "mountPath": "project/x"}},
            "spec.artifactVolume.mountPath",
            "absolute",
        ),
        ({"modelInit": {"image": "x", "command": ["sh"]}}, "spec.modelInit", "unknown field"),
        (
            {"modelInit": {"resources": {"limits": {"memory": "512MB"}}}},
            "spec.modelInit.resources.limits.memory",
            "'512MB' is not a quantity like 500m or 2Gi",
        ),
        (
            {"trackingEnv": [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]},
            "spec.trackingEnv[1]",
            "A is set twice",
        ),
        ({"modelInit": {"volume": {"size": "huge"}}}, "spec.modelInit.volume.size", "quantity"),
        (
            {"modelInit": {"imagePullSecrets": ["creds"]}},
            "spec.modelInit.imagePullSecrets[0]",
            "must be an object",
        ),
        (
            {"artifactVolume": {"groupVolume": True, "claimName": "x"}},
            "spec.artifactVolume",
            "alone",
        ),
        ({"artifactVolume": {"groupVolume": "yes"}}, "spec.artifactVolume.groupVolume", "true"),
        ({"artifactVolume": {"groupVolume": False}}, "spec.artifactVolume", "alone"),
        ({"tackingUri": "http://typo"}, "spec", "unknown field 'tackingUri'"),
        # JSON's \ud800 escape gives a string no encoder takes (the API server never sends one).
        ({"group": "team\ud800"}, "spec.group", "not valid Unicode"),
    ],
)
def test_a_wrong_field_is_named_with_its_object(
    spec: dict[str, Any], field: str, words: str
) -> None:
    message = error_of(with_spec(**spec))
    assert message.startswith(f"MLflowSetting hub/g: {field}: "), message
    assert words in message


def test_kind_and_name_are_checked() -> None:
    assert "apiVersion/kind" in error_of({**GOOD, "kind": "ConfigMap"})
    assert "metadata.name" in error_of({**GOOD, "metadata": {"name": "Not_DNS"}})


def test_file_errors_name_every_bad_document(tmp_path: Path) -> None:
    f = tmp_path / "s.yaml"
    f.write_text(
        "apiVersion: mlflow.primehub.io/v1alpha1\nkind: MLflowSetting\nmetadata: {name: a}\n"
        "spec: {group: a, trackingUri: http://a}\n---\n"
        "apiVersion: mlflow.primehub.io/v1alpha1\nkind: MLflowSetting\nmetadata: {name: b}\n"
        "spec: {group: b}\n---\n"
        "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\n"
    )
    index = SettingsIndex()
    with pytest.raises(SourceError) as e:
        load_file(f, index)
    assert "document 2: MLflowSetting hub/b: spec.trackingUri: required" in str(e.value)
    assert len(index) == 0  # nothing half-loaded


def test_aliases_are_read_but_never_expanded_without_bound(tmp_path: Path) -> None:
    """A YAML anchor shared by settings is fine; "billion laughs" (nine levels of nine aliases,
    387 million values once expanded) and an alias inside itself are refused at once, naming
    the file, instead of hanging the loader in whatever reads or hashes them."""
    shared = tmp_path / "shared.yaml"
    shared.write_text(  # anchors hold within one document: a List
        "apiVersion: v1\nkind: List\nitems:\n"
        "- apiVersion: mlflow.primehub.io/v1alpha1\n  kind: MLflowSetting\n"
        "  metadata: {name: a}\n  spec:\n    group: a\n    trackingUri: http://a\n"
        "    artifactEnv: &s3\n"
        "    - {name: MLFLOW_S3_ENDPOINT_URL, value: 'http://s3?x=1&y=2'}\n"
        "- apiVersion: mlflow.primehub.io/v1alpha1\n  kind: MLflowSetting\n"
        "  metadata: {name: b}\n  spec: {group: b, trackingUri: http://b, artifactEnv: *s3}\n"
    )
    index = SettingsIndex()
    load_file(shared, index)
    for group in "ab":
        found = index.lookup("hub", escape_group(group))
        assert isinstance(found, MLflowSetting)
        assert found.artifact_env == (
            {"name": "MLFLOW_S3_ENDPOINT_URL", "value": "http://s3?x=1&y=2"},
        )
    levels = ["    a: &a [" + ", ".join(['"lol"'] * 9) + "]"]
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        levels.append(f"    {name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(
        "apiVersion: mlflow.primehub.io/v1alpha1\nkind: MLflowSetting\nmetadata: {name: c}\n"
        "spec:\n  group: c\n  trackingUri: http://c\n  lol:\n" + "\n".join(levels) + "\n"
    )
    selfish = tmp_path / "selfish.yaml"
    selfish.write_text(shared.read_text().replace("&s3\n", "&s3\n    - *s3\n", 1))
    for path, why in ((bomb, "expand to more than 2,000,000"), (selfish, "contains it")):
        with pytest.raises(SourceError) as e:
            load_file(path, index)
        assert str(e.value).startswith(f"{path}: not valid YAML: ") and why in str(e.value)
    assert len(index) == 2  # the last good settings stay


def test_file_without_namespace_lands_in_the_default_one(tmp_path: Path) -> None:
    f = tmp_path / "s.yaml"
    f.write_text(
        "apiVersion: mlflow.primehub.io/v1alpha1\nkind: MLflowSetting\nmetadata: {name: a}\n"
        "spec: {group: A b, trackingUri: http://a}\n"
    )
    index = SettingsIndex("hub")
    load_file(f, index)
    found = index.lookup("hub", "escaped--41-20b")
    assert isinstance(found, MLflowSetting) and found.ref == "hub/a"


def test_a_reloaded_file_keeps_what_is_unchanged_and_takes_what_changed(tmp_path: Path) -> None:
    f = tmp_path / "s.yaml"
    doc = "apiVersion: mlflow.primehub.io/v1alpha1\nkind: MLflowSetting\nmetadata: {name: %s}\n"
    doc += "spec: {group: %s, trackingUri: '%s'}\n"
    f.write_text(doc % ("a", "a", "http://a") + "---\n" + doc % ("b", "b", "http://b"))
    index = SettingsIndex("hub")
    load_file(f, index)
    kept = index.lookup("hub", "escaped-a")
    f.write_text(doc % ("a", "a", "http://a") + "---\n" + doc % ("b", "b", "http://b2"))
    load_file(f, index)
    assert index.lookup("hub", "escaped-a") is kept  # the same document: not parsed again
    changed = index.lookup("hub", "escaped-b")
    assert isinstance(changed, MLflowSetting) and changed.tracking_uri == "http://b2"


def test_index_follows_upserts_deletes_and_conflicts() -> None:
    index = SettingsIndex()
    a = copy.deepcopy(GOOD)
    b = copy.deepcopy(GOOD)
    b["metadata"]["name"] = "g2"
    index.replace_entries([index.entry(a)])
    key = ("hub", "escaped--47-5f1")
    assert isinstance(index.lookup(*key), MLflowSetting)
    index.upsert(b)
    conflict = index.lookup(*key)
    assert isinstance(conflict, Problem) and "hub/g, hub/g2" in conflict.message
    index.delete(a)
    assert index.lookup(*key) == parse_setting(b, "hub")
    moved = copy.deepcopy(b)
    moved["spec"]["group"] = "other"
    index.upsert(moved)  # its group changed: the old key is free again
    assert index.lookup(*key) is None
    assert isinstance(index.lookup("hub", "escaped-other"), MLflowSetting)
    assert index.lookup("other-ns", "escaped-other") is None


def test_a_relist_keeps_what_is_unchanged_and_takes_what_changed() -> None:
    index = SettingsIndex()
    listed = [with_spec(), with_spec(group="H")]
    listed[1]["metadata"]["name"] = "h"
    for n, obj in enumerate(listed):
        obj["metadata"]["resourceVersion"] = str(n + 1)
    index.replace_entries(index.entry(o) for o in listed)
    kept = index.lookup("hub", "escaped--47-5f1")
    changed = with_spec(group="H", trackingUri="http://other:5000")
    changed["metadata"].update(name="h", resourceVersion="9")
    index.replace_entries(index.entry(o) for o in [listed[0], changed])  # a re-list
    assert index.lookup("hub", "escaped--47-5f1") is kept  # same version: not parsed again
    moved = index.lookup("hub", "escaped--48")
    assert isinstance(moved, MLflowSetting) and moved.tracking_uri == "http://other:5000"
    unversioned = with_spec()  # from a file: no version, always read
    assert index.entry(unversioned).value is not kept


def test_an_invalid_update_is_reported_under_its_group() -> None:
    index = SettingsIndex()
    index.replace_entries([index.entry(GOOD)])
    bad = with_spec(trackingUri="nope")
    index.upsert(bad)
    found = index.lookup("hub", "escaped--47-5f1")
    assert isinstance(found, Problem) and "spec.trackingUri" in found.message
    assert index.errors() == [error_of(bad)]


def test_the_group_volume_comes_from_the_group_name_as_primehub_names_it() -> None:
    obj = with_spec(group="Research_Team", artifactVolume={"groupVolume": True})
    setting = parse_setting(obj, "hub")
    assert setting.artifact_volume == ArtifactVolume(
        "project-research-team", "/project/research-team"
    )
    bad = with_spec(group="Data Science", artifactVolume={"groupVolume": True})
    assert "claim name 'project-data science'" in error_of(bad)


@pytest.mark.parametrize(("changes", "field"), TABLE, ids=[case_id(c) for c, _ in TABLE])
def test_the_table_of_settings_as_the_webhook_judges_it(
    changes: dict[str, Any], field: str | None
) -> None:
    """The same table runs against the API server in test_cluster.py."""
    try:
        parse_setting(table_setting(changes), "hub")
    except SettingError as e:
        assert field is not None, f"refused: {e}"
        assert e.path.startswith(field), (e.path, field)
        assert SECRET not in str(e)
    else:
        assert field is None, f"accepted, but {field} should be refused"
