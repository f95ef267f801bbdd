"""The pure scheduler: every orchestration decision lives here.

``decide(state, event, now)`` folds one event into the state and returns the follow-up
events and commands. It does no I/O and reads no clock or randomness (``now`` is passed in;
retry jitter is derived from a hash of run, step and attempt). The async runner appends
the returned events, then executes the commands.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass, field
from typing import Any

from llmflow.engine.aggregate import AggregationError, Response, aggregate
from llmflow.engine.context import template_context
from llmflow.engine.events import EventType as E
from llmflow.engine.events import NewEvent
from llmflow.engine.retry import backoff_delay, should_retry
from llmflow.engine.state import NodeState, RunState, UnitState, apply, loop_body_ids
from llmflow.engine.states import RunStatus, StepStatus
from llmflow.errors import TemplateError
from llmflow.model.expressions import evaluate
from llmflow.model.spec import BroadcastStep, LoopStep, ParallelStep, RouteStep

_DONE = (StepStatus.COMPLETED, StepStatus.SKIPPED, StepStatus.CANCELED)


@dataclass(frozen=True)
class Execute:
    node_id: str
    unit: str
    attempt: int
    vars: dict[str, Any] = field(default_factory=dict)
    delay: float = 0.0
    timeout: float | None = None


@dataclass(frozen=True)
class Cancel:
    node_id: str
    unit: str
    reason: str


Command = Execute | Cancel


def fails_run(st: RunState, n: NodeState) -> bool:
    if n.status != StepStatus.FAILED:
        return False
    if n.spec.on_error == "continue":
        return False
    if "on_error" not in n.spec.model_fields_set and st.flow.options.on_error == "continue":
        return False
    return True


def _jitter(run_id: str, node: str, unit: str, attempt: int) -> float:
    h = hashlib.blake2b(f"{run_id}/{node}/{unit}/{attempt}".encode(), digest_size=4).digest()
    return int.from_bytes(h, "big") / 2**32


def _unit_key(parts: list[str]) -> str:
    return "|".join(p for p in parts if p)


def compute_units(st: RunState, n: NodeState) -> list[dict[str, Any]]:
    """The units of a step: for_each items x matrix variants x broadcast agents."""
    spec = n.spec
    ctx = template_context(st, n.id)
    items: list[tuple[str, dict[str, Any]]] = [("", {})]
    if spec.for_each is not None:
        seq = evaluate(spec.for_each, ctx) if isinstance(spec.for_each, str) else spec.for_each
        if isinstance(seq, dict):
            seq = list(seq.items())
        if not isinstance(seq, list | tuple):
            raise TemplateError(f"for_each of step '{n.short_id}' must give a list, got {type(seq).__name__}")
        items = [(str(i), {"item": v, "index": i}) for i, v in enumerate(seq)]
    variants: list[tuple[str, dict[str, Any]]] = [("", {})]
    if spec.matrix:
        axes: list[tuple[str, list[Any]]] = []
        for k, v in spec.matrix.items():
            vals = evaluate(v, ctx) if isinstance(v, str) else v
            if not isinstance(vals, list | tuple):
                vals = [vals]
            axes.append((k, list(vals)))
        variants = []
        for combo in itertools.product(*[a[1] for a in axes]):
            m = {axes[i][0]: combo[i] for i in range(len(axes))}
            variants.append((",".join(f"{k}={_short(v)}" for k, v in m.items()), {"matrix": m}))
    agents: list[tuple[str, dict[str, Any]]] = [("", {})]
    if isinstance(spec, BroadcastStep):
        agents = [(a, {"agent": a}) for a in spec.agents]
    units = []
    for (ik, iv), (mk, mv), (ak, av) in itertools.product(items, variants, agents):
        units.append({"key": _unit_key([ik, mk, ak]), "vars": {**iv, **mv, **av}})
    return units


def _short(v: Any) -> str:
    s = str(v)
    return s if len(s) <= 40 else s[:37] + "..."


def _needs_state(st: RunState, n: NodeState) -> str:
    """'wait' | 'ready' | 'skip:<reason>'."""
    if not n.needs:
        return "ready"
    all_skipped = True
    for d in n.needs:
        dn = st.nodes.get(d)
        if dn is None:
            continue
        if dn.status in (StepStatus.PENDING, StepStatus.RUNNING) or (dn.status == StepStatus.STALE and dn.rerun_pending):
            return "wait"
        if dn.status == StepStatus.FAILED and fails_run(st, dn):
            return "wait"
        if isinstance(dn.spec, RouteStep) and dn.status == StepStatus.COMPLETED:
            selected = (dn.output or {}).get("selected", [])
            if n.short_id not in selected and n.short_id in dn.spec.targets():
                return f"skip:not selected by route '{dn.short_id}'"
        if dn.status != StepStatus.SKIPPED:
            all_skipped = False
    if all_skipped:
        return "skip:all of its needs were skipped"
    return "ready"


class _Planner:
    def __init__(self, st: RunState, now: float) -> None:
        self.st = st
        self.now = now
        self.out: list[NewEvent | Command] = []

    def emit(self, ev: NewEvent) -> None:
        apply(self.st, ev)
        self.out.append(ev)

    # -- run-level ------------------------------------------------------------------------
    def plan(self) -> list[NewEvent | Command]:
        st = self.st
        if st.finished or not st.started:
            return self.out
        failing = next((n for n in st.nodes.values() if fails_run(st, n)), None)
        budget = self._budget_exceeded()
        if st.cancel_requested or failing is not None or budget:
            self._wind_down(failing, budget)
            return self.out
        if st.status != RunStatus.PAUSED:
            self._schedule()
        else:
            self._progress_running_only()
        self._maybe_finish()
        return self.out

    def _budget_exceeded(self) -> str | None:
        o = self.st.flow.options
        max_tokens = self.st.options.get("max_tokens", o.max_tokens)
        max_cost = self.st.options.get("max_cost", o.max_cost)
        used = self.st.tokens_in + self.st.tokens_out
        if max_tokens and used > max_tokens:
            return f"token budget exceeded: used {used} tokens, max_tokens is {max_tokens}"
        if max_cost is not None and self.st.cost > max_cost:
            return f"cost budget exceeded: spent ${self.st.cost:.4f}, max_cost is ${max_cost:.4f}"
        return None

    def _wind_down(self, failing: NodeState | None, budget: str | None) -> None:
        st = self.st
        running = [(n, u) for n in st.nodes.values() for u in n.units.values() if u.status == "RUNNING"]
        if running:
            if st.cancel_requested:
                reason = "run canceled"
            elif budget:
                reason = budget
            else:
                reason = f"step '{failing.short_id}' failed" if failing else "stopping"
            for n, u in running:
                self.out.append(Cancel(n.id, u.key, reason))
            return
        for n in st.nodes.values():
            if n.status in (StepStatus.PENDING, StepStatus.RUNNING) or (n.status == StepStatus.STALE and n.rerun_pending):
                self.emit(NewEvent(E.STEP_CANCELED, f"Step {n.short_id} canceled", n.id, payload={"reason": "run canceled" if st.cancel_requested else "run failed"}))
        if st.cancel_requested:
            self.emit(NewEvent(E.RUN_CANCELED, "Run canceled"))
        else:
            if budget:
                err = budget
            else:
                err = f"step '{failing.short_id}' failed: {failing.error}" if failing else "failed"
            self.emit(NewEvent(E.WORKFLOW_FAILED, f"Workflow failed: {err}", payload={"error": err}))
            self.emit(NewEvent(E.RUN_FAILED, f"Run failed: {err}", payload={"error": err, "step_id": failing.short_id if failing else None}))

    def _maybe_finish(self) -> None:
        st = self.st
        if st.finished:
            return
        for n in st.nodes.values():
            if n.status in (StepStatus.PENDING, StepStatus.RUNNING):
                return
            if n.status == StepStatus.STALE and n.rerun_pending:
                return
            if fails_run(st, n):
                return  # the next pass winds the run down as FAILED
        try:
            outputs = self._outputs()
        except TemplateError as exc:
            self.emit(NewEvent(E.WORKFLOW_FAILED, f"Workflow failed: {exc.message}", payload={"error": exc.message}))
            self.emit(NewEvent(E.RUN_FAILED, f"Run failed: {exc.message}", payload={"error": exc.message}))
            return
        steps = sum(1 for n in st.nodes.values() if n.scope is None)
        done = sum(1 for n in st.nodes.values() if n.scope is None and n.status == StepStatus.COMPLETED)
        self.emit(NewEvent(E.WORKFLOW_COMPLETED, f"Workflow completed: {done} of {steps} steps completed", payload={"steps": steps, "completed": done}))
        self.emit(NewEvent(E.RUN_COMPLETED, "Run completed", payload={"outputs": outputs}))

    def _outputs(self) -> dict[str, Any]:
        st = self.st
        spec = st.flow.outputs
        if spec:
            ctx = template_context(st, None)
            from llmflow.model.expressions import render_value

            return {k: render_value(v, ctx) for k, v in spec.items()}
        top = [n for n in st.nodes.values() if n.scope is None and n.group is None]
        last = next((n for n in reversed(top) if n.status in (StepStatus.COMPLETED, StepStatus.STALE)), None)
        return {"result": last.output if last else None}

    # -- steps ----------------------------------------------------------------------------
    def _schedule(self) -> None:
        st = self.st
        capacity = int(st.options.get("max_concurrency") or st.flow.options.max_concurrency) - st.running_units()
        group_running: dict[str, int] = {}
        for n in st.nodes.values():
            if n.group:
                group_running[n.group] = group_running.get(n.group, 0) + sum(1 for u in n.units.values() if u.running)
        for n in list(st.nodes.values()):
            if n.status == StepStatus.PENDING or (n.status == StepStatus.STALE and n.rerun_pending):
                readiness = _needs_state(st, n)
                if readiness == "wait":
                    continue
                if readiness.startswith("skip:"):
                    self._skip(n, readiness[5:])
                    continue
                self._start(n)
            if n.status == StepStatus.RUNNING:
                capacity = self._progress(n, capacity, group_running)

    def _progress_running_only(self) -> None:
        for n in list(self.st.nodes.values()):
            if n.status == StepStatus.RUNNING:
                self._progress(n, 0, {})

    def _skip(self, n: NodeState, reason: str) -> None:
        self.emit(NewEvent(E.STEP_SKIPPED, f"Step {n.short_id} skipped: {reason}", n.id, payload={"reason": reason}))

    def _fail_step(self, n: NodeState, error: str, started: bool) -> None:
        if not started:
            self.emit(NewEvent(E.STEP_STARTED, f"Step {n.short_id} started", n.id, payload={"kind": n.spec.kind, "units": []}))
        self.emit(NewEvent(E.STEP_FAILED, f"Step {n.short_id} failed: {error}", n.id, payload={"error": error}))

    def _start(self, n: NodeState) -> None:
        st = self.st
        spec = n.spec
        if spec.when is not None:
            try:
                ok = bool(evaluate(spec.when, template_context(st, n.id)))
            except TemplateError as exc:
                self._fail_step(n, f"condition failed to evaluate: {exc.message}", False)
                return
            if not ok:
                self._skip(n, f"condition {spec.when!r} is false")
                return
        desc = spec.description or spec.kind
        if isinstance(spec, ParallelStep):
            self.emit(NewEvent(E.STEP_STARTED, f"Step {n.short_id} - {desc}", n.id, payload={"kind": spec.kind, "units": []}))
            out = {c.id: st.nodes[c.id].output for c in spec.steps}
            self.emit(NewEvent(E.STEP_COMPLETED, f"Step {n.short_id} completed (barrier of {len(out)})", n.id, payload={"output": out}))
            return
        if isinstance(spec, RouteStep):
            try:
                ctx = template_context(st, n.id)
                selected, matched = list(spec.default), "default"
                for i, r in enumerate(spec.routes):
                    if evaluate(r.when, ctx):
                        selected, matched = list(r.to), i
                        break
            except TemplateError as exc:
                self._fail_step(n, f"route condition failed: {exc.message}", False)
                return
            self.emit(NewEvent(E.STEP_STARTED, f"Step {n.short_id} - route", n.id, payload={"kind": spec.kind, "units": []}))
            self.emit(NewEvent(E.STEP_COMPLETED, f"Route {n.short_id} -> {', '.join(selected) or '(nothing)'}", n.id, payload={"output": {"selected": selected, "matched": matched}}))
            return
        if isinstance(spec, LoopStep):
            self.emit(NewEvent(E.STEP_STARTED, f"Step {n.short_id} - loop (iteration 1)", n.id, payload={"kind": spec.kind, "units": [], "iteration": 1}))
            return
        try:
            units = compute_units(st, n)
        except TemplateError as exc:
            self._fail_step(n, exc.message, False)
            return
        self.emit(NewEvent(E.STEP_STARTED, f"Step {n.short_id} - {desc}", n.id, payload={"kind": spec.kind, "units": units}))
        if not units:
            self.emit(NewEvent(E.STEP_COMPLETED, f"Step {n.short_id} completed (no items)", n.id, payload={"output": []}))

    def _progress(self, n: NodeState, capacity: int, group_running: dict[str, int]) -> int:
        st = self.st
        spec = n.spec
        if isinstance(spec, LoopStep):
            self._progress_loop(n)
            return capacity
        retry = spec.effective_retry()
        # retries
        for u in n.units.values():
            if u.status == "FAILED" and u.attempts and u.attempts[-1].status == "FAILED":
                a = u.attempts[-1]
                if should_retry(retry, u.failures, a.error_kind or "error", a.retryable):
                    delay = backoff_delay(retry, u.failures, _jitter(st.run_id, n.id, u.key, a.n), a.retry_after)
                    self.emit(NewEvent(E.STEP_RETRYING, f"Retrying {n.short_id} in {delay:.1f}s (attempt {a.n + 1} of {retry.attempts}): {a.error}", n.id, u.key or None, a.n, {"delay": delay, "error": a.error}))
        # start pending units
        per_step = spec.max_concurrency
        running_here = sum(1 for u in n.units.values() if u.running)
        gspec = st.nodes[n.group].spec if n.group and n.group in st.nodes else None
        glimit = gspec.max_concurrency if gspec is not None else None
        if st.status != RunStatus.PAUSED and not self._first_done(n):
            for u in n.units.values():
                if u.status != "PENDING":
                    continue
                if capacity <= 0 or (per_step and running_here >= per_step):
                    break
                if glimit and group_running.get(n.group or "", 0) >= glimit:
                    break
                self._start_attempt(n, u)
                capacity -= 1
                running_here += 1
                if n.group:
                    group_running[n.group] = group_running.get(n.group, 0) + 1
        self._maybe_complete(n)
        return capacity

    def _start_attempt(self, n: NodeState, u: UnitState) -> None:
        st = self.st
        attempt = st.attempt_counter.get((n.id, u.key), 0) + 1
        delay = 0.0
        if u.attempts and u.attempts[-1].status == "FAILED":
            prev = u.attempts[-1]
            delay = backoff_delay(n.spec.effective_retry(), u.failures, _jitter(st.run_id, n.id, u.key, prev.n), prev.retry_after)
        timeout = n.spec.timeout
        if isinstance(n.spec, BroadcastStep) and n.spec.agent_timeout:
            timeout = n.spec.agent_timeout
        payload: dict[str, Any] = {"kind": n.spec.kind}
        if u.vars:
            payload["vars"] = u.vars
        label = f"{n.short_id}[{u.key}]" if u.key else n.short_id
        self.emit(NewEvent(E.ATTEMPT_STARTED, f"Attempt {attempt} of {label} started", n.id, u.key or None, attempt, payload))
        self.out.append(Execute(n.id, u.key, attempt, u.vars, delay, timeout))

    def _first_done(self, n: NodeState) -> bool:
        return isinstance(n.spec, BroadcastStep) and n.spec.aggregate == "first" and any(u.status == "COMPLETED" for u in n.units.values())

    def _unit_final(self, n: NodeState, u: UnitState) -> bool:
        if u.status in ("COMPLETED", "CANCELED"):
            return True
        if u.status == "FAILED":
            a = u.attempts[-1] if u.attempts else None
            return a is None or not should_retry(n.spec.effective_retry(), u.failures, a.error_kind or "error", a.retryable)
        return False

    def _maybe_complete(self, n: NodeState) -> None:
        if n.status != StepStatus.RUNNING:
            return
        units = list(n.units.values())
        spec = n.spec
        if self._first_done(n):
            for u in units:
                if u.running:
                    self.out.append(Cancel(n.id, u.key, "another agent answered first"))
            winner = min((u for u in units if u.status == "COMPLETED"), key=lambda u: u.order or 0)
            self.emit(NewEvent(E.STEP_COMPLETED, f"Step {n.short_id} completed (first answer from {winner.vars.get('agent')})", n.id, payload={"output": winner.output, "aggregate": {"strategy": "first", "agent": winner.vars.get("agent")}}))
            return
        if not all(self._unit_final(n, u) for u in units):
            return
        failed = [u for u in units if u.status in ("FAILED", "CANCELED")]
        if isinstance(spec, BroadcastStep):
            responses = [Response(u.vars.get("agent", u.key), u.output, u.order or 0) for u in units if u.status == "COMPLETED"]
            if failed and spec.min_responses is None and spec.aggregate == "all":
                self.emit(NewEvent(E.STEP_FAILED, f"Step {n.short_id} failed: agent {failed[0].key} failed: {failed[0].error}", n.id, payload={"error": f"agent {failed[0].key}: {failed[0].error}"}))
                return
            try:
                weights = spec.weights or {a: self.st.flow.agents[a].weight for a in spec.agents if a in self.st.flow.agents}
                agg = aggregate(spec.aggregate, responses, weights=weights, threshold=spec.consensus_threshold, fallback=spec.fallback, min_responses=spec.min_responses, total_agents=len(spec.agents))
            except AggregationError as exc:
                self.emit(NewEvent(E.STEP_FAILED, f"Step {n.short_id} failed: {exc}", n.id, payload={"error": str(exc)}))
                return
            self.emit(NewEvent(E.STEP_COMPLETED, f"Step {n.short_id} completed ({spec.aggregate} of {len(responses)} answers)", n.id, payload={"output": agg["output"], "aggregate": agg}))
            return
        multi = len(units) != 1 or units[0].key != ""
        output = [u.output for u in units] if multi else units[0].output
        if failed:
            err = failed[0].error or "failed"
            label = f"{n.short_id}[{failed[0].key}]" if multi else n.short_id
            self.emit(NewEvent(E.STEP_FAILED, f"Step {label} failed: {err}", n.id, payload={"error": err, "output": output if multi else None}))
            return
        self.emit(NewEvent(E.STEP_COMPLETED, f"Step {n.short_id} completed", n.id, payload={"output": output}))

    def _progress_loop(self, n: NodeState) -> None:
        st = self.st
        spec = n.spec
        assert isinstance(spec, LoopStep)
        body = loop_body_ids(st, n.id, n.iteration)
        if not body:
            return
        nodes = [st.nodes[b] for b in body]
        if any(x.status in (StepStatus.PENDING, StepStatus.RUNNING) for x in nodes):
            return
        if any(x.status == StepStatus.FAILED for x in nodes):
            bad = next(x for x in nodes if x.status == StepStatus.FAILED)
            if fails_run(st, bad):
                self.emit(NewEvent(E.STEP_FAILED, f"Loop {n.short_id} failed in iteration {n.iteration}: {bad.error}", n.id, payload={"error": f"{bad.short_id}: {bad.error}"}))
                return
        last = nodes[-1]
        try:
            done = bool(evaluate(spec.until, template_context(st, last.id)))
        except TemplateError as exc:
            self.emit(NewEvent(E.STEP_FAILED, f"Loop {n.short_id}: until failed: {exc.message}", n.id, payload={"error": exc.message}))
            return
        if done or n.iteration >= spec.max_iterations:
            why = "condition met" if done else f"max_iterations {spec.max_iterations} reached"
            self.emit(NewEvent(E.STEP_COMPLETED, f"Loop {n.short_id} completed after {n.iteration} iteration(s): {why}", n.id, payload={"output": last.output, "iterations": n.iteration, "until_met": done}))
            return
        self.emit(NewEvent("LOOP_ITERATION", f"Loop {n.short_id}: iteration {n.iteration + 1}", n.id, payload={"iteration": n.iteration + 1}))


def plan(st: RunState, now: float) -> list[NewEvent | Command]:
    """Everything that should happen next, given the state. Emitted events are already
    applied to ``st`` when this returns."""
    out: list[NewEvent | Command] = []
    for _ in range(10_000):
        p = _Planner(st, now)
        step = p.plan()
        out.extend(step)
        if not any(isinstance(x, NewEvent) for x in step):
            break
    return out


def decide(st: RunState, event: NewEvent, now: float) -> tuple[RunState, list[NewEvent | Command]]:
    """Fold ``event`` into ``st`` and return what follows: new events (already applied) and
    commands for the runner, in order."""
    apply(st, event)
    return st, plan(st, now)

