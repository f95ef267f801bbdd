"""Typed events: the durable record of everything that happens in a run.

The vocabulary matches Agent Runner's timelines (RUN_CREATED ... RUN_COMPLETED, with the
same one-line messages such as "Loading model: X") so their dashboards and greps keep
working, plus attempt-level and token-chunk events.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llmflow.engine.payloads import Payload


class EventType(StrEnum):
    RUN_CREATED = "RUN_CREATED"
    RUN_QUEUED = "RUN_QUEUED"
    RUN_STARTED = "RUN_STARTED"
    RUN_RECOVERED = "RUN_RECOVERED"  # a process picked up a run whose runner died
    WORKFLOW_STARTED = "WORKFLOW_STARTED"
    STEP_STARTED = "STEP_STARTED"
    ATTEMPT_STARTED = "ATTEMPT_STARTED"
    ATTEMPT_COMPLETED = "ATTEMPT_COMPLETED"
    ATTEMPT_FAILED = "ATTEMPT_FAILED"
    ATTEMPT_INTERRUPTED = "ATTEMPT_INTERRUPTED"  # its process died; it will be retried
    ATTEMPT_CANCELED = "ATTEMPT_CANCELED"
    LLM_LOADING_MODEL = "LLM_LOADING_MODEL"
    LLM_GENERATING = "LLM_GENERATING"
    LLM_HEARTBEAT = "LLM_HEARTBEAT"
    LLM_TOKENS = "LLM_TOKENS"  # coalesced token chunks
    LLM_DONE = "LLM_DONE"
    LLM_ERROR = "LLM_ERROR"
    SHELL_EXECUTING = "SHELL_EXECUTING"
    SHELL_OUTPUT = "SHELL_OUTPUT"
    ARTIFACT_CREATED = "ARTIFACT_CREATED"
    STEP_RETRYING = "STEP_RETRYING"
    STEP_COMPLETED = "STEP_COMPLETED"
    STEP_FAILED = "STEP_FAILED"
    STEP_SKIPPED = "STEP_SKIPPED"
    STEP_CANCELED = "STEP_CANCELED"
    STEP_STALE = "STEP_STALE"
    STEP_RERUN = "STEP_RERUN"  # a re-run in place was requested for this step
    STEP_CACHE_HIT = "STEP_CACHE_HIT"  # a `cache: true` step reused a stored output
    LOOP_ITERATION = "LOOP_ITERATION"
    CONDUCTOR_TURN = "CONDUCTOR_TURN"
    CHILD_RUN_STARTED = "CHILD_RUN_STARTED"
    TOOL_CALL_STARTED = "TOOL_CALL_STARTED"  # payload: call_id, name, arguments
    TOOL_CALL_COMPLETED = "TOOL_CALL_COMPLETED"  # payload: call_id, name, arguments, result, duration
    TOOL_CALL_FAILED = "TOOL_CALL_FAILED"  # payload: call_id, name, arguments, error, duration
    HUMAN_INPUT_REQUESTED = "HUMAN_INPUT_REQUESTED"
    HUMAN_INPUT_RECEIVED = "HUMAN_INPUT_RECEIVED"
    RUN_PAUSED = "RUN_PAUSED"
    RUN_RESUMED = "RUN_RESUMED"
    RUN_PARKED = "RUN_PARKED"  # waits for a human answer; no process holds it (status WAITING)
    RUN_CANCEL_REQUESTED = "RUN_CANCEL_REQUESTED"
    RUN_CANCELED = "RUN_CANCELED"
    DIRECTIVE = "DIRECTIVE"
    WORKFLOW_COMPLETED = "WORKFLOW_COMPLETED"
    WORKFLOW_FAILED = "WORKFLOW_FAILED"
    RUN_COMPLETED = "RUN_COMPLETED"
    RUN_FAILED = "RUN_FAILED"


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event before the store gives it a sequence number and a timestamp.

    ``payload`` is a typed payload (:mod:`llmflow.engine.payloads`) when the engine made
    the event, or a plain dict (executors' ``ctx.event(...)``, older callers); the store
    writes both the same way."""

    type: str
    message: str = ""
    step_id: str | None = None
    unit: str | None = None  # for_each item / matrix variant / broadcast agent / loop iteration
    attempt: int | None = None
    payload: dict[str, Any] | Payload = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Event:
    run_id: str
    seq: int  # per-run, contiguous from 1, UNIQUE(run_id, seq)
    type: str
    ts: float  # unix seconds
    message: str = ""
    step_id: str | None = None
    unit: str | None = None
    attempt: int | None = None
    payload: dict[str, Any] = field(default_factory=dict)  # the wire form, always a dict
    id: int | None = None  # store-wide cursor (Agent Runner's event id)
    schema_version: int = field(default=1, compare=False)  # of the payload's schema

    @property
    def attempt_id(self) -> str | None:
        if self.step_id is None or self.attempt is None:
            return None
        return f"{self.step_id}{'[' + self.unit + ']' if self.unit else ''}#{self.attempt}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "run_id": self.run_id,
            "seq": self.seq,
            "type": self.type,
            "ts": self.ts,
            "message": self.message,
            "step_id": self.step_id,
            "unit": self.unit,
            "attempt": self.attempt,
            "attempt_id": self.attempt_id,
            "payload": self.payload,
        }


# Events that only inform (streaming, heartbeats, tool calls): never folded into run state.
INFORMATIONAL = frozenset(
    {
        EventType.TOOL_CALL_STARTED,
        EventType.TOOL_CALL_COMPLETED,
        EventType.TOOL_CALL_FAILED,
        EventType.CHILD_RUN_STARTED,
        EventType.LLM_LOADING_MODEL,
        EventType.LLM_GENERATING,
        EventType.LLM_HEARTBEAT,
        EventType.LLM_TOKENS,
        EventType.LLM_DONE,
        EventType.LLM_ERROR,
        EventType.SHELL_EXECUTING,
        EventType.SHELL_OUTPUT,
        EventType.ARTIFACT_CREATED,
        EventType.CONDUCTOR_TURN,
        EventType.DIRECTIVE,
        EventType.STEP_CACHE_HIT,
        EventType.WORKFLOW_STARTED,
        EventType.WORKFLOW_COMPLETED,
        EventType.WORKFLOW_FAILED,
    }
)

# Informational, but folded: usage counts against the run's budget.
FOLDED_INFORMATIONAL = frozenset({EventType.LLM_DONE})
NOT_FOLDED = INFORMATIONAL - FOLDED_INFORMATIONAL
RUN_END_EVENTS = frozenset({EventType.RUN_COMPLETED, EventType.RUN_FAILED, EventType.RUN_CANCELED})
