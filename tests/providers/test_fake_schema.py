"""Fake structured answers validate against the schemas flows use."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmflow.providers.fake_schema import value_for_schema

jsonschema = pytest.importorskip("jsonschema")

leaf = st.one_of(
    st.just({"type": "string"}),
    st.just({"type": "boolean"}),
    st.just({"type": "null"}),
    st.builds(
        lambda lo, span: {"type": "integer", "minimum": lo, "maximum": lo + span},
        st.integers(-50, 50),
        st.integers(0, 20),
    ),
    st.builds(
        lambda lo, span: {"type": "number", "exclusiveMinimum": lo, "exclusiveMaximum": lo + span},
        st.floats(-10, 10, allow_nan=False),
        st.floats(0.01, 5, allow_nan=False),
    ),
    st.lists(st.text(min_size=1, max_size=5), min_size=1, max_size=4, unique=True).map(
        lambda xs: {"enum": xs}
    ),
    st.builds(
        lambda lo, hi: {"type": "string", "minLength": lo, "maxLength": lo + hi},
        st.integers(0, 20),
        st.integers(0, 10),
    ),
)
schemas = st.recursive(
    leaf,
    lambda inner: st.one_of(
        st.builds(lambda item, n: {"type": "array", "items": item, "minItems": n}, inner, st.integers(0, 3)),
        st.dictionaries(st.text("abcdefgh", min_size=1, max_size=6), inner, max_size=4).map(
            lambda props: {"type": "object", "properties": props, "required": sorted(props)}
        ),
        st.lists(inner, min_size=1, max_size=3).map(lambda xs: {"anyOf": xs}),
    ),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(schema=schemas, seed=st.text(max_size=10))
def test_generated_value_validates(schema: dict, seed: str) -> None:
    jsonschema.validate(value_for_schema(schema, seed), schema)


def test_refs_into_defs_are_followed() -> None:
    schema = {
        "$defs": {
            "Verdict": {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
        },
        "type": "object",
        "properties": {"verdict": {"$ref": "#/$defs/Verdict"}, "maybe": {"type": ["null", "integer"]}},
        "required": ["verdict", "maybe"],
    }
    value = value_for_schema(schema, "s")
    jsonschema.validate(value, schema)
    assert isinstance(value["verdict"]["ok"], bool) and isinstance(value["maybe"], int)
