"""The timers a run's log holds: what a takeover re-arms. Pure."""

from __future__ import annotations

from llmflow.engine.inputs import StartTimer
from llmflow.engine.state import RunState
from llmflow.engine.states import UnitStatus


def durable_timers(st: RunState, now: float) -> list[StartTimer]:
    """The timers recorded in a run's log that have not fired yet: the run deadline, retry
    backoffs, step timeouts of running attempts, human-input deadlines."""
    out: list[StartTimer] = []
    if st.deadline is not None:
        out.append(StartTimer("run", st.deadline))
    for n in st.nodes.values():
        if not n.units:
            continue
        for u in n.units.values():
            if u.status is UnitStatus.PENDING and u.not_before is not None:
                out.append(StartTimer(f"retry:{n.id}[{u.key}]", u.not_before))
            elif u.status is UnitStatus.RUNNING and u.attempts and u.attempts[-1].timeout_at is not None:
                a = u.attempts[-1]
                out.append(StartTimer(f"attempt:{n.id}[{u.key}]#{a.n}", a.timeout_at))  # type: ignore[arg-type]
    for rid in st.open_requests:
        at = (st.human_requests.get(rid) or {}).get("timeout_at")
        if at is not None:
            out.append(StartTimer(f"human:{rid}", at))
    return out
