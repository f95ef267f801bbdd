"""Property-based tests: bad input always gets diagnostics (or a clear error), never a crash.

Random and mutated flow documents go through the validator and the YAML parser; random
override strings go through `llmflow config` in-process.
"""

from __future__ import annotations

import contextlib
import copy
import io
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from llmflow.errors import FlowValidationError
from llmflow.model.diagnostics import Diagnostic
from llmflow.model.loader import parse_flow_text
from llmflow.model.validate import validate_document

from .test_spec import ALL_KINDS

BASE_DOCS = [
    yaml.safe_load(ALL_KINDS),
    {
        "name": "x",
        "inputs": {"text": "string"},
        "steps": [{"id": "a", "llm": "{{ inputs.text }}"}, {"id": "b", "shell": "echo"}],
    },
    {
        "name": "y",
        "agents": {"a": {"model": "fake:a"}},
        "outputs": {"r": "{{ steps.c.output }}"},
        "steps": [
            {"id": "g", "parallel": [{"id": "p", "llm": "x"}, {"id": "q", "llm": "y", "retry": 2}]},
            {"id": "r", "route": {"routes": [{"when": "steps.p.output", "to": "c"}], "default": ["d"]}},
            {"id": "c", "broadcast": {"agents": ["a"]}},
            {"id": "d", "loop": {"until": "true", "steps": [{"id": "e", "llm": "{{ loop.iteration }}"}]}},
        ],
    },
]

KEYS = [
    "name", "steps", "id", "kind", "llm", "shell", "parallel", "loop", "route", "needs", "when", "prompt",
    "agents", "inputs", "outputs", "matrix", "for_each", "retry", "until", "routes", "to", "default", "type",
    "steps2", "__class__", "", "model", "options", "timeout", 0, 1.5, None, True,
]  # fmt: skip
TEXTS = [
    "{{ steps.a.output }}", "{{ ''.__class__ }}", "{{ inputs.text | nope }}", "{% for x in y %}", "}}", "{{",
    "steps.a.output ==", "a", "", "fake:x", "${oc.env:X}", "7bad", "llm", "é", "\x00",
]  # fmt: skip

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(TEXTS),
    st.text(max_size=20),
)
keys = st.one_of(st.sampled_from(KEYS), st.text(max_size=8))
json_like = st.recursive(
    scalars,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(keys, children, max_size=4)),
    max_leaves=25,
)


def _paths(doc, prefix=()):
    yield prefix
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _paths(v, (*prefix, i))


def _set(doc, path, value):
    if not path:
        return value
    node = doc
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value
    return doc


def _delete(doc, path):
    if not path:
        return doc
    node = doc
    for p in path[:-1]:
        node = node[p]
    del node[path[-1]]
    return doc


@st.composite
def mutated_docs(draw):
    doc = copy.deepcopy(draw(st.sampled_from(BASE_DOCS)))
    for _ in range(draw(st.integers(1, 4))):
        paths = list(_paths(doc))
        path = draw(st.sampled_from(paths))
        action = draw(st.sampled_from(["replace", "delete", "insert", "duplicate"]))
        try:
            if action == "replace":
                doc = _set(doc, path, draw(json_like))
            elif action == "delete":
                doc = _delete(doc, path)
            elif action == "insert":
                node = doc
                for p in path:
                    node = node[p]
                if isinstance(node, dict):
                    node[draw(keys)] = draw(json_like)
                elif isinstance(node, list):
                    node.insert(draw(st.integers(0, len(node))), draw(json_like))
            elif action == "duplicate":
                node = doc
                for p in path:
                    node = node[p]
                if isinstance(node, list) and node:
                    node.append(copy.deepcopy(node[0]))
        except (KeyError, IndexError, TypeError):
            pass
    return doc


def _check(doc):
    flow, diags = validate_document(doc, file="fuzz.yaml")
    assert (flow is None) == bool(diags)
    for d in diags:
        assert isinstance(d, Diagnostic)
        assert d.code and d.message
        d.format()
        d.to_dict()
    if flow is not None:  # a valid flow round-trips (compared as text: NaN != NaN)
        assert parse_flow_text(flow.to_yaml()).to_yaml() == flow.to_yaml()


