"""Controlling runs: cancel, pause, resume, answer and directives; re-running a step in
place; forking a run from one step.

A control goes to the runner when this process executes the run, into the store's mailbox
when another live process does, and otherwise is decided right here on the run's folded
state (:func:`llmflow.engine.scheduler.decide`) and its events recorded."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llmflow.engine.events import EventType as E
from llmflow.engine.events import NewEvent
from llmflow.engine.inputs import (
    CancelRequested,
    FailRequested,
    HumanAnswered,
    PauseRequested,
    RerunRequested,
    ResumeRequested,
)
from llmflow.engine.payloads import RunFailed, StepCompleted, StepStarted
from llmflow.engine.scheduler import decide
from llmflow.engine.states import RUN_ACTIVE, RUN_TERMINAL, RunStatus, StepStatus
from llmflow.errors import LlmflowError, RunStateError
from llmflow.model.graph import build_graph
from llmflow.model.loader import LoadedFlow
from llmflow.runtime.options import RunRequest
from llmflow.runtime.ownership import owned_live

if TYPE_CHECKING:
    from llmflow.engine.events import Event
    from llmflow.runtime.service import Runtime
    from llmflow.store.base import RunRecord


def _refuse(rec: RunRecord, action: str) -> None:
    """Why ``action`` cannot apply to the run as it is, raised as a RunStateError."""
    run_id = rec.id
    if action in ("cancel", "pause", "resume") and rec.status in RUN_TERMINAL:
        verb = {"pause": "paused", "resume": "resumed"}.get(action, action)
        raise RunStateError(
            f"run {run_id} is {rec.status}; it cannot be {verb}"
            if action != "cancel"
            else f"run {run_id} is {rec.status}; nothing to cancel"
        )
    if action == "pause" and rec.status == RunStatus.PAUSED:
        raise RunStateError(f"run {run_id} is already paused")
    if action == "resume" and rec.status != RunStatus.PAUSED:
        raise RunStateError(f"run {run_id} is {rec.status}; only a paused run can be resumed")
    if action == "answer" and rec.status in RUN_TERMINAL:
        raise RunStateError(
            f"run {run_id} is {rec.status}; it has no open question to answer",
            hint=f"see its log with `llmflow runs events {run_id}`",
        )


def control(rt: Runtime, run_id: str, action: str, payload: dict[str, Any] | None = None) -> str:
    """cancel | pause | resume | answer | directive. Returns what happened, in words."""
    payload = payload or {}
    rec = rt.get(run_id)
    driver = rt.active.get(run_id)
    _refuse(rec, action)
    if driver is not None:
        driver.control(action, payload)
        return f"{action} sent to the running run"
    now = rt.clock.now()
    if owned_live(rec, now):
        rt.store.put_control(run_id, action, payload, now)
        return f"{action} requested; the process running it will act within a second"
    # nobody executes it: decide on its folded state and record the outcome directly
    inp: Any = None
    if action == "cancel":
        inp = CancelRequested(payload.get("reason"), {k: v for k, v in payload.items() if k != "reason"})
    elif action == "pause":
        inp = PauseRequested(dict(payload))
    elif action == "resume":
        inp = ResumeRequested(dict(payload))
    elif action == "answer":
        st = rt.state_of(rec)
        rid = payload.get("request_id")
        if st.open_requests and (rid is None or rid in st.open_requests):
            d = decide(st, HumanAnswered(rid, payload.get("answer")), now)
            rt.record(run_id, d.events)
            return "answered; the run continues" + (" (re-queued)" if st.status == RunStatus.QUEUED else "")
        if rid is not None and rid in st.human_answers:
            raise RunStateError(f"request {rid!r} of run {run_id} was answered already")
    if inp is None:
        rt.store.put_control(run_id, action, payload, now)
        return f"{action} recorded; it is delivered when the run continues"
    d = decide(rt.state_of(rec), inp, now)
    rt.record(run_id, d.events)
    return {"cancel": "canceled", "pause": "paused", "resume": "re-queued"}[action]


def fail_run(rt: Runtime, run_id: str, error: str) -> list[Event]:
    """Record that a run this process claimed cannot be executed (``error``: why), so it
    leaves the queue, and give up its lease. Decided on the run's folded state like any other
    failure (``FailRequested``: attempts left running end canceled, unfinished steps
    canceled, WORKFLOW_FAILED, RUN_FAILED); when the state cannot be built either (its flow no
    longer loads), only RUN_FAILED is recorded. Returns the events stored (none when the run
    had already ended). Synchronous store calls: run it through ``rt.io``."""
    stored: list[Event] = []
    rec = rt.store.get_run(run_id)
    if rec is not None and rec.status in RUN_ACTIVE:
        try:
            events = decide(rt.state_of(rec), FailRequested(error), rt.clock.now()).events
        except LlmflowError:
            events = [NewEvent(E.RUN_FAILED, f"Run failed: {error}", payload=RunFailed(error=error))]  # type: ignore[call-arg]  # decorator-made dataclass
        stored = rt.store.append(run_id, events, rt.clock.now())
    rt.store.release(run_id, rt.owner)
    return stored


def pending_requests(rt: Runtime, run_id: str) -> dict[str, dict[str, Any]]:
    """The run's open human-input requests: request id -> the question."""
    st = rt.state_of(rt.get(run_id))
    return {rid: st.human_requests.get(rid) or {} for rid in st.open_requests}


