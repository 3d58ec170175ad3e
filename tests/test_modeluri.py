"""Registry URIs as PrimeHub writes them (names URL-encoded) and as people type them."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from webhook.modeluri import ModelUri, ModelUriError, parse_model_uri


@pytest.mark.parametrize(
    ("text", "parsed", "canonical"),
    [
        ("models:/churn/7", ModelUri("churn", version="7"), "models:/churn/7"),
        ("models:/churn%20model/07", ModelUri("churn model", version="7"), "models:/churn model/7"),
        ("models:/a%2Fb@champion", ModelUri("a/b", alias="champion"), "models:/a%2Fb@champion"),
        ("models:/m/production", ModelUri("m", stage="Production"), "models:/m/Production"),
        ("models:/m/Latest", ModelUri("m", stage="latest"), "models:/m/latest"),
        (" models:/m/None ", ModelUri("m", stage="None"), "models:/m/None"),
    ],
)
def test_accepted(text: str, parsed: ModelUri, canonical: str) -> None:
    assert parse_model_uri(text) == parsed
    assert str(parsed) == canonical
    assert parse_model_uri(str(parsed)) == parsed  # the canonical form reads back the same


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("runs:/abc/model", "is not a models:/ URI"),
        ("models:/m", "expected models:/<name>/<version>"),
        ("models:/m/champion", "neither a version number, a stage"),
        ("models://7", "expected models:/<name>/<version>"),
        ("models:/m@", "expected models:/<name>/<version>"),
        # Aliases MLflow's registry refuses: read back from the init container's command, the
        # first lost its space and the second named model "0@" (alias "0").
        ("models:/m@%20", "alias ' ' is not one MLflow takes"),
        ("models:/0@%400", "alias '@0' is not one MLflow takes"),
        # A final newline (hypothesis found it): read back, the command's alias lost it.
        ("models:/0@0%0a", "alias '0\\n' is not one MLflow takes"),
    ],
)
def test_rejected_with_what_is_accepted(text: str, words: str) -> None:
    with pytest.raises(ModelUriError) as e:
        parse_model_uri(text)
    assert words in str(e.value)


@settings(max_examples=3000, deadline=None)
@given(st.text(st.sampled_from("ab/@% 20m-07latestPRODUCTIONé\t:_."), max_size=24))
def test_what_is_accepted_reads_back_the_same_from_the_init_containers_command(text: str) -> None:
    """The webhook judges the annotation; the copier reads the canonical form from its command:
    the two must mean one model."""
    try:
        parsed = parse_model_uri("models:/" + text)
    except ModelUriError:
        return
    assert parse_model_uri(str(parsed)) == parsed
