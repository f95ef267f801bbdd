"""Execution statistics (SuperOptiX's get_execution_stats), computed from the store."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llmflow.engine.states import AttemptStatus, RunStatus

if TYPE_CHECKING:
    from llmflow.store.base import Store


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    v = sorted(values)
    k = (len(v) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def compute_stats(store: Store, flow: str | None = None, limit: int = 10_000) -> dict[str, Any]:
    runs = store.list_runs(flow=flow, limit=limit)
    durs = [r.ended_at - r.started_at for r in runs if r.ended_at and r.started_at]
    out: dict[str, Any] = {
        "flow": flow,
        "runs": {
            "total": len(runs),
            "completed": sum(1 for r in runs if r.status == RunStatus.COMPLETED),
            "failed": sum(1 for r in runs if r.status == RunStatus.FAILED),
            "canceled": sum(1 for r in runs if r.status == RunStatus.CANCELED),
            "running": sum(
                1 for r in runs if r.status in (RunStatus.RUNNING, RunStatus.QUEUED, RunStatus.PAUSED)
            ),
            "p50": percentile(durs, 0.5),
            "p95": percentile(durs, 0.95),
            "input_tokens": sum(r.tokens_in for r in runs),
            "output_tokens": sum(r.tokens_out for r in runs),
            "cost": sum(r.cost for r in runs),
        },
        "steps": {},
        "models": {},
    }
    steps: dict[str, list[float]] = {}
    failed: dict[str, int] = {}
    for r in runs[:2000]:
        for a in store.attempts(r.id):
            if a.ended_at and a.started_at:
                steps.setdefault(a.step_id, []).append(a.ended_at - a.started_at)
            if a.status == AttemptStatus.FAILED:
                failed[a.step_id] = failed.get(a.step_id, 0) + 1
            if a.model:
                m = out["models"].setdefault(
                    a.model, {"calls": 0, "input_tokens": 0, "output_tokens": 0, "cost": 0.0}
                )
                m["calls"] += 1
                m["input_tokens"] += a.tokens_in
                m["output_tokens"] += a.tokens_out
                m["cost"] += a.cost
    for sid, d in sorted(steps.items()):
        out["steps"][sid] = {
            "count": len(d),
            "p50": percentile(d, 0.5),
            "p95": percentile(d, 0.95),
            "failed": failed.get(sid, 0),
        }
    return out
