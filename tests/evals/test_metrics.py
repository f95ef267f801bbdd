"""Every built-in metric: score in [0, 1], pass/fail against its threshold, a reason; and how
metrics are declared (names, TYPE=ARG, module:function, mappings, @llmflow.metric)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

import llmflow
from llmflow.errors import EvalError
from llmflow.evals.declare import parse_metric, parse_metrics
from llmflow.evals.metrics import MetricResult, Sample, ScoringContext
from llmflow.model.registry import registry


def score(
    decl: Any, output: Any, expected: Any = None, ctx: ScoringContext | None = None, **kw: Any
) -> MetricResult:
    m = parse_metric(decl)
    outputs = kw.pop("outputs", None)
    return asyncio.run(
        m.score(
            Sample(output=output, expected=expected, outputs=outputs, record_id="r1", run_id="run1", **kw),
            ctx or ScoringContext(),
        )
    )


def test_exact_compares_stripped_text_and_says_how_it_differs() -> None:
    assert score("exact", " positive\n", "positive") == MetricResult(
        1.0, True, "output equals the expected value"
    )
    r = score("exact", "Positive", "positive")
    assert (r.score, r.passed) == (0.0, False) and '"Positive"' in r.reason and '"positive"' in r.reason
    assert score({"type": "exact", "ignore_case": True}, "Positive", "positive").passed
    assert score("exact", '{"a": 1}', {"a": 1}).passed  # JSON text against a mapping
    assert score("exact", 3, "3").passed


def test_a_metric_that_needs_an_expected_value_fails_the_record_without_one() -> None:
    r = score("exact", "x", None)
    assert not r.passed and "no expected value for record 'r1'" in r.reason


def test_contains_uses_the_expected_value_or_its_own_and_scores_the_fraction_found() -> None:
    assert score("contains", "the answer is positive.", "positive").passed
    assert score("contains=answer", "the answer", None).passed
    r = score({"type": "contains", "value": ["a", "zz", "the"]}, "the answer")
    assert r.score == pytest.approx(2 / 3) and not r.passed and '"zz"' in r.reason
    assert score({"type": "contains", "value": ["a", "zz"], "threshold": 0.5}, "the answer").passed
    assert score(
        {"type": "contains", "value": ["zz", "ANS"], "all": False, "ignore_case": True}, "the answer"
    ).passed


def test_regex_searches_and_a_bad_pattern_fails_when_declared() -> None:
    assert score("regex=^(positive|negative)$", "negative").passed
    assert not score("regex=^pos", "negative").passed
    assert score({"type": "regex", "pattern": "VIOLATING", "ignore_case": True}, "verdict: violating").passed
    with pytest.raises(EvalError, match="invalid regular expression"):
        parse_metric("regex=(")
    with pytest.raises(EvalError, match="needs a 'pattern'"):
        parse_metric("regex")


def test_json_schema_validity_names_the_first_failing_path() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    assert score({"type": "json_schema", "schema": schema}, '```json\n{"n": 3}\n```').passed
    r = score({"type": "json_schema", "schema": schema}, {"n": "x"})
    assert not r.passed and r.reason.startswith("n: 'x' is not of type 'integer'")
    assert "not JSON" in score({"type": "json_schema", "schema": schema}, "hello").reason
    with pytest.raises(EvalError, match="invalid JSON schema"):
        parse_metric({"type": "json_schema", "schema": {"type": "nope"}})


def test_json_schema_reads_a_schema_file(tmp_path: Path) -> None:
    (tmp_path / "s.json").write_text('{"type": "array"}')
    assert score(f"json_schema={tmp_path / 's.json'}", "[1, 2]").passed


def test_field_equality_compares_named_fields_case_insensitively_by_default() -> None:
    assert score(
        "field=sentiment", {"sentiment": "Positive", "confidence": 0.2}, {"sentiment": "positive"}
    ).passed
    r = score({"type": "field", "fields": ["a", "b"]}, '{"a": 1, "b": 2}', {"a": 1, "b": 3})
    assert r.score == 0.5 and not r.passed and r.reason == 'b: "2" != "3"'
    assert score("field=label", "spam", "spam").passed  # a plain output is the one field
    assert score("field=meta.kind", {"meta": {"kind": "x"}}, {"meta": {"kind": "x"}}).passed


def test_numeric_tolerance_absolute_and_relative() -> None:
    assert score("numeric=0.5", "The answer is 41.6", 42).passed
    r = score("numeric=0.1", "41.6", "42")
    assert not r.passed and "off by 0.4" in r.reason
    assert score({"type": "numeric", "relative": 0.01}, 101, 100).passed
    assert score({"type": "numeric", "field": "score"}, {"score": 3}, {"score": 3.0}).passed
    assert "not a number" in score("numeric", "no digits", 1).reason
    with pytest.raises(EvalError, match="tolerance must be 0 or more"):
        parse_metric("numeric=-1")


def test_similarity_uses_the_embedding_function_and_its_threshold() -> None:
    vectors = {"a cat": [1.0, 0.0], "a kitten": [0.9, 0.1], "a car": [0.0, 1.0]}
    seen: list[Any] = []

    def embed(texts: list[str], model: str | None = None) -> list[list[float]]:
        seen.append((list(texts), model))
        return [vectors[t] for t in texts]

    ctx = ScoringContext(embed=embed)
    good = score("similarity", "a kitten", "a cat", ctx)
    assert (
        good.passed and good.score == pytest.approx(0.9 / (0.82**0.5)) and "cosine similarity" in good.reason
    )
    bad = score({"type": "similarity", "threshold": 0.5, "model": "local:minilm"}, "a car", "a cat", ctx)
    assert (bad.score, bad.passed) == (0.0, False)
    assert seen[-1] == (["a car", "a cat"], "local:minilm")


def test_a_python_metric_gets_the_arguments_it_names_and_may_return_many_shapes(tmp_path: Path) -> None:
    (tmp_path / "mymetrics.py").write_text(
        "def length_ok(output, expected=None):\n    return len(output) < 10\n"
        "def graded(output, inputs):\n    return (0.25, f\"graded {inputs['q']}\")\n"
        "def as_dict(output):\n    return {'score': 0.9, 'reason': 'fine', 'extra': 1}\n"
        "async def async_one(output):\n    return 0.7\n"
        "def broken(output):\n    raise KeyError('boom')\n"
        "def wrong(output):\n    return 'yes'\n"
    )
    f = tmp_path / "mymetrics.py"
    assert score(f"{f}:length_ok", "short").passed
    r = score(f"{f}:graded", "x", inputs={"q": "Q1"})
    assert (r.score, r.passed, r.reason) == (0.25, False, "graded Q1")
    r = score(f"{f}:as_dict", "x")
    assert r.passed and r.details == {"extra": 1}
    assert score(f"{f}:async_one", "x").score == 0.7
    assert "KeyError" in score(f"{f}:broken", "x").reason
    assert "returned str" in score(f"{f}:wrong", "x").reason
    with pytest.raises(EvalError, match="has no function 'nope'"):
        parse_metric(f"{f}:nope")
    with pytest.raises(EvalError, match="does not exist"):
        parse_metric("missing.py:fn")


def test_at_llmflow_metric_registers_a_function_with_its_threshold() -> None:
    @llmflow.metric(threshold=0.8)
    def polite_test_metric(output: str) -> float:
        return 0.85 if "please" in output else 0.1

    try:
        m = parse_metric("polite_test_metric")
        assert (m.name, m.threshold) == ("polite_test_metric", 0.8)
        assert score("polite_test_metric", "please sit").passed
        assert not score(
            {"type": "python", "function": "polite_test_metric", "threshold": 0.9}, "please"
        ).passed
        assert score(polite_test_metric, "please").passed  # the function itself
    finally:
        registry.metrics.pop("polite_test_metric", None)


def test_bdd_is_superoptix_confidence_field_by_field() -> None:
    r = score("bdd", {"sentiment": "positive", "confidence": 0.9}, {"sentiment": "positive"})
    assert (
        r.passed
        and r.score == pytest.approx(1.0)
        and r.details["criteria_breakdown"]["semantic_similarity"] == 1.0
    )
    r = score("bdd", {"sentiment": "neutral"}, {"sentiment": "positive"})
    assert not r.passed and r.reason == "semantic meaning differs significantly"
    assert score("bdd", "anything at all", None).passed  # no expected output: a non-empty answer passes
    assert score("bdd", "", {}).reason == "Empty or no response generated"


def test_declarations_unknown_names_options_and_thresholds_fail_with_a_hint() -> None:
    with pytest.raises(EvalError, match="unknown metric 'exackt'") as e:
        parse_metric("exackt")
    assert "exact" in (e.value.hint or "")
    with pytest.raises(EvalError, match="unknown option"):
        parse_metric({"type": "exact", "colour": 1})
    with pytest.raises(EvalError, match="not in"):
        parse_metric({"type": "exact", "threshold": 2})
    with pytest.raises(EvalError, match="takes no argument"):
        parse_metric("exact=x")
    with pytest.raises(EvalError, match="python metrics run code"):
        parse_metric("os:getcwd", allow_code=False)
    m = parse_metric("{type: numeric, field: score, tolerance: 0.5}")
    assert (m.TYPE, m.options["field"], m.options["tolerance"]) == ("numeric", "score", 0.5)
    names = [
        m.name
        for m in parse_metrics(
            ["contains=a", "contains=b", {"name": "mine", "type": "regex", "pattern": "x"}]
        )
    ]
    assert names == ["contains", "contains#2", "mine"]
    assert parse_metric("verdict", {"verdict": {"type": "regex", "pattern": "OK"}}).TYPE == "regex"
    assert parse_metric("similarity=0.6").threshold == 0.6


def test_the_output_option_selects_one_of_several_outputs() -> None:
    assert score(
        {"type": "exact", "output": "label"},
        {"label": "a", "why": "b"},
        "a",
        outputs={"label": "a", "why": "b"},
    ).passed


def test_similarity_with_the_shared_embedding_function_when_it_is_installed() -> None:
    pytest.importorskip(
        "llmflow.providers.embeddings",
        reason="llmflow.providers.embeddings (the tools work) has not landed here",
    )
    same = score(
        {"type": "similarity", "model": "fake:64"}, "the cat sat on the mat", "the cat sat on the mat"
    )
    assert same.passed and same.score == pytest.approx(1.0)
    other = score(
        {"type": "similarity", "model": "fake:64"},
        "completely unrelated words here",
        "the cat sat on the mat",
    )
    assert other.score < same.score
