"""The reducer's decisions about people: a question asked, an answer (also one that came
early, or for a parked run), a question's timeout, parking a run that only waits for a
person. A mixin of the reducer (:mod:`llmflow.engine.scheduler`); pure."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from llmflow.engine.events import EventType as E
from llmflow.engine.inputs import AnswerHuman, AskHuman, Cancel, HumanAsked, StartTimer, Stop
from llmflow.engine.payloads import (
    AttemptInterrupted,
    HumanInputReceived,
    HumanInputRequested,
    RunParked,
    RunQueued,
)
from llmflow.engine.states import RunStatus, UnitStatus
from llmflow.engine.timers import durable_timers


class HumanDecisions:
    """Needs ``st``, ``now``, ``commands`` and ``ev`` from the reducer."""

    st: Any
    now: float
    commands: list[Any]

    def ev(self, *args: Any, **kw: Any) -> None:  # provided by the reducer
        raise NotImplementedError

    def _asked(self, q: HumanAsked) -> None:
        st = self.st
        rid = q.request_id
        if rid in st.human_answers:
            self.commands.append(AnswerHuman(rid, st.human_answers[rid]))
            return
        if not st.flow.options.human_in_loop:
            answer = q.default if q.default is not None else ""
            self.ev(
                E.HUMAN_INPUT_RECEIVED,
                f"human_in_loop is off; answering {q.prompt[:60]!r} with the default",
                q.node_id,
                q.unit,
                q.attempt,
                HumanInputReceived(request_id=rid, answer=answer, source="human_in_loop: false"),
            )
            self.commands.append(AnswerHuman(rid, answer))
            return
        old = st.human_requests.get(rid) if rid in st.open_requests else None
        p = HumanInputRequested(
            request_id=rid, prompt=q.prompt, input=q.input, options=q.options, default=q.default
        )
        if old is not None:  # asked again after a takeover: the same deadline
            timeout, at = old.get("timeout"), old.get("timeout_at")
        else:
            timeout = (
                q.timeout
                or st.options.get("human_timeout")
                or getattr(st.flow.options, "human_timeout", None)
            )
            at = self.now + float(timeout) if timeout else None
        if at is not None:
            p = replace(p, timeout=float(timeout or 0), timeout_at=at)
        self.ev(
            E.HUMAN_INPUT_REQUESTED,
            f"Waiting for human input: {q.prompt[:100]}",
            q.node_id,
            q.unit,
            q.attempt,
            p,
        )
        if at is not None:
            self.commands.append(StartTimer(f"human:{rid}", at))
        self.commands.append(AskHuman(rid, q.node_id, q.unit, q.prompt, q.input, q.options, q.default))
        early = next((x for x in st.early_answers if x[0] in (None, rid)), None)
        if early is not None:
            st.early_answers.remove(early)
            self._answered(rid, early[1], None)
        elif q.park_after is not None:
            self.commands.append(StartTimer("park", self.now + q.park_after))

    def _answered(self, rid: str | None, answer: Any, source: str | None, message: str | None = None) -> None:
        st = self.st
        if rid is None or rid not in st.open_requests:
            if rid is None and st.open_requests:
                rid = next(iter(st.open_requests))
            elif rid is None or rid not in st.human_requests:
                st.early_answers.append((rid, answer))  # an answer before its question is kept
                return
            elif rid in st.human_answers:
                return  # answered already: the first answer wins
        node_id, unit = st.open_requests.get(rid, (None, ""))
        p = (
            HumanInputReceived(request_id=rid, answer=answer, source=source)
            if source
            else HumanInputReceived(request_id=rid, answer=answer)
        )
        self.ev(E.HUMAN_INPUT_RECEIVED, message or f"Human input received: {str(answer)[:80]}", payload=p)
        self.commands.append(AnswerHuman(rid, answer))
        if st.status is RunStatus.WAITING and not st.open_requests:
            self.ev(
                E.RUN_QUEUED,
                "Run re-queued: human input received",
                payload=RunQueued(reason="human input received"),
            )

    def _maybe_park(self) -> None:
        """Park the run when every running unit waits for a person: record the waiting
        attempts as interrupted, go WAITING, and let the process go (Stop)."""
        st = self.st
        if not st.executing or st.status is not RunStatus.RUNNING or st.finished or not st.open_requests:
            return
        asking = []
        for rid, (node_id, unit) in st.open_requests.items():
            n = st.nodes.get(node_id or "")
            u = n.units.get(unit) if n is not None else None
            if u is not None and u.status is UnitStatus.RUNNING and u.asking == rid:
                asking.append((n, u, rid))
        if not asking or len(asking) != st.running:
            return
        for n, u, _ in asking:
            a = u.attempts[-1]
            self.ev(
                E.ATTEMPT_INTERRUPTED,
                f"Attempt {a.n} of {_label(n, u.key)} parked: waiting for human input",
                n.id,
                u.key,
                a.n,
                AttemptInterrupted(error="parked: waiting for human input"),
            )
            self.commands.append(Cancel(n.id, u.key, "parked", silent=True))
        rids = [rid for _, _, rid in asking]
        wake = [t.at for t in durable_timers(st, self.now)]
        self.ev(
            E.RUN_PARKED,
            f"Run parked: waiting for human input ({', '.join(rids)}); answer it to continue",
            payload=RunParked(requests=rids, wake_at=min(wake) if wake else None),
        )
        self.commands.append(Stop("parked: waiting for human input"))


def _label(n: Any, unit: str) -> str:
    return f"{n.short_id}[{unit}]" if unit else n.short_id