def request_rerun(
    rt: Runtime, run_id: str, step_id: str, *, unit: str | None = None, downstream: bool = False
) -> list[str]:
    """Record a re-run of one step (or one unit of it) inside the run; mark dependents
    STALE (and due to run again with ``downstream``). Returns the stale step ids."""
    rec = rt.get(run_id)
    if owned_live(rec, rt.clock.now()) or run_id in rt.active:
        raise RunStateError(f"run {run_id} is running; re-run a step once it has finished or paused")
    flow = rt.run_flows.stored_flow(rec)
    st = rt.state_of(rec, flow)
    if step_id not in st.nodes:
        from llmflow.model.diagnostics import did_you_mean

        raise RunStateError(
            f"run {run_id} has no step {step_id!r}",
            hint=did_you_mean(step_id, list(st.nodes)) or f"steps: {', '.join(st.nodes)}",
        )
    n = st.nodes[step_id]
    if unit is not None and unit not in n.units:
        raise RunStateError(
            f"step {step_id!r} has no unit {unit!r}", hint=f"units: {', '.join(n.units) or '(none)'}"
        )
    if (
        n.status in (StepStatus.PENDING, StepStatus.RUNNING)
        and rec.status not in RUN_TERMINAL
        and rec.status != RunStatus.PAUSED
    ):
        raise RunStateError(f"step {step_id!r} has not finished yet")
    d = decide(st, RerunRequested(step_id, unit, downstream), rt.clock.now())
    rt.record(run_id, d.events)
    return build_graph(flow.steps).downstream(step_id)


def fork(rt: Runtime, run_id: str, from_step: str, request: RunRequest | None = None) -> RunRecord:
    """A new run of the same flow that reuses the recorded outputs of every step that
    does not depend on ``from_step`` and runs the rest."""
    rec = rt.get(run_id)
    flow = rt.run_flows.stored_flow(rec)  # secrets read again from this process's environment
    st = rt.state_of(rec, flow)
    g = build_graph(flow.steps)
    if from_step not in g.nodes:
        raise RunStateError(f"run {run_id} has no top-level step {from_step!r}")
    redo = {from_step, *g.downstream(from_step)}
    request = request or RunRequest.from_recorded(rec.options)
    request.metadata = {**request.metadata, "forked_from": run_id, "from_step": from_step}
    # the source run's spec record: its secrets stay stored as ${oc.env:...}, never as values
    new = rt.create_run(
        LoadedFlow(flow, None, rec.spec.get("source", "<fork>")),
        rec.inputs,
        request,
        coerce_strings=False,
        choices=rec.options.get("choices"),
        spec_record=rec.spec,
    )
    evs: list[NewEvent] = []
    for nid in g.order:
        n = st.nodes[nid]
        if nid in redo or n.status != StepStatus.COMPLETED:
            continue
        evs.append(
            NewEvent(
                E.STEP_STARTED,
                f"Step {nid} reused from run {run_id}",
                nid,
                payload=StepStarted(kind=n.spec.kind, units=[], reused_from=run_id),  # type: ignore[call-arg]  # decorator-made dataclass
            )
        )
        evs.append(
            NewEvent(
                E.STEP_COMPLETED,
                f"Step {nid} completed (reused output of run {run_id})",
                nid,
                payload=StepCompleted(output=n.output, reused_from=run_id),  # type: ignore[call-arg]
            )
        )
    if evs:
        rt.record(new.id, evs)
    return new
