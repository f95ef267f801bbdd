"""Trace and span ids derived from the event log, so every process that touches a run
(the one that started it, a worker that resumed it, a Ray worker running a child) names the
same spans the same way: a resumed run continues its trace, a child run joins its parent's.

Pure: no I/O, no clock, no randomness."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

# W3C Trace Context: version-traceid-parentid-flags (https://www.w3.org/TR/trace-context/)
_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


@dataclass(frozen=True)
class TraceParent:
    trace_id: int
    span_id: int
    sampled: bool = True

    def header(self) -> str:
        return f"00-{self.trace_id:032x}-{self.span_id:016x}-{'01' if self.sampled else '00'}"


def parse_traceparent(value: object) -> TraceParent | None:
    """A ``traceparent`` header value, or None when it is not a valid one (never raises)."""
    if not isinstance(value, str):
        return None
    m = _TRACEPARENT.match(value.strip().lower())
    if not m or m.group(1) == "ff":
        return None
    trace_id, span_id = int(m.group(2), 16), int(m.group(3), 16)
    if trace_id == 0 or span_id == 0:
        return None
    return TraceParent(trace_id, span_id, bool(int(m.group(4), 16) & 1))


def _digest(*parts: object, size: int) -> int:
    h = hashlib.blake2b("\x1f".join(str(p) for p in parts).encode(), digest_size=size).digest()
    return int.from_bytes(h, "big") or 1  # 0 is the invalid id


def run_trace_id(run_id: str) -> int:
    """The trace id of a run started with no incoming trace context: a hash of its id."""
    return _digest("llmflow-trace", run_id, size=16)


def span_id(run_id: str, *key: object) -> int:
    """The id of one span of a run: the run itself (no key), a step (``"step", seq``), an
    attempt (``"attempt", attempt_id``), a model call (``"llm", seq``) ..."""
    return _digest("llmflow-span", run_id, *key, size=8)


def with_traceparent(metadata: dict[str, object] | None, header: str | None) -> dict[str, object]:
    """Run metadata keeping a valid incoming ``traceparent`` (an invalid one is ignored, as
    the W3C spec asks; one already in the metadata wins)."""
    out = dict(metadata or {})
    tp = parse_traceparent(header)
    if tp is not None and "traceparent" not in out:
        out["traceparent"] = tp.header()
    return out
