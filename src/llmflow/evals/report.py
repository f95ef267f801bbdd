"""Reports of an evaluation view (:func:`llmflow.evals.runner.evaluation_view`): a terminal
table, JSON, JUnit XML (one ``<testsuite>`` per variant, one ``<testcase>`` per record; a
failed metric is a ``<failure>``, a failed run an ``<error>``) and Markdown (CI comments)."""

from __future__ import annotations

import io
import json
from typing import Any
from xml.etree import ElementTree as ET

from llmflow.engine.states import RunStatus
from llmflow.evals.summary import fmt_rate, variant_name

FORMATS = ("table", "json", "junit", "markdown")


def _secs(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}s"


def _num(v: float | None, nd: int = 3) -> str:
    return "-" if v is None else f"{v:.{nd}f}"


def variant_rows(view: dict[str, Any]) -> list[list[str]]:
    metrics = view["summary"]["metrics"]
    rows = []
    for v in view["summary"]["variants"]:
        rows.append(
            [
                variant_name(v),
                f"{v['passed']}/{v['total']}",
                fmt_rate(v["pass_rate"]),
                _num(v["score"]),
                *[_num(v["metrics"][m]["mean"]) for m in metrics],
                str(v["tokens"]),
                f"${v['cost']:.4f}",
                _secs(v["latency_p50"]),
                _secs(v["latency_p95"]),
            ]
        )
    return rows


def headers(view: dict[str, Any]) -> list[str]:
    return [
        "variant",
        "passed",
        "pass rate",
        "score",
        *view["summary"]["metrics"],
        "tokens",
        "cost",
        "p50",
        "p95",
    ]


def table(view: dict[str, Any], *, width: int = 120, failures: int = 10) -> str:
    from rich.console import Console
    from rich.table import Table

    buf = io.StringIO()
    console = Console(
        file=buf, width=width, force_terminal=False, color_system=None, markup=False, highlight=False
    )
    ov = view["summary"]["overall"]
    console.print(
        f"evaluation {view['id']}  flow {view['flow']}  status {view['status']}  data {view.get('source') or '-'}"
    )
    t = Table(show_edge=False, pad_edge=False)
    for i, h in enumerate(headers(view)):
        t.add_column(h, justify="left" if i == 0 else "right", overflow="fold")
    for r in variant_rows(view):
        t.add_row(*r)
    console.print(t)
    console.print(
        f"overall: {ov['passed']}/{ov['total']} passed ({fmt_rate(ov['pass_rate'])}), mean score {ov['score']:.3f}, {ov['errors']} run error(s)"
    )
    bad = [r for r in view["results"] if not r["passed"]]
    if bad:
        console.print(
            f"failed records ({len(bad)}{', first ' + str(failures) if len(bad) > failures else ''}):"
        )
        for r in bad[:failures]:
            v = f" [{variant_name(r)}]" if r["variant"] else ""
            console.print(f"  {r['record_id']}{v}: {r['reason']}  (run {r['run_id']})")
    return buf.getvalue()


def to_json(view: dict[str, Any]) -> str:
    return json.dumps(view, indent=2, default=str, ensure_ascii=False)


