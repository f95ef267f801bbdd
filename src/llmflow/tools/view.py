"""Tool calls as the CLI (``runs show``) and the API show them: one row per call, its latest
state across the attempts of its step (a call replayed after a resume keeps its first
result)."""

from __future__ import annotations

from typing import Any

from llmflow.engine.events import Event
from llmflow.engine.events import EventType as E

_TYPES = (E.TOOL_CALL_STARTED, E.TOOL_CALL_COMPLETED, E.TOOL_CALL_FAILED)


def tool_calls_by_step(events: list[Event]) -> dict[str, list[dict[str, Any]]]:
    by_step: dict[str, dict[str, dict[str, Any]]] = {}
    for e in events:
        if e.type not in _TYPES or not e.step_id:
            continue
        p = e.payload
        cid = str(p.get("call_id"))
        calls = by_step.setdefault(e.step_id, {})
        key = f"{e.unit or ''}|{p.get('loop') or ''}|{cid}"  # call ids repeat across units and a conductor's turns
        row = calls.setdefault(
            key,
            {
                "call_id": cid,
                "loop": p.get("loop"),
                "name": p.get("name"),
                "arguments": p.get("arguments"),
                "unit": e.unit,
                "attempt": e.attempt,
                "status": "RUNNING",
                "started_at": e.ts,
                "tries": 0,
            },
        )
        if e.type == E.TOOL_CALL_STARTED:
            row.update(turn=p.get("turn"), attempt=e.attempt)
            if row["status"] not in ("COMPLETED", "FAILED"):
                row["status"] = "RUNNING"
        elif e.type == E.TOOL_CALL_COMPLETED:
            row.update(
                status="COMPLETED",
                result=p.get("result"),
                error=None,
                duration=p.get("duration"),
                ended_at=e.ts,
            )
            row["tries"] += 1
            if p.get("confirmed") is not None:
                row["confirmed"] = p.get("confirmed")
        else:
            row["tries"] += 1
            row.update(error=p.get("error"), duration=p.get("duration"), ended_at=e.ts)
            if not p.get("retrying"):
                row["status"] = "FAILED"
            if p.get("confirmed") is not None:
                row["confirmed"] = p.get("confirmed")
    return {sid: list(calls.values()) for sid, calls in by_step.items()}
