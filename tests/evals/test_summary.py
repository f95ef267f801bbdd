"""Pass-rate arithmetic and formatting, per-variant aggregates, comparisons, and the reports
(JUnit parsed back with junitparser, Markdown, the terminal table)."""

from __future__ import annotations

from typing import Any

import pytest

from llmflow.evals.playbook import gate, superoptix_result
from llmflow.evals.report import junit, markdown, table
from llmflow.evals.summary import compare, fmt_rate, percentile, summarize
from llmflow.store.evals import EvalResult


def res(
    record: str,
    passed: bool,
    score: float,
    *,
    variant: str = "",
    status: str = "COMPLETED",
    latency: float | None = 1.0,
    **kw: Any,
) -> EvalResult:
    scores = {"exact": {"score": score, "passed": passed, "reason": "ok" if passed else "differs"}}
    return EvalResult(
        "e",
        f"e.{record}.{variant}",
        record,
        variant,
        kw.pop("parameters", {}),
        f"run-{record}-{variant}",
        3,
        status,
        score,
        passed,
        scores,
        None if passed else "exact: differs",
        "x",
        "y",
        10,
        0.01,
        latency,
        0.0,
    )


def test_pass_rates_are_formatted_as_superoptix_does() -> None:
    assert fmt_rate(2 / 3) == "66.7%"
    assert fmt_rate(1.0) == "100.0%"
    assert fmt_rate(0.0) == "0.0%"
    assert [gate(x) for x in (0.8, 0.7999, 0.6, 0.59, 0.0)] == [
        "EXCELLENT",
        "GOOD",
        "GOOD",
        "NEEDS WORK",
        "NEEDS WORK",
    ]


def test_percentiles_interpolate_between_ranks() -> None:
    assert percentile([], 50) is None
    assert percentile([5.0], 95) == 5.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([4.0, 1.0, 3.0, 2.0, 10.0], 95) == pytest.approx(8.8)


def test_a_variant_counts_passed_failed_errors_and_usage() -> None:
    rows = [
        res("a", True, 1.0, latency=1.0),
        res("b", False, 0.0, latency=3.0),
        res("c", False, 0.0, status="FAILED", latency=None),
    ]
    s = summarize(rows, ["exact"], total=3)
    v = s["variants"][0]
    assert (v["total"], v["passed"], v["failed"], v["errors"]) == (3, 1, 2, 1)
    assert v["pass_rate"] == pytest.approx(1 / 3) and v["score"] == pytest.approx(1 / 3)
    assert v["metrics"]["exact"] == {
        "mean": pytest.approx(1 / 3, abs=1e-6),
        "pass_rate": pytest.approx(1 / 3, abs=1e-6),
    }
    assert (v["tokens"], v["cost"], v["latency_p50"], v["latency_p95"]) == (30, 0.03, 2.0, 2.9)
    assert s["overall"]["total"] == 3 and s["scored"] == 3
    assert summarize([], ["exact"])["overall"]["pass_rate"] == 0.0


def test_variants_are_separate_rows_in_label_order() -> None:
    rows = [
        res("a", True, 1, variant="m=b", parameters={"m": "b"}),
        res("a", False, 0, variant="m=a", parameters={"m": "a"}),
        res("b", True, 1, variant="m=a", parameters={"m": "a"}),
    ]
    s = summarize(rows, ["exact"])
    assert [(v["label"], v["total"], v["passed"]) for v in s["variants"]] == [("m=a", 2, 1), ("m=b", 1, 1)]


def view_of(eval_id: str, rows: list[EvalResult]) -> dict[str, Any]:
    from llmflow.evals.runner import result_dict

    return {
        "id": eval_id,
        "flow": "classify",
        "status": "COMPLETED",
        "source": "d.jsonl",
        "summary": summarize(rows, ["exact"]),
        "results": [result_dict(r) for r in rows],
    }


