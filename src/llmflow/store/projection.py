"""How events update the projections. Shared by every backend so they agree exactly."""

from __future__ import annotations

from typing import Any

from llmflow.engine.events import RUN_END_EVENTS, Event, EventType
from llmflow.engine.states import AttemptStatus, RunStatus, StepStatus

# the enums' plain values: a driver binds a str subclass through its adapter look-up (~2.5 µs
# per parameter in sqlite3), and these are written on every commit
_RUN_STATUS = {
    EventType.RUN_QUEUED: RunStatus.QUEUED.value,
    EventType.RUN_STARTED: RunStatus.RUNNING.value,
    EventType.RUN_RESUMED: RunStatus.RUNNING.value,
    EventType.RUN_RECOVERED: RunStatus.RUNNING.value,
    EventType.STEP_RERUN: RunStatus.RUNNING.value,
    EventType.RUN_PAUSED: RunStatus.PAUSED.value,
    EventType.RUN_PARKED: RunStatus.WAITING.value,
    EventType.RUN_COMPLETED: RunStatus.COMPLETED.value,
    EventType.RUN_FAILED: RunStatus.FAILED.value,
    EventType.RUN_CANCELED: RunStatus.CANCELED.value,
}
_STEP_STATUS = {
    EventType.STEP_STARTED: StepStatus.RUNNING.value,
    EventType.STEP_COMPLETED: StepStatus.COMPLETED.value,
    EventType.STEP_FAILED: StepStatus.FAILED.value,
    EventType.STEP_SKIPPED: StepStatus.SKIPPED.value,
    EventType.STEP_CANCELED: StepStatus.CANCELED.value,
    EventType.STEP_STALE: StepStatus.STALE.value,
}
_ATTEMPT_STATUS = {
    EventType.ATTEMPT_STARTED: AttemptStatus.RUNNING.value,
    EventType.ATTEMPT_COMPLETED: AttemptStatus.COMPLETED.value,
    EventType.ATTEMPT_FAILED: AttemptStatus.FAILED.value,
    EventType.ATTEMPT_INTERRUPTED: AttemptStatus.INTERRUPTED.value,
    EventType.ATTEMPT_CANCELED: AttemptStatus.CANCELED.value,
}


class ProjectionOps:
    """What one event changes in the projections."""

    __slots__ = ("run", "run_add", "step", "attempt", "attempt_add", "artifact")

    def __init__(self, seq: int) -> None:
        self.run: dict[str, Any] = {"last_seq": seq}  # fields to set on the run
        self.run_add: dict[str, float] = _NO_ADD  # tokens_in/out, cost increments
        self.step: tuple[str, dict[str, Any]] | None = None  # (step_id, fields)
        # key, fields, insert? (None: update only)
        self.attempt: tuple[tuple[str, str, int], dict[str, Any], bool | None] | None = None
        self.attempt_add: tuple[tuple[str, str, int], dict[str, float]] | None = None
        self.artifact: dict[str, Any] | None = None


_NO_ADD: dict[str, float] = {}  # shared, never written: most events add no usage
_RUN_ENDS = RUN_END_EVENTS
_LEASE_ENDS = _RUN_ENDS | {EventType.RUN_PARKED}
_ATTEMPT_ERRORS = frozenset(
    {EventType.ATTEMPT_FAILED, EventType.ATTEMPT_INTERRUPTED, EventType.ATTEMPT_CANCELED}
)
# event type -> (0 run | 1 step | 2 attempt, the status it sets): one look-up per event
_STATUS: dict[str, tuple[int, str]] = {
    **{t: (0, s) for t, s in _RUN_STATUS.items()},
    **{t: (1, s) for t, s in _STEP_STATUS.items()},
    **{t: (2, s) for t, s in _ATTEMPT_STATUS.items()},
}
_INFO_KEYS = ("inputs", "prompt", "model", "rerun", "item", "matrix", "agent")
# the event types that change more than the run's last_seq
_PROJECTED = frozenset(
    {
        *_RUN_STATUS,
        *_STEP_STATUS,
        *_ATTEMPT_STATUS,
        EventType.LLM_GENERATING,
        EventType.LLM_DONE,
        EventType.ARTIFACT_CREATED,
    }
)


def project(e: Event) -> ProjectionOps:
    ops = ProjectionOps(e.seq)
    t = e.type
    if t not in _PROJECTED:
        return ops
    level, status = _STATUS.get(t, (-1, ""))
    if level == 0:
        run = ops.run
        run["status"] = status
        run["wake_at"] = e.payload.get("wake_at") if t == EventType.RUN_PARKED else None
        if t == EventType.RUN_STARTED:
            run["started_at_if_null"] = e.ts
        if t in _LEASE_ENDS:
            # nobody holds a finished or parked run: its lease ends with the event
            run["owner"] = None
            run["lease_expires_at"] = None
        if t in _RUN_ENDS:
            run["ended_at"] = e.ts
            if "outputs" in e.payload:
                run["outputs"] = e.payload["outputs"]
            if t == EventType.RUN_FAILED:
                run["error"] = e.payload.get("error") or e.message
        if t == EventType.STEP_RERUN:
            run["ended_at"] = None
            run["error"] = None
    if level == 1 and e.step_id is not None:
        f: dict[str, Any] = {"status": status}
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
        return ops
    if level == 2 and e.step_id is not None and e.attempt is not None:
        key = (e.step_id, e.unit or "", e.attempt)
        f = {"status": status}
        if t == EventType.ATTEMPT_STARTED:
            f["started_at"] = e.ts
            p = e.payload
            if p.get("model"):
                f["model"] = p["model"]
            f["info"] = {k: v for k, v in p.items() if k in _INFO_KEYS}
        else:
            f["ended_at"] = e.ts
        if t == EventType.ATTEMPT_COMPLETED:
            f["output"] = e.payload.get("output")
        if t in _ATTEMPT_ERRORS:
            f["error"] = e.payload.get("error") or e.message
        ops.attempt = (key, f, t == EventType.ATTEMPT_STARTED)
        return ops
    if t == EventType.LLM_GENERATING:
        if e.payload.get("model") and e.step_id is not None and e.attempt is not None:
            ops.attempt = (
                (e.step_id, e.unit or "", e.attempt),
                {"model": e.payload["model"]},
                None,
            )  # update only
    elif t == EventType.LLM_DONE:
        usage = e.payload.get("usage") or {}
        add = {
            "tokens_in": float(usage.get("input_tokens", 0) or 0),
            "tokens_out": float(usage.get("output_tokens", 0) or 0),
            "cost": float(e.payload.get("cost", 0) or 0),
        }
        ops.run_add = add
        if e.step_id is not None and e.attempt is not None:
            ops.attempt_add = ((e.step_id, e.unit or "", e.attempt), add)
    elif t == EventType.ARTIFACT_CREATED:
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