def junit(view: dict[str, Any]) -> str:
    """JUnit XML: suites per variant; ``tests``, ``failures`` and ``errors`` counted per suite
    and in total; each case's properties carry the scores and the run id."""
    root = ET.Element("testsuites", name=f"llmflow eval {view['id']}")
    totals = {"tests": 0, "failures": 0, "errors": 0}
    by_variant: dict[str, list[dict[str, Any]]] = {}
    for r in view["results"]:
        by_variant.setdefault(r["variant"], []).append(r)
    for v in view["summary"]["variants"]:
        rows = by_variant.get(v["label"], [])
        name = view["flow"] + (f"[{variant_name(v)}]" if v["label"] else "")
        suite = ET.SubElement(root, "testsuite", name=name)
        counts = {"tests": 0, "failures": 0, "errors": 0}
        time_total = 0.0
        for r in rows:
            counts["tests"] += 1
            case = ET.SubElement(
                suite, "testcase", name=str(r["record_id"]), classname=name, time=f"{r['latency'] or 0:.3f}"
            )
            time_total += r["latency"] or 0
            props = ET.SubElement(case, "properties")
            ET.SubElement(props, "property", name="run_id", value=r["run_id"])
            ET.SubElement(props, "property", name="score", value=f"{r['score']:.6f}")
            for m, s in r["scores"].items():
                ET.SubElement(props, "property", name=f"score.{m}", value=f"{s['score']:.6f}")
            if r["status"] != RunStatus.COMPLETED:
                counts["errors"] += 1
                ET.SubElement(
                    case, "error", message=str(r["reason"] or r["status"]), type=r["status"]
                ).text = str(r["reason"] or "")
            elif not r["passed"]:
                counts["failures"] += 1
                failed = {m: s for m, s in r["scores"].items() if not s["passed"]}
                msg = "; ".join(f"{m}: {s['reason']}" for m, s in failed.items())
                ET.SubElement(
                    case, "failure", message=msg, type=",".join(failed) or "failed"
                ).text = f"output: {json.dumps(r['output'], default=str, ensure_ascii=False)}\nexpected: {json.dumps(r['expected'], default=str, ensure_ascii=False)}\n{msg}"
        suite.set("tests", str(counts["tests"]))
        suite.set("failures", str(counts["failures"]))
        suite.set("errors", str(counts["errors"]))
        suite.set("skipped", "0")
        suite.set("time", f"{time_total:.3f}")
        for k in totals:
            totals[k] += counts[k]
    for k, n in totals.items():
        root.set(k, str(n))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _md_cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown(view: dict[str, Any], *, failures: int = 20) -> str:
    ov = view["summary"]["overall"]
    out = [
        f"### Evaluation `{view['id']}` of `{view['flow']}`",
        "",
        f"**{ov['passed']}/{ov['total']} passed ({fmt_rate(ov['pass_rate'])})**, mean score {ov['score']:.3f}",
        "",
    ]
    hs = headers(view)
    out.append("| " + " | ".join(_md_cell(h) for h in hs) + " |")
    out.append("|" + "|".join([" --- "] + [" ---: "] * (len(hs) - 1)) + "|")
    for r in variant_rows(view):
        out.append("| " + " | ".join(_md_cell(c) for c in r) + " |")
    bad = [r for r in view["results"] if not r["passed"]]
    if bad:
        out += [
            "",
            f"<details><summary>{len(bad)} failed record(s)</summary>",
            "",
            "| record | variant | reason | run |",
            "| --- | --- | --- | --- |",
        ]
        for r in bad[:failures]:
            out.append(
                f"| {_md_cell(r['record_id'])} | {_md_cell(variant_name(r) if r['variant'] else '')} | {_md_cell(r['reason'])} | `{r['run_id']}` |"
            )
        out += ["", "</details>"]
    return "\n".join(out) + "\n"


def render(view: dict[str, Any], fmt: str) -> str:
    if fmt == "json":
        return to_json(view) + "\n"
    if fmt == "junit":
        return junit(view)
    if fmt == "markdown":
        return markdown(view)
    return table(view)


def comparison_table(c: dict[str, Any]) -> str:
    lines = [f"compare {c['a']} (A) -> {c['b']} (B)"]
    for v in c["variants"]:
        pr, sc = v["pass_rate"], v["score"]
        lines.append(
            f"  {v['name']}: pass rate {fmt_rate(pr['a'])} -> {fmt_rate(pr['b'])} ({pr['delta'] * 100:+.1f} pts), score {sc['a']:.3f} -> {sc['b']:.3f} ({sc['delta']:+.3f})"
        )
        for m, d in v["metrics"].items():
            lines.append(f"    {m}: {d['a']:.3f} -> {d['b']:.3f} ({d['delta']:+.3f})")
    if not c["variants"]:
        lines.append("  no variants in common")
    lines.append(f"regressed: {len(c['regressed'])}" + (":" if c["regressed"] else ""))
    for r in c["regressed"]:
        v = f" [{r['variant']}]" if r["variant"] else ""
        lines.append(
            f"  {r['record_id']}{v}: {'pass' if r['a']['passed'] else 'fail'} {r['a']['score']:.3f} -> {'pass' if r['b']['passed'] else 'fail'} {r['b']['score']:.3f}: {r['b']['reason'] or ''} (runs {r['a']['run_id']} -> {r['b']['run_id']})"
        )
    lines.append(f"improved: {len(c['improved'])}")
    return "\n".join(lines) + "\n"
