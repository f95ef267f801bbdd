"""A run as the CLI and the API show it: status, steps with their attempts, outputs, usage."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llmflow.engine.state import RunState
    from llmflow.runtime.service import Runtime


def run_view(rt: Runtime, run_id: str, state: RunState | None = None) -> dict[str, Any]:
    """``state``: the run's folded state when the caller has it (the runner's, once it
    returned), so the log is not read and folded again; the log is then read only for a flow
    with tools (their calls are shown per step)."""
    rec = rt.get(run_id)
    events = None
    if state is None or state.run_id != run_id or not state.finished:  # a finished state is the log folded
        events = rt.store.events(run_id)
        state = rt.state_of(rec, events=events)
    st = state
    attempts = rt.store.attempts(run_id)
    rows = rt.store.step_rows(run_id)
    from llmflow.tools.view import tool_calls_by_step

    if events is None and rt.run_flows.uses_tools(st.flow):
        events = rt.store.events(run_id)
    calls = tool_calls_by_step(events) if events else {}
    by_step: dict[str, list[Any]] = {}
    for a in attempts:
        by_step.setdefault(a.step_id, []).append(a)
    steps = []
    for nid, n in st.nodes.items():
        r = rows.get(nid, {})
        atts = by_step.get(nid, [])
        steps.append(
            {
                "id": nid,
                "kind": n.spec.kind,
                "status": str(n.status),
                "output": n.output,
                "error": n.error,
                "reason": n.reason,
                "started_at": r.get("started_at"),
                "ended_at": r.get("ended_at"),
                "duration": (r["ended_at"] - r["started_at"])
                if r.get("ended_at") and r.get("started_at")
                else None,
                "model": next((a.model for a in reversed(atts) if a.model), None),
                "tokens_in": sum(a.tokens_in for a in atts),
                "tokens_out": sum(a.tokens_out for a in atts),
                "tool_calls": calls.get(nid, []),
                "attempts": [
                    {
                        "unit": a.unit,
                        "attempt": a.attempt,
                        "status": a.status,
                        "output": a.output,
                        "error": a.error,
                        "started_at": a.started_at,
                        "ended_at": a.ended_at,
                        "duration": (a.ended_at - a.started_at) if a.ended_at and a.started_at else None,
                        "model": a.model,
                        "tokens_in": a.tokens_in,
                        "tokens_out": a.tokens_out,
                        "cost": a.cost,
                        "info": a.info,
                    }
                    for a in atts
                ],
            }
        )
    waiting = [
        {
            "request_id": rid,
            "step_id": where[0],
            "unit": where[1] or None,
            **{
                k: v
                for k, v in (st.human_requests.get(rid) or {}).items()
                if k in ("prompt", "input", "options", "default", "timeout_at")
            },
        }
        for rid, where in st.open_requests.items()
    ]
    return {
        "id": rec.id,
        "flow": rec.flow_name,
        "status": rec.status,
        "created_at": rec.created_at,
        "started_at": rec.started_at,
        "ended_at": rec.ended_at,
        "duration": (rec.ended_at - rec.started_at) if rec.ended_at and rec.started_at else None,
        "inputs": rec.inputs,
        "outputs": rec.outputs,
        "error": rec.error,
        "usage": {"input_tokens": rec.tokens_in, "output_tokens": rec.tokens_out, "cost": rec.cost},
        "parent_run_id": rec.parent_run_id,
        "batch_id": rec.batch_id,
        "project_id": rec.project_id,
        "options": rec.options,
        "workspace": str(rt.workspace_of(rec)),
        "steps": steps,
        "artifacts": [a.__dict__ for a in rt.store.artifacts(run_id)],
        "waiting_for": waiting,
    }
