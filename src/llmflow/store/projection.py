"""How events update the projections. Shared by every backend so they agree exactly."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from llmflow.engine.events import Event, EventType

_RUN_STATUS = {
    EventType.RUN_QUEUED: "QUEUED",
    EventType.RUN_STARTED: "RUNNING",
    EventType.RUN_RESUMED: "RUNNING",
    EventType.RUN_RECOVERED: "RUNNING",
    EventType.STEP_RERUN: "RUNNING",
    EventType.RUN_PAUSED: "PAUSED",
    EventType.RUN_PARKED: "WAITING",
    EventType.RUN_COMPLETED: "COMPLETED",
    EventType.RUN_FAILED: "FAILED",
    EventType.RUN_CANCELED: "CANCELED",
}
_STEP_STATUS = {
    EventType.STEP_STARTED: "RUNNING",
    EventType.STEP_COMPLETED: "COMPLETED",
    EventType.STEP_FAILED: "FAILED",
    EventType.STEP_SKIPPED: "SKIPPED",
    EventType.STEP_CANCELED: "CANCELED",
    EventType.STEP_STALE: "STALE",
}
_ATTEMPT_STATUS = {
    EventType.ATTEMPT_STARTED: "RUNNING",
    EventType.ATTEMPT_COMPLETED: "COMPLETED",
    EventType.ATTEMPT_FAILED: "FAILED",
    EventType.ATTEMPT_INTERRUPTED: "INTERRUPTED",
    EventType.ATTEMPT_CANCELED: "CANCELED",
}


@dataclass
class ProjectionOps:
    run: dict[str, Any] = field(default_factory=dict)  # fields to set on the run
    run_add: dict[str, float] = field(default_factory=dict)  # tokens_in/out, cost increments
    step: tuple[str, dict[str, Any]] | None = None  # (step_id, fields)
    attempt: tuple[tuple[str, str, int], dict[str, Any], bool | None] | None = (
        None  # key, fields, insert? (None: update only)
    )
    attempt_add: tuple[tuple[str, str, int], dict[str, float]] | None = None
    artifact: dict[str, Any] | None = None


def project(e: Event) -> ProjectionOps:
    ops = ProjectionOps()
    t = e.type
    ops.run["last_seq"] = e.seq
    if t in _RUN_STATUS:
        ops.run["status"] = _RUN_STATUS[t]  # type: ignore[index]
        ops.run["wake_at"] = e.payload.get("wake_at") if t == EventType.RUN_PARKED else None
        if t == EventType.RUN_STARTED:
            ops.run["started_at_if_null"] = e.ts
        if t in (EventType.RUN_COMPLETED, EventType.RUN_FAILED, EventType.RUN_CANCELED, EventType.RUN_PARKED):
            # nobody holds a finished or parked run: its lease ends with the event
            ops.run["owner"] = None
            ops.run["lease_expires_at"] = None
        if t in (EventType.RUN_COMPLETED, EventType.RUN_FAILED, EventType.RUN_CANCELED):
            ops.run["ended_at"] = e.ts
            if "outputs" in e.payload:
                ops.run["outputs"] = e.payload["outputs"]
            if t == EventType.RUN_FAILED:
                ops.run["error"] = e.payload.get("error") or e.message
        if t == EventType.STEP_RERUN:
            ops.run["ended_at"] = None
            ops.run["error"] = None
    if t in _STEP_STATUS and e.step_id is not None:
        f: dict[str, Any] = {"status": _STEP_STATUS[t]}  # type: ignore[index]
        if t == EventType.STEP_STARTED:
            f["started_at"] = e.ts
            f["ended_at"] = None
            f["error"] = None
        elif t != EventType.STEP_STALE:
            f["ended_at"] = e.ts
        if t == EventType.STEP_COMPLETED:
            f["output"] = e.payload.get("output")
        if t == EventType.STEP_FAILED:
            f["error"] = e.payload.get("error") or e.message
        ops.step = (e.step_id, f)
    if t in _ATTEMPT_STATUS and e.step_id is not None and e.attempt is not None:
        key = (e.step_id, e.unit or "", e.attempt)
        f = {"status": _ATTEMPT_STATUS[t]}  # type: ignore[index]
        if t == EventType.ATTEMPT_STARTED:
            f["started_at"] = e.ts
            if e.payload.get("model"):
                f["model"] = e.payload["model"]
            f["info"] = {
                k: v
                for k, v in e.payload.items()
                if k in ("inputs", "prompt", "model", "rerun", "item", "matrix", "agent")
            }
        else:
            f["ended_at"] = e.ts
        if t == EventType.ATTEMPT_COMPLETED:
            f["output"] = e.payload.get("output")
        if t in (EventType.ATTEMPT_FAILED, EventType.ATTEMPT_INTERRUPTED, EventType.ATTEMPT_CANCELED):
            f["error"] = e.payload.get("error") or e.message
        ops.attempt = (key, f, t == EventType.ATTEMPT_STARTED)
    if (
        t == EventType.LLM_GENERATING
        and e.payload.get("model")
        and e.step_id is not None
        and e.attempt is not None
        and ops.attempt is None
    ):
        ops.attempt = (
            (e.step_id, e.unit or "", e.attempt),
            {"model": e.payload["model"]},
            None,
        )  # update only
    if t == EventType.LLM_DONE:
        usage = e.payload.get("usage") or {}
        add = {
            "tokens_in": float(usage.get("input_tokens", 0) or 0),
            "tokens_out": float(usage.get("output_tokens", 0) or 0),
            "cost": float(e.payload.get("cost", 0) or 0),
        }
        ops.run_add = add
        if e.step_id is not None and e.attempt is not None:
            ops.attempt_add = ((e.step_id, e.unit or "", e.attempt), add)
    if t == EventType.ARTIFACT_CREATED:
        p = e.payload
        ops.artifact = {
            "path": p.get("path", ""),
            "size": int(p.get("size", 0) or 0),
            "sha256": p.get("sha256", ""),
            "mime": p.get("mime"),
            "step_id": e.step_id,
            "attempt": e.attempt,
            "created_at": e.ts,
        }
    return ops
