"""The reducer: every orchestration decision lives here.

``decide(state, input, now)`` folds the input into the state and returns a
:class:`~llmflow.engine.inputs.Decision`: the events that follow (already folded) and the
commands they lead to (run a unit, cancel one, start a timer, ask a person, hand over an
answer, stop). Inputs are step results, fired timers, cancel / pause / resume requests,
a takeover by a new owner, re-run requests, human questions and answers
(:mod:`llmflow.engine.inputs`). The runner only receives, decides, appends, executes.

Pure: no I/O, no clock, no randomness - ``now`` is passed in, retry jitter is a hash of
run, step, unit and attempt. Time is durable: the run deadline, retry backoff, step
timeouts and human-input timeouts are recorded in the events as absolute times, and a
takeover re-arms them from the log (``StartTimer``), so they hold across processes.

Cheap by construction: the state keeps counters and work lists (see
:mod:`llmflow.engine.state`), so a decision looks only at the steps the input can have
changed - the step of a finished unit, the dependents of a finished step, the steps with
units waiting for a slot - never at the whole run.

There is one wind-down path (:meth:`_Decider.wind_down`) for every way a run stops early:
cancel, a failed step, an exhausted budget, the run timeout.
"""

from __future__ import annotations

import hashlib
from typing import Any, cast

from llmflow.engine.aggregate import AggregationError, Response, aggregate
from llmflow.engine.context import template_context
from llmflow.engine.events import NOT_FOLDED, NewEvent
from llmflow.engine.events import EventType as E
from llmflow.engine.humans import HumanDecisions
from llmflow.engine.inputs import (
    STEP_TIMED_OUT,
    AnswerHuman,
    Cancel,
    CancelRequested,
    Command,
    Decision,
    Emitted,
    Execute,
    FailRequested,
    HumanAnswered,
    HumanAsked,
    HumanDeclined,
    Input,
    PauseRequested,
    RerunRequested,
    Resume,
    ResumeRequested,
    Start,
    StartTimer,
    StepCanceled,
    StepFailed,
    StepSucceeded,
    TimerFired,
)
from llmflow.engine.payloads import (
    MISSING,
    AttemptCanceled,
    AttemptCompleted,
    AttemptFailed,
    AttemptInterrupted,
    AttemptStarted,
    LoopIteration,
    RunCanceled,
    RunCancelRequested,
    RunCompleted,
    RunFailed,
    RunPaused,
    RunQueued,
    RunRecovered,
    RunResumed,
    RunStarted,
    StepCompleted,
    StepRerun,
    StepRetrying,
    StepSkipped,
    StepStale,
    StepStarted,
    WorkflowCompleted,
    WorkflowFailed,
    WorkflowStarted,
)
from llmflow.engine.payloads import StepCanceled as StepCanceledP
from llmflow.engine.payloads import StepFailed as StepFailedP
from llmflow.engine.retry import backoff_delay, should_retry
from llmflow.engine.state import NodeState, RunState, UnitState, apply
from llmflow.engine.states import (
    STEP_TERMINAL,
    UNIT_TERMINAL,
    AttemptStatus,
    RunStatus,
    StepStatus,
    UnitStatus,
)
from llmflow.engine.timers import durable_timers
from llmflow.engine.units import DEFAULT_MAX_UNITS, UnitCapError, compute_units, unit_cap
from llmflow.errors import TemplateError
from llmflow.model.expressions import evaluate
from llmflow.model.spec import BroadcastStep, LoopStep, ParallelStep, RouteStep

__all__ = [
    "Cancel",
    "Decision",
    "Execute",
    "StartTimer",
    "decide",
    "plan",
    "compute_units",
    "durable_timers",
    "unit_cap",
    "UnitCapError",
    "DEFAULT_MAX_UNITS",
]

_STEP_ENDED = STEP_TERMINAL | {StepStatus.STALE}  # a step a re-run upstream makes stale
_UNIT_NOT_COMPLETED = UNIT_TERMINAL - {UnitStatus.COMPLETED}


def _jitter(run_id: str, node: str, unit: str, attempt: int) -> float:
    h = hashlib.blake2b(f"{run_id}/{node}/{unit}/{attempt}".encode(), digest_size=4).digest()
    return int.from_bytes(h, "big") / 2**32


def _label(n: NodeState, unit: str) -> str:
    return f"{n.short_id}[{unit}]" if unit else n.short_id


