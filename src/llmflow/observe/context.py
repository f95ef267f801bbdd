"""The trace a run belongs to, read from the store (no OpenTelemetry needed): the API and
the MCP server show it, the tracer uses it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llmflow.engine.events import EventType as E
from llmflow.observe.ids import parse_traceparent, run_trace_id, span_id

if TYPE_CHECKING:
    from llmflow.store.base import Store


def trace_of(store: Store | None, run_id: str, _depth: int = 0) -> tuple[int, int | None, bool, Any]:
    """(trace id, parent span of the run span or None, sampled, the run's record) for a
    run: the trace of its ``traceparent`` metadata, else its parent run's, else its own."""
    rec = store.get_run(run_id) if store is not None else None
    meta = getattr(rec, "metadata", None) or {}
    tp = parse_traceparent(meta.get("traceparent"))
    if tp is not None:
        return tp.trace_id, tp.span_id, tp.sampled, rec
    parent_id = getattr(rec, "parent_run_id", None)
    if parent_id and _depth < 32:
        trace_id, _, sampled, _ = trace_of(store, parent_id, _depth + 1)
        return trace_id, None, sampled, rec
    return run_trace_id(run_id), None, True, rec


def child_parent_span(store: Store | None, parent_run_id: str, child_run_id: str) -> int:
    """The span a child run hangs from: the attempt of its parent that started it (read
    from the parent's log when this process did not see it), else the parent run."""
    if store is not None:
        for e in store.events(parent_run_id):
            if (
                e.type == E.CHILD_RUN_STARTED
                and (e.payload or {}).get("child_run_id") == child_run_id
                and e.attempt_id
            ):
                return span_id(parent_run_id, "attempt", e.attempt_id)
    return span_id(parent_run_id)


def traceparent_of(store: Store | None, run_id: str) -> str:
    """The W3C ``traceparent`` of a run's own span (what a caller puts on requests it makes
    on the run's behalf, and what the API shows as the run's trace)."""
    trace_id, _, sampled, _ = trace_of(store, run_id)
    return f"00-{trace_id:032x}-{span_id(run_id):016x}-{'01' if sampled else '00'}"