PROPS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPS
@given(json_like)
def test_random_documents_only_produce_diagnostics(doc):
    _check(doc)


@PROPS
@given(mutated_docs())
def test_mutated_flows_only_produce_diagnostics(doc):
    _check(doc)


@PROPS
@given(mutated_docs())
def test_mutated_flows_as_yaml_text_raise_only_flow_validation_error(doc):
    try:
        text = yaml.safe_dump(doc, allow_unicode=True)
    except yaml.YAMLError:
        assume(False)
    try:
        parse_flow_text(text)
    except FlowValidationError as exc:
        assert exc.diagnostics and str(exc)


@PROPS
@given(
    st.lists(
        st.sampled_from(
            [*"abc:-[]{}#&*!|>'\"%@` \n\t$.", "{{", "}}", "id: ", "steps:", "name: ", "\n  - ", "llm: "]
        ),
        max_size=40,
    ).map("".join)
)
def test_random_yaml_text_raises_only_flow_validation_error(text):
    try:
        parse_flow_text(text)
    except FlowValidationError as exc:
        assert exc.diagnostics


# -- command-line overrides through `llmflow config` ------------------------------------------

ROOT = Path(__file__).resolve().parents[2]
FLOW_TEXT = "name: fz\ninputs: {text: string}\nmodel: fake:x\nparameters: {k: 1}\nsteps:\n  - {id: a, llm: '{{ inputs.text }}'}\n"

override_keys = st.sampled_from(
    ["model", "name", "steps", "description", "parameters.k", "parameters", "agents.x", "inputs.text.type",
     "options.max_concurrency", "llms", "flows", "a.b", "steps.0.prompt", "hydra.run", "x@y", "", "=", "~"]
)  # fmt: skip
override_values = st.one_of(
    st.sampled_from(
        [
            "fake:y",
            "[1,2]",
            "{a: 1}",
            "${oc.env:NOPE,d}",
            "${nope}",
            "'q'",
            "null",
            "1",
            "true",
            "[",
            "a,b",
            "???",
            "",
        ]
    ),
    st.text(max_size=12),
)
overrides = st.one_of(
    st.builds(
        lambda p, k, v: f"{p}{k}={v}", st.sampled_from(["", "+", "++", "~"]), override_keys, override_values
    ),
    st.builds(lambda k: f"~{k}", override_keys),
    st.text(max_size=25),
)


@contextlib.contextmanager
def _registrations_restored():
    """main() registers the subcommands once per process; nothing to undo."""
    yield


def _run_cli(argv: list[str]) -> tuple[int, str, str]:
    from llmflow.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with (
        _registrations_restored(),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
        pytest.raises(SystemExit) as e,
    ):
        main(argv)
    return e.value.code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def flow_file(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("fz") / "fz.yaml"
    p.write_text(FLOW_TEXT)
    return p


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(st.lists(overrides, min_size=1, max_size=2))
def test_random_overrides_exit_0_or_2_without_a_traceback(flow_file, ovs):
    assume(not any(o.startswith("-") for o in ovs))  # options, not overrides
    code, out, err = _run_cli(["config", str(flow_file), *ovs])
    assert code in (0, 2), (ovs, code, err)
    assert "Traceback" not in err + out
    assert "internal error" not in err
    if code == 2:
        assert err.strip().startswith("error:"), err


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(mutated_docs(), st.booleans())
def test_random_flow_files_validate_with_exit_0_or_2_without_a_traceback(tmp_path, doc, wrapped):
    try:
        text = yaml.safe_dump({"wrapped": doc} if wrapped else doc, allow_unicode=True)
    except yaml.YAMLError:
        assume(False)
    p = tmp_path / "fuzz.yaml"
    p.write_text(text, encoding="utf-8")
    code, out, err = _run_cli(["validate", str(p)])
    assert code in (0, 2), (text, code, err)
    assert "Traceback" not in err + out and "internal error" not in err


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(overrides)
def test_random_overrides_on_a_group_flow_exit_0_or_2_without_a_traceback(ov):
    assume(not ov.startswith("-"))
    code, out, err = _run_cli(["config", str(ROOT / "examples" / "judges"), ov])
    assert code in (0, 2), (ov, code, err)
    assert "Traceback" not in err + out and "internal error" not in err
