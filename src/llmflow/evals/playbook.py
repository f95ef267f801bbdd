"""SuperOptiX's evaluation report for playbooks (``super agent evaluate``), from an
evaluation view: ``success``, ``summary {total, passed, failed, pass_rate: "66.7%"}``,
``bdd_results.detailed_results`` (per scenario: ``scenario_name, description, passed,
confidence_score, failure_reason, actual_output, expected_output``), the model analysis,
recommendations and the quality gate.

Quality gate (SuperOptiX's CLI): pass rate >= 80% is EXCELLENT, >= 60% GOOD, anything
lower NEEDS WORK. A scenario passes when its confidence (the ``bdd`` metric: SuperOptiX's
weighted overlap score) is at least 0.6.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from llmflow.evals.summary import fmt_rate

GATES = ((0.8, "EXCELLENT"), (0.6, "GOOD"), (0.0, "NEEDS WORK"))
THRESHOLDS = {"EXCELLENT": ">= 80%", "GOOD": ">= 60%", "NEEDS WORK": "< 60%"}
NO_SCENARIOS = "No BDD specifications defined in feature_specifications"


def read_playbook(path: str | Path) -> dict[str, Any] | None:
    """The playbook document at ``path``, or None when it is not a playbook."""
    from llmflow.model.playbook import is_playbook

    p = Path(path)
    if p.is_dir() and not (p / "flow.yaml").exists():
        books = sorted(p.glob("*_playbook.yaml"))  # as the loader reads an agent's directory
        p = books[0] if len(books) == 1 else p
    if not p.is_file() or p.suffix not in (".yaml", ".yml"):
        return None
    try:
        doc = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    return doc if is_playbook(doc) else None


def find_agent_playbook(name: str, root: Path | None = None) -> Path | None:
    """``super agent evaluate NAME``: NAME as a path, else ``<NAME>_playbook.yaml`` anywhere
    under the project (SuperOptiX keeps it in ``agents/<NAME>/playbook/``)."""
    p = Path(name)
    if p.exists():
        return p
    root = root or Path.cwd()
    for pattern in (
        f"**/agents/{name}/playbook/{name}_playbook.yaml",
        f"**/{name}_playbook.yaml",
        f"**/{name}_playbook.yml",
    ):
        found = sorted(root.glob(pattern))
        if found:
            return found[0]
    return None


def gate(pass_rate: float) -> str:
    return next(name for floor, name in GATES if pass_rate >= floor - 1e-12)


def no_scenarios() -> dict[str, Any]:
    return {
        "success": False,
        "message": NO_SCENARIOS,
        "summary": {"total": 0, "passed": 0, "failed": 0, "pass_rate": "0.00%"},
        "bdd_results": {"detailed_results": []},
        "model_analysis": {},
        "recommendations": [
            "Add BDD scenarios to your agent playbook (spec.feature_specifications.scenarios) for proper testing"
        ],
    }


def superoptix_result(view: dict[str, Any], scenarios: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    by_name = {str(s.get("record_id")): s for s in scenarios or []}
    order = {name: i for i, name in enumerate(by_name)}
    detailed = []
    for r in sorted(
        view["results"], key=lambda r: (order.get(r["record_id"], len(order)), r["record_id"], r["variant"])
    ):
        sc = by_name.get(r["record_id"], {})
        conf = r["scores"].get("bdd", {}).get("score", r["score"])
        item = {
            "scenario_name": r["record_id"],
            "description": sc.get("description", ""),
            "passed": r["passed"],
            "confidence_score": round(conf, 4),
            "failure_reason": None if r["passed"] else r["reason"],
            "actual_output": r["output"],
            "expected_output": r["expected"],
            "run_id": r["run_id"],
        }
        if len(view["summary"]["variants"]) > 1:
            item["variant"] = r["variant"]
        detailed.append(item)
    total = len(detailed)
    passed = sum(1 for d in detailed if d["passed"])
    rate = passed / total if total else 0.0
    avg = sum(d["confidence_score"] for d in detailed) / total if total else 0.0
    status = gate(rate)
    recs = []
    if passed < total:
        recs.append(
            f"{total - passed} scenario(s) failed: open their runs (llmflow runs show RUN_ID) to see why"
        )
    if rate < 0.6:
        recs.append(
            "Improve the instructions or try a stronger model (llmflow eval --variants model=A,B compares them)"
        )
    if rate >= 0.8:
        recs.append("Ready: consider optimizing (llmflow optimize) or adding harder scenarios")
    return {
        "success": True,
        "evaluation_id": view["id"],
        "summary": {"total": total, "passed": passed, "failed": total - passed, "pass_rate": fmt_rate(rate)},
        "bdd_results": {
            "detailed_results": detailed,
            "total_scenarios": total,
            "scenarios_passed": passed,
            "scenarios_failed": total - passed,
            "pass_rate": fmt_rate(rate),
            "bdd_score": round(rate, 4),
        },
        "model_analysis": {
            "capability_score": round(avg, 4),
            "performance_category": "excellent"
            if avg >= 0.8
            else "good"
            if avg >= 0.6
            else "needs_improvement",
        },
        "recommendations": recs,
        "quality_gate": {"status": status, "pass_rate": fmt_rate(rate), "thresholds": dict(THRESHOLDS)},
    }


def superoptix_table(res: dict[str, Any]) -> str:
    if not res["success"]:
        return f"{res['message']}\n" + "".join(f"hint: {r}\n" for r in res["recommendations"])
    lines = []
    for d in res["bdd_results"]["detailed_results"]:
        mark = "PASS" if d["passed"] else "FAIL"
        extra = f": {d['failure_reason']}" if not d["passed"] else ""
        lines.append(f"{mark}  {d['scenario_name']}  (confidence {d['confidence_score']:.2f}){extra}")
    s = res["summary"]
    g = res["quality_gate"]
    lines.append(f"{s['passed']}/{s['total']} scenarios passed ({s['pass_rate']})")
    lines.append(
        f"quality gate: {g['status']} (EXCELLENT {THRESHOLDS['EXCELLENT']}, GOOD {THRESHOLDS['GOOD']}, NEEDS WORK {THRESHOLDS['NEEDS WORK']})"
    )
    lines.append(f"evaluation {res['evaluation_id']}: llmflow evals show {res['evaluation_id']}")
    return "\n".join(lines) + "\n"