def test_compare_reports_deltas_and_the_planted_regression() -> None:
    a = view_of("A", [res("r1", True, 1.0), res("r2", True, 1.0), res("r3", False, 0.0)])
    b = view_of("B", [res("r1", True, 1.0), res("r2", False, 0.0), res("r3", True, 1.0)])
    c = compare(a, b)
    assert [r["record_id"] for r in c["regressed"]] == ["r2"] and [r["record_id"] for r in c["improved"]] == [
        "r3"
    ]
    assert (
        c["variants"][0]["pass_rate"]["delta"] == 0.0 and c["variants"][0]["metrics"]["exact"]["delta"] == 0.0
    )
    worse = compare(a, view_of("C", [res("r1", False, 0.0), res("r2", True, 1.0), res("r3", False, 0.0)]))
    assert worse["variants"][0]["pass_rate"]["delta"] == pytest.approx(-1 / 3, abs=1e-6) and [
        r["record_id"] for r in worse["regressed"]
    ] == ["r1"]


def test_junit_round_trips_through_a_junit_parser(tmp_path: Any) -> None:
    from junitparser import Error, Failure, JUnitXml

    rows = [
        res("a", True, 1.0, variant="m=x", parameters={"m": "x"}),
        res("b", False, 0.0, variant="m=x", parameters={"m": "x"}),
        res("c", False, 0.0, status="FAILED", variant="m=y", parameters={"m": "y"}),
    ]
    p = tmp_path / "r.xml"
    p.write_text(junit(view_of("E", rows)))
    xml = JUnitXml.fromfile(str(p))
    suites = {s.name: s for s in xml}
    assert set(suites) == {"classify[m=x]", "classify[m=y]"}
    assert (
        suites["classify[m=x]"].tests,
        suites["classify[m=x]"].failures,
        suites["classify[m=x]"].errors,
    ) == (2, 1, 0)
    assert (suites["classify[m=y]"].tests, suites["classify[m=y]"].errors) == (1, 1)
    cases = {c.name: c for c in suites["classify[m=x]"]}
    assert (
        cases["a"].is_passed
        and isinstance(cases["b"].result[0], Failure)
        and "exact: differs" in cases["b"].result[0].message
    )
    assert isinstance(next(iter(suites["classify[m=y]"])).result[0], Error)
    assert (xml.tests, xml.failures, xml.errors) == (3, 1, 1)


def test_markdown_and_table_show_the_variant_rows_and_failed_records() -> None:
    v = view_of("E", [res("a", True, 1.0), res("b|c", False, 0.0)])
    md = markdown(v)
    assert (
        "**1/2 passed (50.0%)**" in md
        and "| (default) | 1/2 | 50.0% | 0.500 | 0.500 |" in md
        and "b\\|c" in md
    )
    t = table(v)
    assert "overall: 1/2 passed (50.0%)" in t and "run-b|c-" in t


def test_the_superoptix_shape_keeps_scenario_order_and_the_gate() -> None:
    rows = [res("s2", False, 0.3), res("s1", True, 1.0), res("s3", True, 0.9)]
    out = superoptix_result(
        view_of("E", rows), [{"record_id": n, "description": f"about {n}"} for n in ("s1", "s2", "s3")]
    )
    assert out["success"] is True and out["summary"] == {
        "total": 3,
        "passed": 2,
        "failed": 1,
        "pass_rate": "66.7%",
    }
    d = out["bdd_results"]["detailed_results"]
    assert (
        [x["scenario_name"] for x in d] == ["s1", "s2", "s3"]
        and d[1]["failure_reason"] == "exact: differs"
        and d[0]["description"] == "about s1"
    )
    assert set(d[0]) >= {
        "scenario_name",
        "description",
        "passed",
        "confidence_score",
        "failure_reason",
        "actual_output",
        "expected_output",
    }
    assert out["quality_gate"] == {
        "status": "GOOD",
        "pass_rate": "66.7%",
        "thresholds": {"EXCELLENT": ">= 80%", "GOOD": ">= 60%", "NEEDS WORK": "< 60%"},
    }