class _Decider(HumanDecisions):
    __slots__ = ("st", "now", "events", "commands")

    def __init__(self, st: RunState, now: float) -> None:
        self.st = st
        self.now = now
        self.events: list[NewEvent] = []
        self.commands: list[Command] = []

    def emit(self, ev: NewEvent) -> None:
        apply(self.st, ev)
        self.events.append(ev)

    def ev(
        self,
        type_: str,
        message: str,
        step_id: str | None = None,
        unit: str | None = None,
        attempt: int | None = None,
        payload: Any = None,
    ) -> None:
        self.emit(
            NewEvent(type_, message, step_id, unit or None, attempt, payload if payload is not None else {})
        )

    # == inputs ==========================================================================
    def take(self, inp: Input) -> None:
        st = self.st
        if isinstance(inp, Emitted):
            e = inp.event
            if e.type in NOT_FOLDED:
                self.events.append(e)
            else:
                self.emit(e)
        elif isinstance(inp, StepSucceeded):
            if self._live_attempt(inp.node_id, inp.unit, inp.attempt):
                n = st.nodes[inp.node_id]
                self.ev(
                    E.ATTEMPT_COMPLETED,
                    f"Attempt {inp.attempt} of {_label(n, inp.unit)} completed",
                    n.id,
                    inp.unit,
                    inp.attempt,
                    AttemptCompleted(output=inp.output),
                )
        elif isinstance(inp, StepFailed):
            if self._live_attempt(inp.node_id, inp.unit, inp.attempt):
                n = st.nodes[inp.node_id]
                p = AttemptFailed(
                    error=inp.error,
                    kind=inp.kind,
                    retryable=inp.retryable,
                    retry_after=inp.retry_after if inp.retry_after is not None else MISSING,
                    hint=inp.hint or MISSING,
                )
                self.ev(
                    E.ATTEMPT_FAILED,
                    f"Attempt {inp.attempt} of {_label(n, inp.unit)} failed: {inp.error}",
                    n.id,
                    inp.unit,
                    inp.attempt,
                    p,
                )
        elif isinstance(inp, StepCanceled):
            if self._live_attempt(inp.node_id, inp.unit, inp.attempt):
                self.ev(
                    E.ATTEMPT_CANCELED,
                    f"Attempt {inp.attempt} of {inp.node_id} canceled: {inp.reason}",
                    inp.node_id,
                    inp.unit,
                    inp.attempt,
                    AttemptCanceled(error=inp.reason),
                )
        elif isinstance(inp, Start):
            if st.started:
                self._resume(inp.owner)
            else:
                self._start(inp.owner)
        elif isinstance(inp, Resume):
            if st.started:
                self._resume(inp.owner)
            else:
                self._start(inp.owner)
        elif isinstance(inp, TimerFired):
            self._timer(inp.timer)
        elif isinstance(inp, CancelRequested):
            if not st.cancel_requested and not st.finished:
                why = inp.reason or inp.payload.get("reason")
                pc = RunCancelRequested.from_dict({**inp.payload, **({"reason": why} if why else {})})
                self.ev(E.RUN_CANCEL_REQUESTED, "Cancel requested" + (f": {why}" if why else ""), payload=pc)
        elif isinstance(inp, PauseRequested):
            if not st.finished and st.status is not RunStatus.PAUSED:
                pp = RunPaused.from_dict(inp.payload)
                if st.executing:
                    if st.status is RunStatus.RUNNING:
                        self.ev(
                            E.RUN_PAUSED, "Run paused: running steps finish, no new step starts", payload=pp
                        )
                else:
                    self.ev(
                        E.RUN_PAUSED,
                        "Run paused" + (" before it started" if st.status is RunStatus.QUEUED else ""),
                        payload=pp,
                    )
        elif isinstance(inp, ResumeRequested):
            if st.status is RunStatus.PAUSED:
                if st.executing:
                    self.ev(E.RUN_RESUMED, "Run resumed", payload=RunResumed.from_dict(inp.payload))
                else:
                    self.ev(
                        E.RUN_QUEUED, "Run re-queued after resume", payload=RunQueued.from_dict(inp.payload)
                    )
        elif isinstance(inp, RerunRequested):
            self._rerun(inp)
        elif isinstance(inp, HumanAsked):
            self._asked(inp)
        elif isinstance(inp, HumanAnswered):
            self._answered(inp.request_id, inp.answer, inp.source)
        elif isinstance(inp, HumanDeclined):
            if inp.request_id in st.open_requests and inp.request_id not in st.human_answers:
                self.commands.append(AnswerHuman(inp.request_id, error=inp.reason, hint=inp.hint))
        elif isinstance(inp, FailRequested):
            if not st.finished:
                self.wind_down("failed", inp.error, None)
        else:  # a NewEvent given directly (tests, replays): fold it
            self.emit(inp)  # type: ignore[arg-type]

    def _live_attempt(self, node_id: str, unit: str, attempt: int) -> bool:
        """A result for an attempt that is still running (not one already ended: a late
        result after a cancel, a time-out or parking is dropped)."""
        n = self.st.nodes.get(node_id)
        u = n.units.get(unit) if n is not None else None
        if u is None or not u.attempts:
            return False
        a = u.attempts[-1]
        return a.n == attempt and a.status is AttemptStatus.RUNNING

    # -- start and takeover ----------------------------------------------------------------
    def _timeout(self) -> float | None:
        st = self.st
        t = st.options.get("timeout") or st.flow.options.timeout
        return float(t) if t else None

    def _start(self, owner: str) -> None:
        st = self.st
        st.executing = True
        timeout = self._timeout()
        p = RunStarted(owner=owner, deadline=self.now + timeout) if timeout else RunStarted(owner=owner)
        self.ev(E.RUN_STARTED, "Run started", payload=p)
        self.ev(
            E.WORKFLOW_STARTED,
            f"Starting {st.flow.name} v{st.flow.version}",
            payload=WorkflowStarted(flow=st.flow.name, version=st.flow.version),
        )
        if st.deadline is not None:
            self.commands.append(StartTimer("run", st.deadline))

    def _resume(self, owner: str) -> None:
        st = self.st
        st.executing = True
        interrupted = []
        for n in list(st.nodes.values()):
            if not n.n_running:
                continue
            for u in list(n.units.values()):
                if u.status is UnitStatus.RUNNING and u.attempts:
                    a = u.attempts[-1]
                    interrupted.append(f"{n.id}{'[' + u.key + ']' if u.key else ''}#{a.n}")
                    self.ev(
                        E.ATTEMPT_INTERRUPTED,
                        f"Attempt {a.n} of {n.short_id} was interrupted; it will run again",
                        n.id,
                        u.key,
                        a.n,
                        AttemptInterrupted(error="the process running it stopped"),
                    )
        if st.rerun_requested and not interrupted:  # a re-run in place, not a recovery: say so
            self.ev(
                E.RUN_RESUMED,
                f"Re-running step {st.rerun_requested}",
                payload=RunResumed.from_dict({"owner": owner, "rerun": st.rerun_requested}),
            )
        elif st.status in (RunStatus.PAUSED, RunStatus.QUEUED, RunStatus.WAITING):
            self.ev(E.RUN_RESUMED, "Run resumed", payload=RunResumed(owner=owner))
        else:
            self.ev(
                E.RUN_RECOVERED,
                f"Run recovered by {owner}"
                + (f"; interrupted: {', '.join(interrupted)}" if interrupted else ""),
                payload=RunRecovered(owner=owner, interrupted=interrupted),
            )
        self.commands.extend(durable_timers(st, self.now))
        st.check.update(st.nodes)
        st.touched.update(nid for nid, n in st.nodes.items() if n.status is StepStatus.RUNNING)

    # -- timers ----------------------------------------------------------------------------
    def _timer(self, timer: str) -> None:
        st = self.st
        kind, _, rest = timer.partition(":")
        if kind == "retry":
            node_id = rest.rsplit("[", 1)[0]
            n = st.nodes.get(node_id)
            if n is not None:
                self._release_delayed(n)
        elif kind == "attempt":
            where, _, num = rest.rpartition("#")
            node_id, _, unit = where.partition("[")
            unit = unit[:-1]
            n = st.nodes.get(node_id)
            u = n.units.get(unit) if n is not None else None
            if n is not None and u is not None and u.attempts:
                a = u.attempts[-1]
                if (
                    a.n == int(num)
                    and a.status is AttemptStatus.RUNNING
                    and a.timeout_at is not None
                    and self.now >= a.timeout_at
                ):
                    t = self._attempt_timeout(n)
                    self.commands.append(Cancel(n.id, unit, f"{STEP_TIMED_OUT}{t:g}s", fail_kind="timeout"))
        elif kind == "human":
            req = st.human_requests.get(rest)
            at = req.get("timeout_at") if req else None
            if rest in st.open_requests and at is not None and self.now >= at:
                if req.get("default") is not None:
                    self._answered(
                        rest,
                        req["default"],
                        "default",
                        f"No answer within {req.get('timeout', 0):g}s; using the default",
                    )
                else:
                    self.commands.append(
                        AnswerHuman(rest, error=f"no human answer within {req.get('timeout', 0):g}s")
                    )
        elif kind == "park":
            self._maybe_park()
        # "run": the deadline is in the state; settle() sees that it passed

    def _release_delayed(self, n: NodeState) -> None:
        for key in list(n.delayed):
            u = n.units.get(key)
            if u is None or u.status is not UnitStatus.PENDING:
                n.delayed.discard(key)
            elif u.not_before is None or u.not_before <= self.now:
                n.delayed.discard(key)
                n.pending.appendleft(key)
                self.st.fillable.add(n.id)
        self.st.touched.add(n.id)

    # -- re-run in place -------------------------------------------------------------------
    def _rerun(self, r: RerunRequested) -> None:
        st = self.st
        timeout = self._timeout()
        extra: dict[str, Any] = {"deadline": self.now + timeout} if timeout else {}
        self.ev(
            E.STEP_RERUN,
            f"Re-run of {r.step_id}{'[' + r.unit + ']' if r.unit else ''} requested"
            + (" with downstream" if r.downstream else ""),
            r.step_id,
            r.unit,
            payload=StepRerun(unit=r.unit, downstream=r.downstream, **extra),
        )
        for d in st.graph.downstream(r.step_id):
            if st.nodes[d].status in _STEP_ENDED:
                self.ev(
                    E.STEP_STALE,
                    f"Step {d} is stale: {r.step_id} is re-running",
                    d,
                    payload=StepStale(because=r.step_id, rerun=r.downstream),
                )

    # == settling: what follows from the state ===========================================
    def settle(self) -> None:
        st = self.st
        for _ in range(100_000):
            if st.finished or not (st.started or st.cancel_requested):
                return
            before = len(self.events)
            stop = self.stop_reason()
            if stop is not None:
                self.wind_down(*stop)
                return
            if not st.executing or st.status not in (RunStatus.RUNNING, RunStatus.PAUSED):
                return
            # each pass below starts with the same test of its work list: asked here, a pass
            # with nothing to do costs no call (a decision makes two or three passes)
            if st.retry_candidates:
                self._retries()
            if st.check and st.status is RunStatus.RUNNING:
                self._readiness()
            running = st.status is RunStatus.RUNNING
            if st.touched or (running and st.fillable):
                self._progress(fill=running)
            if not (st.finished or st.unfinished or st.failing or st.running):
                self._maybe_finish()
            if len(self.events) == before:
                return

    def stop_reason(self) -> tuple[str, str, str | None] | None:
        """(why, message, budget) when the run must stop early; why is canceled | failed |
        budget | timeout."""
        st = self.st
        if st.cancel_requested:
            return "canceled", "run canceled", None
        if not st.executing:  # the rest stops a run only where it executes
            return None
        if st.failing:
            n = st.nodes[st.failing[0]]
            return "failed", f"step '{n.short_id}' failed: {n.error}", None
        if st.max_tokens or st.max_cost is not None:  # no budget: nothing to exceed
            b = self._budget_exceeded()
            if b is not None:
                return "budget", b[0], b[1]
        if st.deadline is not None and self.now >= st.deadline:
            t = self._timeout()
            return "timeout", f"run timed out (timeout {t:g}s)" if t else "run timed out", None
        return None

    def _budget_exceeded(self) -> tuple[str, str] | None:
        st = self.st
        used = st.tokens_in + st.tokens_out
        if st.max_tokens and used > st.max_tokens:
            return f"token budget exceeded: used {used} tokens, max_tokens is {st.max_tokens}", "max_tokens"
        if st.max_cost is not None and st.cost > st.max_cost:
            return f"cost budget exceeded: spent ${st.cost:.4f}, max_cost is ${st.max_cost:.4f}", "max_cost"
        if st.budget_blocked and not st.running_budgeted:
            if st.max_tokens and used + st.reserved >= st.max_tokens:
                return (
                    f"token budget exhausted: used {used} of max_tokens {st.max_tokens}; the remaining units cannot start",
                    "max_tokens",
                )
            if st.max_cost is not None:
                return (
                    f"cost budget exhausted: spent ${st.cost:.4f} of max_cost ${st.max_cost:.4f}; the remaining units cannot start",
                    "max_cost",
                )
        return None

    def _admit(self) -> tuple[bool, int, float]:
        """May one more budgeted attempt start? (ok, tokens to reserve, cost to reserve).
        Each running attempt reserves the expected use of one attempt, so concurrent units
        overshoot the budget by at most about one call's worth; while nothing has been
        measured yet, one attempt runs alone (reserving everything left)."""
        st = self.st
        est_t, est_c = st.estimate()
        reserve_t, reserve_c = 0, 0.0
        if st.max_tokens:
            left = st.max_tokens - (st.tokens_in + st.tokens_out) - st.reserved
            if left <= 0:
                return False, 0, 0.0
            if est_t is None:
                if st.running_budgeted:
                    return False, 0, 0.0
                reserve_t = left
            else:
                reserve_t = est_t
        if st.max_cost is not None:
            left_c = st.max_cost - st.cost - st.reserved_cost
            if est_c is None:
                if st.running_budgeted:
                    return False, 0, 0.0
                if left_c < 0:
                    return False, 0, 0.0
                reserve_c = max(left_c, 0.0)
            elif est_c > 0:
                if left_c <= 0:
                    return False, 0, 0.0
                reserve_c = est_c
        return True, reserve_t, reserve_c

    # -- the one wind-down path ------------------------------------------------------------
    def wind_down(self, why: str, message: str, budget: str | None) -> None:
        st = self.st
        running = [
            (n, u)
            for n in st.nodes.values()
            if n.n_running
            for u in n.units.values()
            if u.status is UnitStatus.RUNNING
        ]
        if running:
            reason = {"canceled": "run canceled", "timeout": "run timed out"}.get(
                why, message if why == "budget" else message.split(":", 1)[0]
            )
            for n, u in running:
                a = u.attempts[-1]
                if st.executing:
                    key = (n.id, u.key, a.n)
                    if key not in st.cancels_sent:
                        st.cancels_sent.add(key)
                        self.commands.append(Cancel(n.id, u.key, reason))
                else:  # nobody executes it: record the end directly
                    self.ev(
                        E.ATTEMPT_CANCELED,
                        "Attempt canceled",
                        n.id,
                        u.key,
                        a.n,
                        AttemptCanceled(error=reason),
                    )
            if st.executing:
                return  # finish once every running attempt has reported back
        on_budget = getattr(st.flow.options, "on_budget", "fail")
        step_reason = {"canceled": "run canceled", "timeout": "run timed out"}.get(why, "run failed")
        for n in list(st.nodes.values()):
            if not n.unfinished:
                continue
            pending = [k for k, u in n.units.items() if u.status is UnitStatus.PENDING]
            if why == "budget" and on_budget == "skip":
                self.ev(
                    E.STEP_SKIPPED,
                    f"Step {n.short_id} skipped: {message}",
                    n.id,
                    payload=StepSkipped(reason=message, units=pending)
                    if pending
                    else StepSkipped(reason=message),
                )
            elif why == "budget" and n.status is StepStatus.RUNNING:
                self.ev(
                    E.STEP_FAILED,
                    f"Step {n.short_id} failed: {message}",
                    n.id,
                    payload=StepFailedP(error=message, units=pending)
                    if pending
                    else StepFailedP(error=message),
                )
            elif (bad := self._failed_child(n)) is not None:
                err = (
                    (bad.error or "failed")
                    if isinstance(bad.spec, ParallelStep)
                    else f"{bad.short_id}: {bad.error}"
                )
                self.ev(
                    E.STEP_FAILED, f"Step {n.short_id} failed: {err}", n.id, payload=StepFailedP(error=err)
                )
            else:
                self.ev(
                    E.STEP_CANCELED,
                    f"Step {n.short_id} canceled" + (": run timed out" if why == "timeout" else ""),
                    n.id,
                    payload=StepCanceledP(reason=step_reason),
                )
        if why == "canceled":
            self.ev(E.RUN_CANCELED, "Run canceled", payload=RunCanceled())
            return
        failing = st.nodes[st.failing[0]] if st.failing else None
        self.ev(E.WORKFLOW_FAILED, f"Workflow failed: {message}", payload=WorkflowFailed(error=message))
        p = RunFailed(error=message, step_id=failing.short_id if failing else None)
        if budget:
            p = RunFailed(error=message, step_id=None, budget=budget)
        self.ev(E.RUN_FAILED, f"Run failed: {message}", payload=p)

    def _failed_child(self, n: NodeState) -> NodeState | None:
        """The first child of a running parallel group whose failure fails the run."""
        spec = n.spec
        if n.status is not StepStatus.RUNNING or not isinstance(spec, ParallelStep):
            return None
        prefix = f"{n.scope}/" if n.scope else ""
        for c in spec.steps:
            cn = self.st.nodes.get(prefix + c.id)
            if cn is not None and cn.status is StepStatus.FAILED and cn.fails_run:
                return cast(NodeState, cn)
        return None

    # -- finishing -------------------------------------------------------------------------
    def _maybe_finish(self) -> None:
        st = self.st
        if st.finished or st.unfinished or st.failing or st.running:
            return
        try:
            outputs = self._outputs()
        except TemplateError as exc:  # nothing runs and nothing is unfinished: the one wind-down path
            self.wind_down("failed", exc.message, None)
            return
        steps = done = 0
        for n in st.nodes.values():
            if n.scope is None:
                steps += 1
                done += n.status is StepStatus.COMPLETED
        self.ev(
            E.WORKFLOW_COMPLETED,
            f"Workflow completed: {done} of {steps} steps completed",
            payload=WorkflowCompleted(steps=steps, completed=done),
        )
        self.ev(E.RUN_COMPLETED, "Run completed", payload=RunCompleted(outputs=outputs))

    def _outputs(self) -> dict[str, Any]:
        st = self.st
        spec = st.flow.outputs
        if spec:
            from llmflow.model.expressions import render_value

            ctx = template_context(st, None)
            return {k: render_value(v, ctx) for k, v in spec.items()}
        top = [n for n in st.nodes.values() if n.scope is None and n.group is None]
        last = next((n for n in reversed(top) if n.status in (StepStatus.COMPLETED, StepStatus.STALE)), None)
        return {"result": last.output if last else None}

    # -- retries ---------------------------------------------------------------------------
    def _retries(self) -> None:
        st = self.st
        if not st.retry_candidates:
            return
        cands, st.retry_candidates = st.retry_candidates, []
        for node_id, key in cands:
            n = st.nodes[node_id]
            u = n.units.get(key)
            if u is None or u.status is not UnitStatus.FAILED or not u.attempts:
                continue
            a = u.attempts[-1]
            retry = n.spec.effective_retry()
            if not should_retry(retry, u.failures, a.error_kind or "error", a.retryable):
                continue
            delay = backoff_delay(retry, u.failures, _jitter(st.run_id, n.id, u.key, a.n), a.retry_after)
            at = self.now + delay
            self.ev(
                E.STEP_RETRYING,
                f"Retrying {n.short_id} in {delay:.1f}s (attempt {a.n + 1} of {retry.attempts}): {a.error}",
                n.id,
                u.key,
                a.n,
                StepRetrying(delay=delay, error=a.error, at=at),
            )
            if delay > 0:
                self.commands.append(StartTimer(f"retry:{n.id}[{u.key}]", at))

    # -- readiness of steps whose needs changed --------------------------------------------
    def _readiness(self) -> None:
        st = self.st
        if not st.check:
            return
        nodes = st.nodes
        batch = sorted((nodes[x] for x in st.check if x in nodes), key=lambda n: n.index)
        st.check.clear()
        for n in batch:
            if st.cancel_requested or st.failing:
                st.check.update(x.id for x in batch)  # stop: the wind-down looks next
                return
            if (
                n.status is StepStatus.PENDING
                or (n.status is StepStatus.STALE and n.rerun_pending)
                or (n.status is StepStatus.RUNNING and isinstance(n.spec, ParallelStep))
            ):
                r = self._needs_state(n)
                if r == "wait":
                    continue
                if r.startswith("skip:"):
                    self.ev(
                        E.STEP_SKIPPED,
                        f"Step {n.short_id} skipped: {r[5:]}",
                        n.id,
                        payload=StepSkipped(reason=r[5:]),
                    )
                    continue
                self._start_step(n)

    def _needs_state(self, n: NodeState) -> str:
        """'wait' | 'ready' | 'skip:<reason>'."""
        if not n.needs:
            return "ready"
        st = self.st
        all_skipped = True
        for d in n.needs:
            dn = st.nodes.get(d)
            if dn is None:
                continue
            s = dn.status
            if (
                s is StepStatus.PENDING
                or s is StepStatus.RUNNING
                or (s is StepStatus.STALE and dn.rerun_pending)
            ):
                return "wait"
            if s is StepStatus.FAILED and dn.fails_run:
                return "wait"
            if s is StepStatus.COMPLETED and isinstance(dn.spec, RouteStep):
                selected = (dn.output or {}).get("selected", [])
                if n.short_id not in selected and n.short_id in dn.spec.targets():
                    return f"skip:not selected by route '{dn.short_id}'"
            if s is not StepStatus.SKIPPED:
                all_skipped = False
        if all_skipped:
            return "skip:all of its needs were skipped"
        return "ready"

    def _fail_step(self, n: NodeState, error: str, started: bool) -> None:
        if not started:
            self._open_group(n)
            self.ev(
                E.STEP_STARTED,
                f"Step {n.short_id} started",
                n.id,
                payload=StepStarted(kind=n.spec.kind, units=[]),
            )
        self.ev(E.STEP_FAILED, f"Step {n.short_id} failed: {error}", n.id, payload=StepFailedP(error=error))

    def _open_group(self, n: NodeState) -> None:
        """A parallel group starts with its first child (outermost group first), so that its
        duration spans its children; it completes (or fails) when its last child ends."""
        opening: list[NodeState] = []
        g = n.group
        while g is not None:
            gn = self.st.nodes.get(g)
            if gn is None or not gn.unfinished or gn.status is StepStatus.RUNNING:
                break
            opening.append(gn)
            g = gn.group
        for gn in reversed(opening):
            self.ev(
                E.STEP_STARTED,
                f"Step {gn.short_id} - {gn.spec.description or gn.spec.kind}",
                gn.id,
                payload=StepStarted(kind=gn.spec.kind, units=[]),
            )

    def _start_step(self, n: NodeState) -> None:
        st = self.st
        spec = n.spec
        started = n.status is StepStatus.RUNNING  # a parallel group its first child opened
        if spec.when is not None:
            try:
                ok = bool(evaluate(spec.when, template_context(st, n.id)))
            except TemplateError as exc:
                self._fail_step(n, f"condition failed to evaluate: {exc.message}", started)
                return
            if not ok:
                self.ev(
                    E.STEP_SKIPPED,
                    f"Step {n.short_id} skipped: condition {spec.when!r} is false",
                    n.id,
                    payload=StepSkipped(reason=f"condition {spec.when!r} is false"),
                )
                return
        desc = spec.description or spec.kind
        if not started:
            self._open_group(n)
        if isinstance(spec, ParallelStep):
            if not started:  # every child was skipped (or a log from before groups opened)
                self.ev(
                    E.STEP_STARTED,
                    f"Step {n.short_id} - {desc}",
                    n.id,
                    payload=StepStarted(kind=spec.kind, units=[]),
                )
            # inside a loop body the children's node ids carry the iteration's scope
            prefix = f"{n.scope}/" if n.scope else ""
            out = {c.id: st.nodes[prefix + c.id].output for c in spec.steps}
            self.ev(
                E.STEP_COMPLETED,
                f"Step {n.short_id} completed (barrier of {len(out)})",
                n.id,
                payload=StepCompleted(output=out),
            )
            return
        if isinstance(spec, RouteStep):
            try:
                ctx = template_context(st, n.id)
                selected, matched = list(spec.default), cast(int | str, "default")
                for i, r in enumerate(spec.routes):
                    if evaluate(r.when, ctx):
                        selected, matched = list(r.to), i
                        break
            except TemplateError as exc:
                self._fail_step(n, f"route condition failed: {exc.message}", False)
                return
            self.ev(
                E.STEP_STARTED,
                f"Step {n.short_id} - route",
                n.id,
                payload=StepStarted(kind=spec.kind, units=[]),
            )
            self.ev(
                E.STEP_COMPLETED,
                f"Route {n.short_id} -> {', '.join(selected) or '(nothing)'}",
                n.id,
                payload=StepCompleted(output={"selected": selected, "matched": matched}),
            )
            return
        if isinstance(spec, LoopStep):
            self.ev(
                E.STEP_STARTED,
                f"Step {n.short_id} - loop (iteration 1)",
                n.id,
                payload=StepStarted(kind=spec.kind, units=[], iteration=1),
            )
            return
        try:
            units = compute_units(st, n)
        except TemplateError as exc:
            self._fail_step(n, exc.message, False)
            return
        self.ev(
            E.STEP_STARTED,
            f"Step {n.short_id} - {desc}",
            n.id,
            payload=StepStarted(kind=spec.kind, units=units),
        )
        if not units:
            self.ev(
                E.STEP_COMPLETED,
                f"Step {n.short_id} completed (no items)",
                n.id,
                payload=StepCompleted(output=[]),
            )

    # -- progress of running steps ---------------------------------------------------------
    def _capacity(self) -> int:
        st = self.st
        limit = int(st.options.get("max_concurrency") or st.flow.options.max_concurrency)
        return limit - int(st.running)

    def _progress(self, fill: bool) -> None:
        st = self.st
        ids = set(st.touched)
        st.touched.clear()
        capacity = self._capacity() if fill else 0
        if capacity > 0 and st.fillable:
            ids |= st.fillable
        if not ids:
            return
        nodes = st.nodes
        st.budget_blocked = False
        if len(ids) == 1:  # most events touch one step: nothing to sort
            (only,) = ids
            order = [nodes[only]] if only in nodes else []
        else:
            order = sorted((nodes[x] for x in ids if x in nodes), key=lambda n: n.index)
        for n in order:
            if n.status is not StepStatus.RUNNING:
                continue
            if isinstance(n.spec, LoopStep):
                self._progress_loop(n)
                continue
            if capacity > 0 and n.pending:
                capacity = self._fill(n, capacity)
            self._maybe_complete(n)

    def _fill(self, n: NodeState, capacity: int) -> int:
        st = self.st
        spec = n.spec
        per_step = spec.max_concurrency
        glimit = None
        if n.group is not None:
            gn = st.nodes.get(n.group)
            glimit = gn.spec.max_concurrency if gn is not None else None
        first = isinstance(spec, BroadcastStep) and spec.aggregate == "first"
        while n.pending and capacity > 0:
            if per_step and n.n_running >= per_step:
                break
            if glimit and st.group_running.get(n.group or "", 0) >= glimit:
                break
            if first and n.done_count:
                break
            key = n.pending[0]
            u = n.units[key]
            if u.not_before is not None and u.not_before > self.now:
                n.pending.popleft()
                n.delayed.add(key)
                continue
            reserve_t, reserve_c = 0, 0.0
            if n.budgeted and (st.max_tokens or st.max_cost is not None):
                ok, reserve_t, reserve_c = self._admit()
                if not ok:
                    st.budget_blocked = True
                    break
            self._start_attempt(n, u, reserve_t, reserve_c)
            capacity -= 1
        if not n.pending:
            st.fillable.discard(n.id)
        return capacity

    def _attempt_timeout(self, n: NodeState) -> float | None:
        spec = n.spec
        if spec.kind == "human":  # a person's answer has its own timeout (with its default)
            return None
        if isinstance(spec, BroadcastStep) and spec.agent_timeout:
            return spec.agent_timeout
        return spec.timeout

    def _start_attempt(self, n: NodeState, u: UnitState, reserve: int = 0, reserve_cost: float = 0.0) -> None:
        st = self.st
        attempt = st.attempt_counter.get((n.id, u.key), 0) + 1
        timeout = self._attempt_timeout(n)
        kw: dict[str, Any] = {"kind": n.spec.kind}
        if u.vars:
            kw["vars"] = u.vars
        if timeout:
            kw["timeout_at"] = self.now + timeout
        if reserve:
            kw["reserve"] = reserve
        p = AttemptStarted(**kw)
        if reserve_cost:
            p = AttemptStarted(**kw, extra={"reserve_cost": reserve_cost})
        self.ev(
            E.ATTEMPT_STARTED, f"Attempt {attempt} of {_label(n, u.key)} started", n.id, u.key, attempt, p
        )
        if timeout:
            self.commands.append(StartTimer(f"attempt:{n.id}[{u.key}]#{attempt}", self.now + timeout))
        self.commands.append(Execute(n.id, u.key, attempt, u.vars))

    def _maybe_complete(self, n: NodeState) -> None:
        if n.status is not StepStatus.RUNNING:
            return
        spec = n.spec
        st = self.st
        if isinstance(spec, BroadcastStep) and spec.aggregate == "first" and n.done_count:
            units = list(n.units.values())
            for u in units:
                if u.status is UnitStatus.RUNNING:
                    self.commands.append(Cancel(n.id, u.key, "another agent answered first"))
            winner = min((u for u in units if u.status is UnitStatus.COMPLETED), key=lambda u: u.order or 0)
            self.ev(
                E.STEP_COMPLETED,
                f"Step {n.short_id} completed (first answer from {winner.vars.get('agent')})",
                n.id,
                payload=StepCompleted(
                    output=winner.output, aggregate={"strategy": "first", "agent": winner.vars.get("agent")}
                ),
            )
            return
        if n.n_final < len(n.units) or (not n.units and n.pending):
            return
        units = list(n.units.values())
        failed = [u for u in units if u.status in _UNIT_NOT_COMPLETED]
        if isinstance(spec, BroadcastStep):
            responses = [
                Response(u.vars.get("agent", u.key), u.output, u.order or 0)
                for u in units
                if u.status is UnitStatus.COMPLETED
            ]
            if failed and spec.min_responses is None and spec.aggregate == "all":
                f0 = failed[0]
                self.ev(
                    E.STEP_FAILED,
                    f"Step {n.short_id} failed: agent {f0.key} failed: {f0.error}",
                    n.id,
                    payload=StepFailedP(error=f"agent {f0.key}: {f0.error}"),
                )
                return
            try:
                weights = spec.weights or {
                    a: st.flow.agents[a].weight for a in spec.agents if a in st.flow.agents
                }
                agg = aggregate(
                    spec.aggregate,
                    responses,
                    weights=weights,
                    threshold=spec.consensus_threshold,
                    fallback=spec.fallback,
                    min_responses=spec.min_responses,
                    total_agents=len(spec.agents),
                )
            except AggregationError as exc:
                self.ev(
                    E.STEP_FAILED,
                    f"Step {n.short_id} failed: {exc}",
                    n.id,
                    payload=StepFailedP(error=str(exc)),
                )
                return
            self.ev(
                E.STEP_COMPLETED,
                f"Step {n.short_id} completed ({spec.aggregate} of {len(responses)} answers)",
                n.id,
                payload=StepCompleted(output=agg["output"], aggregate=agg),
            )
            return
        if not units:
            return
        multi = len(units) != 1 or units[0].key != ""
        output = [u.output for u in units] if multi else units[0].output
        if failed:
            f0 = failed[0]
            err = f0.error or "failed"
            self.ev(
                E.STEP_FAILED,
                f"Step {_label(n, f0.key) if multi else n.short_id} failed: {err}",
                n.id,
                payload=StepFailedP(error=err, output=output if multi else None),
            )
            return
        self.ev(E.STEP_COMPLETED, f"Step {n.short_id} completed", n.id, payload=StepCompleted(output=output))

    def _progress_loop(self, n: NodeState) -> None:
        st = self.st
        spec = n.spec
        assert isinstance(spec, LoopStep)
        body = n.body
        if not body:
            return
        nodes = [st.nodes[b] for b in body]
        if any(x.status in (StepStatus.PENDING, StepStatus.RUNNING) for x in nodes):
            return
        bad = next((x for x in nodes if x.status is StepStatus.FAILED), None)
        if bad is not None and bad.fails_run:
            self.ev(
                E.STEP_FAILED,
                f"Loop {n.short_id} failed in iteration {n.iteration}: {bad.error}",
                n.id,
                payload=StepFailedP(error=f"{bad.short_id}: {bad.error}"),
            )
            return
        last = nodes[-1]
        try:
            done = bool(evaluate(spec.until, template_context(st, last.id)))
        except TemplateError as exc:
            self.ev(
                E.STEP_FAILED,
                f"Loop {n.short_id}: until failed: {exc.message}",
                n.id,
                payload=StepFailedP(error=exc.message),
            )
            return
        if done or n.iteration >= spec.max_iterations:
            why = "condition met" if done else f"max_iterations {spec.max_iterations} reached"
            self.ev(
                E.STEP_COMPLETED,
                f"Loop {n.short_id} completed after {n.iteration} iteration(s): {why}",
                n.id,
                payload=StepCompleted(output=last.output, iterations=n.iteration, until_met=done),
            )
            return
        self.ev(
            E.LOOP_ITERATION,
            f"Loop {n.short_id}: iteration {n.iteration + 1}",
            n.id,
            payload=LoopIteration(iteration=n.iteration + 1),
        )


def decide(st: RunState, inp: Input | NewEvent, now: float) -> Decision:
    """Fold ``inp`` into ``st`` and return what follows: new events (already folded) and
    commands for the runner, in order."""
    d = _Decider(st, now)
    d.take(inp)  # type: ignore[arg-type]
    d.settle()
    return Decision(d.events, d.commands)


def plan(st: RunState, now: float) -> list[NewEvent | Command]:
    """What should happen next given the state alone (a folded log): [] for a finished run."""
    d = _Decider(st, now)
    d.settle()
    return [*d.events, *d.commands]
