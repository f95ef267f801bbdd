"""Pass-rate arithmetic: per-variant aggregates of an evaluation, and the comparison of two.

- A record passes when its run completed and every metric passed; a run that failed is a
  failed record (counted in ``errors`` too). ``pass_rate = passed / total`` over scored
  records (0.0 when there are none).
- ``score`` is the mean over records of the record's mean metric score; per metric,
  ``mean`` and ``pass_rate`` likewise.
- Latency is the run's duration; p50 / p95 interpolate linearly between the nearest ranks
  (numpy's default), over the records whose run started and ended.
- Comparing A with B matches records by (record id, variant); a record *regressed* when it
  passed in A and fails in B, or its score dropped.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from llmflow.engine.states import RunStatus
from llmflow.store.evals import EvalResult

EPS = 1e-9


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (0-100) with linear interpolation; None for no values."""
    if not values:
        return None
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def fmt_rate(rate: float) -> str:
    """SuperOptiX's spelling: one decimal and a percent sign (2 of 3 -> "66.7%")."""
    return f"{rate * 100:.1f}%"


def _group(results: Iterable[EvalResult]) -> dict[str, list[EvalResult]]:
    out: dict[str, list[EvalResult]] = {}
    for r in results:
        out.setdefault(r.variant, []).append(r)
    return out


def aggregate(rows: list[EvalResult], metric_names: list[str]) -> dict[str, Any]:
    n = len(rows)
    passed = sum(1 for r in rows if r.passed)
    lat = [r.latency for r in rows if r.latency is not None]
    metrics: dict[str, Any] = {}
    for name in metric_names:
        got = [r.scores[name] for r in rows if name in r.scores]
        metrics[name] = {
            "mean": round(sum(s["score"] for s in got) / len(got), 6) if got else 0.0,
            "pass_rate": round(sum(1 for s in got if s["passed"]) / len(got), 6) if got else 0.0,
        }
    p50, p95 = percentile(lat, 50), percentile(lat, 95)
    return {
        "total": n,
        "passed": passed,
        "failed": n - passed,
        "errors": sum(1 for r in rows if r.status != RunStatus.COMPLETED),
        "pass_rate": round(passed / n, 6) if n else 0.0,
        "score": round(sum(r.score for r in rows) / n, 6) if n else 0.0,
        "metrics": metrics,
        "tokens": sum(r.tokens for r in rows),
        "cost": round(sum(r.cost for r in rows), 6),
        "latency_p50": round(p50, 6) if p50 is not None else None,
        "latency_p95": round(p95, 6) if p95 is not None else None,
    }


def summarize(
    results: list[EvalResult], metric_names: list[str], *, total: int | None = None
) -> dict[str, Any]:
    """Overall and per-variant aggregates (variants in label order)."""
    variants = []
    for label, rows in sorted(_group(results).items()):
        variants.append({"label": label, "parameters": rows[0].parameters, **aggregate(rows, metric_names)})
    overall = aggregate(results, metric_names)
    return {
        "total": total if total is not None else len(results),
        "scored": len(results),
        "overall": overall,
        "variants": variants,
        "metrics": list(metric_names),
    }


def variant_name(v: dict[str, Any]) -> str:
    """A variant as people read it: its parameter values (labels hash long values)."""
    params = v.get("parameters") or {}
    if params:
        return ", ".join(f"{k}={x}" for k, x in params.items())
    return v.get("label") or "(default)"


def compare(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Two evaluation views (:func:`llmflow.evals.runner.evaluation_view`): per-variant and
    per-metric deltas (B - A) and the records that regressed or improved."""
    va = {v["label"]: v for v in a["summary"]["variants"]}
    vb = {v["label"]: v for v in b["summary"]["variants"]}
    pairs = [(k, k) for k in va if k in vb]
    if not pairs and len(va) == 1 and len(vb) == 1:  # one variant each: compare them
        pairs = [(next(iter(va)), next(iter(vb)))]
    variants = []
    for ka, kb in pairs:
        x, y = va[ka], vb[kb]
        metrics = {}
        for name in dict.fromkeys([*x["metrics"], *y["metrics"]]):
            mx, my = x["metrics"].get(name), y["metrics"].get(name)
            if mx and my:
                metrics[name] = {
                    "a": mx["mean"],
                    "b": my["mean"],
                    "delta": round(my["mean"] - mx["mean"], 6),
                    "pass_rate_delta": round(my["pass_rate"] - mx["pass_rate"], 6),
                }
        variants.append(
            {
                "label": kb,
                "name": variant_name(y),
                "pass_rate": {
                    "a": x["pass_rate"],
                    "b": y["pass_rate"],
                    "delta": round(y["pass_rate"] - x["pass_rate"], 6),
                },
                "score": {"a": x["score"], "b": y["score"], "delta": round(y["score"] - x["score"], 6)},
                "metrics": metrics,
                "cost": {"a": x["cost"], "b": y["cost"]},
                "latency_p50": {"a": x["latency_p50"], "b": y["latency_p50"]},
            }
        )
    label_map = dict(pairs)
    ra = {(r["record_id"], r["variant"]): r for r in a["results"]}
    regressed, improved = [], []
    for r in b["results"]:
        inv = {v: k for k, v in label_map.items()}
        old = ra.get((r["record_id"], inv.get(r["variant"], r["variant"])))
        if old is None:
            continue
        row = {
            "record_id": r["record_id"],
            "variant": r["variant"],
            "a": {"passed": old["passed"], "score": old["score"], "run_id": old["run_id"]},
            "b": {"passed": r["passed"], "score": r["score"], "run_id": r["run_id"], "reason": r["reason"]},
        }
        if (old["passed"] and not r["passed"]) or r["score"] < old["score"] - EPS:
            regressed.append(row)
        elif (r["passed"] and not old["passed"]) or r["score"] > old["score"] + EPS:
            improved.append(row)
    return {"a": a["id"], "b": b["id"], "variants": variants, "regressed": regressed, "improved": improved}
