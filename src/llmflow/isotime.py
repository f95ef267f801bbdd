"""Runs, events and batches as JSON for people and scripts (the CLI's ``--json``, the native
API): every timestamp is ISO 8601 in UTC (``2026-01-01T12:00:00.123000Z``).

The store and the runtime keep time as epoch seconds (floats: cheap to compare and
subtract); this is the one place that turns them into text, by field name, so a run's own
data (inputs, outputs, payloads) is never touched. Durations stay numbers of seconds.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

RUN_TIMES = ("created_at", "started_at", "ended_at", "updated_at", "lease_expires_at")
STEP_TIMES = ("started_at", "ended_at")


def iso(ts: float | None) -> str | None:
    """Epoch seconds -> ISO 8601 UTC with a ``Z`` (None stays None)."""
    if ts is None or isinstance(ts, str):
        return ts
    return datetime.fromtimestamp(float(ts), UTC).isoformat().replace("+00:00", "Z")


def _times(d: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: (iso(v) if k in keys else v) for k, v in d.items()}


def iso_view(view: dict[str, Any]) -> dict[str, Any]:
    """A run view (``Runtime.view``) with its times, its steps', attempts' and artifacts'
    times as ISO 8601."""
    out = _times(view, RUN_TIMES)
    if "steps" in view:
        out["steps"] = [
            {**_times(s, STEP_TIMES), "attempts": [_times(a, STEP_TIMES) for a in s.get("attempts") or []]}
            for s in view["steps"]
        ]
    if "artifacts" in view:
        out["artifacts"] = [_times(a, ("created_at",)) for a in view["artifacts"] or []]
    return out


def iso_run(summary: dict[str, Any]) -> dict[str, Any]:
    """A run summary (one row of a listing) with ISO 8601 times."""
    return _times(summary, RUN_TIMES)


def iso_event(event: dict[str, Any]) -> dict[str, Any]:
    """An event (``Event.to_dict()``) with ``ts`` as ISO 8601."""
    return {**event, "ts": iso(event.get("ts"))}


def iso_batch(batch: dict[str, Any]) -> dict[str, Any]:
    """A batch view (``batch_view``) with ISO 8601 times."""
    return _times(batch, ("created_at", "updated_at", "ended_at"))
