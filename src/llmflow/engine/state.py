"""Run state = fold(events).

``apply`` folds one event in constant time (amortised): it updates the state in place
(callers own their state; nothing is deep-copied) and keeps the counters the scheduler
needs so that it never scans the whole run: units running (per run, step and parallel
group), units final per step, the budget reserved by running attempts, the steps not yet
finished, the steps whose failure fails the run, and two work lists - steps whose needs
changed (``check``) and steps one of whose units changed (``touched``). Every status change
goes through the transition tables of :mod:`llmflow.engine.states`; an illegal one raises.

Events that only inform (token chunks, heartbeats, tool calls) are not folded; ``LLM_DONE``
is, for usage and budget. Pure: no I/O, no clock (times come in the events).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from llmflow.engine.events import NOT_FOLDED, NewEvent
from llmflow.engine.events import EventType as E
from llmflow.engine.payloads import MISSING, Payload, decode
from llmflow.engine.states import (
    STEP_DONE,
    UNIT_TERMINAL,
    AttemptStatus,
    IllegalTransition,
    RunStatus,
    StepStatus,
    UnitStatus,
    check_attempt_transition,
    check_run_transition,
    check_step_transition,
    check_unit_transition,
)
from llmflow.model.graph import Graph, build_graph
from llmflow.model.spec import BroadcastStep, Flow, LoopStep, ParallelStep, RouteStep, StepSpec
from llmflow.model.template_bounds import bounded, bounded_value

# step kinds whose attempts spend tokens (they reserve budget before they start)
BUDGETED_KINDS = frozenset({"llm", "broadcast", "conductor"})


@dataclass(slots=True)
class AttemptState:
    n: int
    status: AttemptStatus = AttemptStatus.RUNNING
    output: Any = None
    error: str | None = None
    error_kind: str | None = None
    retryable: bool = False
    retry_after: float | None = None
    timeout_at: float | None = None
    reserve: int = 0  # tokens reserved against max_tokens while it runs
    reserve_cost: float = 0.0
    used: int = 0  # tokens its model calls used (LLM_DONE)
    cost: float = 0.0


@dataclass(slots=True)
class UnitState:
    key: str
    vars: dict[str, Any] = field(default_factory=dict)  # item / matrix / agent
    status: UnitStatus = UnitStatus.PENDING
    attempts: list[AttemptState] = field(default_factory=list)
    failures: int = 0  # failed attempts in the current generation (for the retry budget)
    output: Any = None
    error: str | None = None
    order: int | None = None  # completion order (broadcast "first")
    not_before: float | None = None  # retry backoff: may not start before this time
    asking: str | None = None  # the open human-input request its running attempt waits on

    @property
    def running(self) -> bool:
        return self.status is UnitStatus.RUNNING


@dataclass(slots=True)
class NodeState:
    """A schedulable node: a flow step, or a loop body step in one iteration."""

    id: str  # qualified id: "x" or "loop#2/x"
    spec: StepSpec
    needs: tuple[str, ...]
    group: str | None = None
    scope: str | None = None  # "loop#2" for loop bodies
    index: int = 0  # definition (insertion) order: the scheduler's tie-break
    dependents: list[str] = field(default_factory=list)
    loop: str | None = None  # the loop node of a body node
    status: StepStatus = StepStatus.PENDING
    units: dict[str, UnitState] = field(default_factory=dict)
    output: Any = None
    error: str | None = None
    reason: str | None = None  # why skipped / failed
    rerun_pending: bool = False  # STALE but will run again (--downstream)
    iteration: int = 0  # loops: current iteration
    body: list[str] = field(default_factory=list)  # loops: body node ids of the current iteration
    done_count: int = 0  # completion order counter for units
    n_running: int = 0
    n_final: int = 0  # units in a terminal status
    pending: deque[str] = field(default_factory=deque)  # PENDING units in start order
    delayed: set[str] = field(default_factory=set)  # PENDING units waiting for a retry timer
    fails_run: bool = True  # a failure of this step fails the run (no on_error: continue)
    budgeted: bool = False  # its attempts spend tokens
    # its template view (engine/context.py), built when first read and dropped by apply
    # whenever an event of this step is folded; never changed once built, so units keep the
    # view they were given
    view: dict[str, Any] | None = None

    @property
    def short_id(self) -> str:
        return self.id.rsplit("/", 1)[-1]

    @property
    def unfinished(self) -> bool:
        s = self.status
        return (
            s is StepStatus.PENDING
            or s is StepStatus.RUNNING
            or (s is StepStatus.STALE and self.rerun_pending)
        )


@dataclass
class RunState:
    run_id: str
    flow: Flow
    graph: Graph
    status: RunStatus = RunStatus.QUEUED
    inputs: dict[str, Any] = field(default_factory=dict)
    nodes: dict[str, NodeState] = field(default_factory=dict)
    attempt_counter: dict[tuple[str, str], int] = field(default_factory=dict)
    outputs: dict[str, Any] | None = None
    error: str | None = None
    cancel_requested: bool = False
    finished: bool = False
    tokens_in: int = 0
    tokens_out: int = 0
    cost: float = 0.0
    human_requests: dict[str, dict[str, Any]] = field(default_factory=dict)
    human_answers: dict[str, Any] = field(default_factory=dict)
    started: bool = False
    options: dict[str, Any] = field(default_factory=dict)
    deadline: float | None = None  # run timeout, absolute (recorded at RUN_STARTED / STEP_RERUN)
    rerun_requested: str | None = None  # a re-run in place waiting to be picked up (its label)
    # -- counters and work lists kept by apply (see the module docstring) --
    running: int = 0
    running_budgeted: int = 0
    reserved: int = 0
    reserved_cost: float = 0.0
    spent_attempts: int = 0  # ended attempts that used tokens (the estimate's sample)
    spent_tokens: int = 0
    spent_cost: float = 0.0
    group_running: dict[str, int] = field(default_factory=dict)
    unfinished: int = 0
    failing: list[str] = field(default_factory=list)
    open_requests: dict[str, tuple[str | None, str]] = field(default_factory=dict)  # rid -> (node, unit)
    check: set[str] = field(default_factory=set)
    touched: set[str] = field(default_factory=set)
    fillable: set[str] = field(default_factory=set)
    retry_candidates: list[tuple[str, str]] = field(default_factory=list)
    # -- transient (not folded from events): the process executing the run --
    executing: bool = False
    early_answers: list[tuple[str | None, Any]] = field(default_factory=list)
    cancels_sent: set[tuple[str, str, int]] = field(default_factory=set)
    budget_blocked: bool = False
    max_tokens: int | None = None
    max_cost: float | None = None
    evaluates: bool = False  # deciding may evaluate templates (FlowPlan.evaluates)
    # the views of the top-level steps by id (engine/context.py; each context gets a copy),
    # and the top-level steps changed since it was last brought up to date
    top_views: dict[str, Any] | None = None
    stale_views: set[str] = field(default_factory=set)

    def running_units(self) -> int:
        return self.running

    def node(self, node_id: str) -> NodeState:
        return self.nodes[node_id]

    def estimate(self) -> tuple[int | None, float | None]:
        """Tokens and cost an attempt of a budgeted step is expected to use: the average of
        the attempts that ended so far; None while nothing has been measured."""
        if not self.spent_attempts:
            return None, None
        n = self.spent_attempts
        return -(-self.spent_tokens // n), self.spent_cost / n


# -- building ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FlowPlan:
    """What every run of one flow shares: the graph and each node's dependents."""

    flow: Flow
    graph: Graph
    dependents: dict[str, tuple[str, ...]]
    evaluates: bool = False  # deciding may evaluate the flow's templates (see _evaluates)
    fails_run: dict[str, bool] = field(default_factory=dict)  # node id -> _fails_run (costly: pydantic)


def _evaluates(flow: Flow) -> bool:
    """Whether deciding may evaluate a template of this flow that could run long (up to its
    time cap): its ``when`` conditions, routes, loop ``until``, for_each / matrix expressions
    and ``outputs``. Those that only read and compare values (``bounded``, the usual
    ``steps.a.output | trim != 'x'`` and ``{{ steps.b.output }}``) do not count: the runner
    evaluates them on the event loop instead of in a worker thread."""
    if not bounded_value(flow.outputs):
        return True
    for s in flow.all_steps():
        conditions = [s.when] if s.when is not None else []
        if isinstance(s, RouteStep):
            conditions += [r.when for r in s.routes]
        if isinstance(s, LoopStep):
            conditions.append(s.until)
        if isinstance(s.for_each, str):
            conditions.append(s.for_each)
        if s.matrix:
            conditions += [v for v in s.matrix.values() if isinstance(v, str)]
        if any(not bounded(c, condition=True) for c in conditions):
            return True
    return False


def plan_flow(flow: Flow) -> FlowPlan:
    g = build_graph(flow.steps)
    deps: dict[str, list[str]] = {nid: [] for nid in g.order}
    for nid in g.order:
        for d in g.nodes[nid].needs:
            if d in deps:
                deps[d].append(nid)
    fails = {nid: _fails_run(flow, g.nodes[nid].step) for nid in g.order}
    return FlowPlan(flow, g, {k: tuple(v) for k, v in deps.items()}, _evaluates(flow), fails)


def _fails_run(flow: Flow, spec: StepSpec) -> bool:
    if spec.on_error == "continue":
        return False
    if "on_error" not in spec.model_fields_set and flow.options.on_error == "continue":
        return False
    return True


def _new_node(
    st: RunState,
    nid: str,
    spec: StepSpec,
    needs: tuple[str, ...],
    group: str | None,
    scope: str | None = None,
    fails_run: bool | None = None,
) -> NodeState:
    n = NodeState(nid, spec, needs, group, scope, index=len(st.nodes))
    if scope is None:
        st.top_views = None
    n.fails_run = _fails_run(st.flow, spec) if fails_run is None else fails_run
    n.budgeted = spec.kind in BUDGETED_KINDS
    st.nodes[nid] = n
    st.unfinished += 1
    return n


def new_state(
    run_id: str,
    flow: Flow,
    inputs: dict[str, Any],
    options: dict[str, Any] | None = None,
    plan: FlowPlan | None = None,
) -> RunState:
    plan = plan if plan is not None and plan.flow is flow else plan_flow(flow)
    g = plan.graph
    st = RunState(run_id=run_id, flow=flow, graph=g, inputs=dict(inputs), options=dict(options or {}))
    fails = plan.fails_run
    for nid in g.order:
        gn = g.nodes[nid]
        n = _new_node(st, nid, gn.step, gn.needs, gn.group, None, fails.get(nid))
        n.dependents = list(plan.dependents.get(nid, ()))
    o = flow.options
    st.max_tokens = st.options.get("max_tokens", o.max_tokens)
    st.max_cost = st.options.get("max_cost", o.max_cost)
    st.evaluates = plan.evaluates
    st.check.update(g.order)
    return st


def add_loop_iteration(st: RunState, loop_id: str, iteration: int) -> None:
    """Create the body nodes of one loop iteration (ids ``loop#i/body``)."""
    loop = st.nodes[loop_id]
    spec = loop.spec
    assert isinstance(spec, LoopStep)
    body = build_graph(spec.steps)
    scope = f"{loop_id}#{iteration}"
    loop.iteration = iteration
    ids: list[str] = []
    for bid in body.order:
        bn = body.nodes[bid]
        needs = tuple(f"{scope}/{d}" for d in bn.needs)
        qid = f"{scope}/{bid}"
        ids.append(qid)
        if qid not in st.nodes:
            group = f"{scope}/{bn.group}" if bn.group else None
            n = _new_node(st, qid, bn.step, needs, group, scope)
            n.loop = loop_id
            st.check.add(qid)
    for qid in ids:
        for d in st.nodes[qid].needs:
            if d in st.nodes and qid not in st.nodes[d].dependents:
                st.nodes[d].dependents.append(qid)
    loop.body = ids


def loop_body_ids(st: RunState, loop_id: str, iteration: int) -> list[str]:
    loop = st.nodes[loop_id]
    if loop.iteration == iteration and loop.body:
        return list(loop.body)
    prefix = f"{loop_id}#{iteration}/"
    return [k for k in st.nodes if k.startswith(prefix)]


# -- status setters: the only places statuses change ---------------------------------------


def set_run_status(st: RunState, new: RunStatus) -> None:
    check_run_transition(st.status, new)
    st.status = new


def set_step_status(st: RunState, n: NodeState, new: StepStatus) -> None:
    old = n.status
    check_step_transition(old, new, n.id)
    was = n.unfinished
    n.status = new
    now = n.unfinished
    if was != now:
        st.unfinished += 1 if now else -1
    if n.fails_run:
        if new is StepStatus.FAILED and old is not StepStatus.FAILED:
            st.failing.append(n.id)
        elif old is StepStatus.FAILED and new is not StepStatus.FAILED and n.id in st.failing:
            st.failing.remove(n.id)
    if new in STEP_DONE or new is StepStatus.FAILED or new is StepStatus.STALE:
        st.check.update(n.dependents)
        if n.loop is not None:
            st.touched.add(n.loop)
    if new is StepStatus.PENDING or (new is StepStatus.STALE and n.rerun_pending):
        st.check.add(n.id)


def _set_rerun_pending(st: RunState, n: NodeState, value: bool) -> None:
    was = n.unfinished
    n.rerun_pending = value
    now = n.unfinished
    if was != now:
        st.unfinished += 1 if now else -1
    if value:
        st.check.add(n.id)


def set_unit_status(st: RunState, n: NodeState, u: UnitState, new: UnitStatus) -> None:
    """Keeps the running / final / pending counters in step."""
    old = u.status
    check_unit_transition(old, new, f"{n.id}[{u.key}]")
    if old is new:
        return
    u.status = new
    if old is UnitStatus.RUNNING:
        n.n_running -= 1
        st.running -= 1
        if n.budgeted:
            st.running_budgeted -= 1
        if n.group is not None:
            st.group_running[n.group] -= 1
    elif new is UnitStatus.RUNNING:
        n.n_running += 1
        st.running += 1
        if n.budgeted:
            st.running_budgeted += 1
        if n.group is not None:
            st.group_running[n.group] = st.group_running.get(n.group, 0) + 1
    if old in UNIT_TERMINAL:
        n.n_final -= 1
    elif new in UNIT_TERMINAL:
        n.n_final += 1
    if old is UnitStatus.PENDING:
        _unqueue(st, n, u.key)
    elif new is UnitStatus.PENDING:
        n.pending.append(u.key)
        st.fillable.add(n.id)
    st.touched.add(n.id)


def _unqueue(st: RunState, n: NodeState, key: str) -> None:
    if n.pending and n.pending[0] == key:
        n.pending.popleft()
    elif key in n.delayed:
        n.delayed.discard(key)
    else:
        try:
            n.pending.remove(key)
        except ValueError:
            pass
    if not n.pending:
        st.fillable.discard(n.id)


def _reset_units(st: RunState, n: NodeState, units: list[dict[str, Any]] | None) -> None:
    for u in n.units.values():
        if u.status is UnitStatus.RUNNING:  # cannot happen in a valid log; keep counters right
            set_unit_status(st, n, u, UnitStatus.CANCELED)
    n.units = {}
    n.n_running = 0
    n.n_final = 0
    n.pending.clear()
    n.delayed.clear()
    st.fillable.discard(n.id)
    for ud in units or ():
        key = ud["key"]
        n.units[key] = UnitState(key, dict(ud.get("vars") or {}))
        n.pending.append(key)
    if n.pending:
        st.fillable.add(n.id)


def _attempt(
    n: NodeState | None, unit: str | None, attempt: int | None
) -> tuple[UnitState | None, AttemptState | None]:
    """The unit and attempt an event names: the unit's latest attempt when the event names
    none; an event naming an attempt the unit never started is a corrupt log or a bug, and
    fails loudly (it used to land on the latest attempt)."""
    u = n.units.get(unit or "") if n is not None else None
    if u is None or not u.attempts:
        return u, None
    if attempt is None:
        return u, u.attempts[-1]
    for a in reversed(u.attempts):
        if a.n == attempt:
            return u, a
    assert n is not None
    raise IllegalTransition(
        f"an event names attempt #{attempt} of step {n.id!r}[{u.key}], which never started "
        f"(its attempts: {', '.join(f'#{a.n}' for a in u.attempts)})"
    )


def _v(x: Any, default: Any = None) -> Any:
    return default if x is MISSING else x


def _end_attempt(st: RunState, n: NodeState, u: UnitState, a: AttemptState, status: AttemptStatus) -> None:
    check_attempt_transition(a.status, status, f"{n.id}[{u.key}]#{a.n}")
    a.status = status
    st.reserved -= a.reserve
    st.reserved_cost -= a.reserve_cost
    if a.used or a.cost:
        st.spent_attempts += 1
        st.spent_tokens += a.used
        st.spent_cost += a.cost
    if u.asking is not None:
        if status is not AttemptStatus.INTERRUPTED:
            # the attempt that asked is over: its question is no longer open (an interrupted
            # one - parked, taken over - asks again in its next attempt, so it stays open)
            st.open_requests.pop(u.asking, None)
        u.asking = None


# -- the fold ------------------------------------------------------------------------------


def apply(st: RunState, e: NewEvent | Any) -> RunState:
    """Fold one event (a NewEvent or a stored Event) into the state."""
    t = e.type
    if t in NOT_FOLDED:
        return st
    p = e.payload
    if not isinstance(p, Payload):
        p = decode(t, p, getattr(e, "schema_version", 1))
    handler = _HANDLERS.get(t)
    if handler is not None:
        handler(st, e, p)
        # every handler changes at most the node of the event's step: its view is stale
        n = st.nodes.get(e.step_id) if e.step_id is not None else None
        if n is not None:
            n.view = None
            if n.scope is None and st.top_views is not None:
                st.stale_views.add(n.id)
    return st


def _run_started(st: RunState, e: Any, p: Any) -> None:
    set_run_status(st, RunStatus.RUNNING)
    st.started = True
    if t_deadline := _v(getattr(p, "deadline", MISSING)):
        st.deadline = t_deadline


def _run_resumed(st: RunState, e: Any, p: Any) -> None:
    set_run_status(st, RunStatus.RUNNING)
    st.started = True
    st.rerun_requested = None


def _run_queued(st: RunState, e: Any, p: Any) -> None:
    set_run_status(st, RunStatus.QUEUED)


def _run_paused(st: RunState, e: Any, p: Any) -> None:
    set_run_status(st, RunStatus.PAUSED)


def _run_parked(st: RunState, e: Any, p: Any) -> None:
    set_run_status(st, RunStatus.WAITING)


def _cancel_requested(st: RunState, e: Any, p: Any) -> None:
    st.cancel_requested = True


def _run_completed(st: RunState, e: Any, p: Any) -> None:
    set_run_status(st, RunStatus.COMPLETED)
    st.outputs = _v(p.outputs)
    st.finished = True


def _run_failed(st: RunState, e: Any, p: Any) -> None:
    set_run_status(st, RunStatus.FAILED)
    st.error = _v(p.error) or e.message
    st.finished = True


def _run_canceled(st: RunState, e: Any, p: Any) -> None:
    set_run_status(st, RunStatus.CANCELED)
    st.finished = True


def _step_started(st: RunState, e: Any, p: Any) -> None:
    n = st.nodes.get(e.step_id or "")
    if n is None:
        return
    set_step_status(st, n, StepStatus.RUNNING)
    if n.rerun_pending:
        _set_rerun_pending(st, n, False)
    n.output = None
    n.error = None
    n.done_count = 0
    units = _v(p.units)
    if units is not None:
        _reset_units(st, n, units)
    if isinstance(n.spec, LoopStep):
        add_loop_iteration(st, n.id, int(_v(p.iteration, 1)))
    st.touched.add(n.id)


def _loop_iteration(st: RunState, e: Any, p: Any) -> None:
    add_loop_iteration(st, e.step_id or "", int(p.iteration))
    st.touched.add(e.step_id or "")


def _attempt_started(st: RunState, e: Any, p: Any) -> None:
    n = st.nodes[e.step_id or ""]
    key = e.unit or ""
    u = n.units.get(key)
    if u is None:  # a node without recorded units (routes/groups) never starts attempts
        u = n.units[key] = UnitState(key)
        n.pending.append(key)
    num = int(e.attempt or 1)
    a = AttemptState(num, timeout_at=_v(p.timeout_at), reserve=int(_v(p.reserve, 0) or 0))
    a.reserve_cost = float(_v(p.get("reserve_cost"), 0.0) or 0.0)
    u.attempts.append(a)
    u.not_before = None
    set_unit_status(st, n, u, UnitStatus.RUNNING)
    st.reserved += a.reserve
    st.reserved_cost += a.reserve_cost
    ck = (n.id, key)
    if num > st.attempt_counter.get(ck, 0):
        st.attempt_counter[ck] = num


def _attempt_completed(st: RunState, e: Any, p: Any) -> None:
    n = st.nodes.get(e.step_id or "")
    u, a = _attempt(n, e.unit, e.attempt)
    if n is None or u is None or a is None:
        return
    _end_attempt(st, n, u, a, AttemptStatus.COMPLETED)
    a.output = _v(p.output)
    u.output = a.output
    u.error = None
    n.done_count += 1
    u.order = n.done_count
    set_unit_status(st, n, u, UnitStatus.COMPLETED)


def _attempt_failed(st: RunState, e: Any, p: Any) -> None:
    n = st.nodes.get(e.step_id or "")
    u, a = _attempt(n, e.unit, e.attempt)
    if n is None or u is None or a is None:
        return
    _end_attempt(st, n, u, a, AttemptStatus.FAILED)
    a.error = _v(p.error) or e.message
    a.error_kind = _v(p.kind)
    a.retryable = bool(_v(p.retryable, False))
    a.retry_after = _v(p.retry_after)
    u.failures += 1
    u.error = a.error
    set_unit_status(st, n, u, UnitStatus.FAILED)
    st.retry_candidates.append((n.id, u.key))


def _attempt_interrupted(st: RunState, e: Any, p: Any) -> None:
    n = st.nodes.get(e.step_id or "")
    u, a = _attempt(n, e.unit, e.attempt)
    if n is None or u is None or a is None:
        return
    _end_attempt(st, n, u, a, AttemptStatus.INTERRUPTED)
    a.error = _v(p.error) or "interrupted"
    set_unit_status(st, n, u, UnitStatus.PENDING)
    # it was running: it goes first when slots free up
    if n.pending and n.pending[-1] == u.key and len(n.pending) > 1:
        n.pending.pop()
        n.pending.appendleft(u.key)


def _attempt_canceled(st: RunState, e: Any, p: Any) -> None:
    n = st.nodes.get(e.step_id or "")
    u, a = _attempt(n, e.unit, e.attempt)
    if n is None or u is None or a is None:
        return
    _end_attempt(st, n, u, a, AttemptStatus.CANCELED)
    set_unit_status(st, n, u, UnitStatus.CANCELED)
    u.error = _v(p.error) or "canceled"


def _step_retrying(st: RunState, e: Any, p: Any) -> None:
    n = st.nodes[e.step_id or ""]
    u = n.units[e.unit or ""]
    u.not_before = _v(p.at)
    set_unit_status(st, n, u, UnitStatus.PENDING)


def _step_completed(st: RunState, e: Any, p: Any) -> None:
    n = st.nodes[e.step_id or ""]
    set_step_status(st, n, StepStatus.COMPLETED)
    n.output = _v(p.output)
    n.error = None


def _end_units(st: RunState, n: NodeState, keys: list[str] | None, status: UnitStatus) -> None:
    for k in keys or ():
        u = n.units.get(k)
        if u is not None and u.status is UnitStatus.PENDING:
            set_unit_status(st, n, u, status)


def _step_failed(st: RunState, e: Any, p: Any) -> None:
    n = st.nodes[e.step_id or ""]
    _end_units(st, n, _v(p.units), UnitStatus.FAILED)
    set_step_status(st, n, StepStatus.FAILED)
    n.error = _v(p.error) or e.message
    n.output = _v(p.output)


def _step_skipped(st: RunState, e: Any, p: Any) -> None:
    n = st.nodes[e.step_id or ""]
    _end_units(st, n, _v(p.units), UnitStatus.SKIPPED)
    set_step_status(st, n, StepStatus.SKIPPED)
    n.reason = _v(p.reason)


def _step_canceled(st: RunState, e: Any, p: Any) -> None:
    n = st.nodes[e.step_id or ""]
    _end_units(st, n, [k for k, u in n.units.items() if u.status is UnitStatus.PENDING], UnitStatus.CANCELED)
    if n.rerun_pending:
        _set_rerun_pending(st, n, False)
    set_step_status(st, n, StepStatus.CANCELED)


def _step_stale(st: RunState, e: Any, p: Any) -> None:
    n = st.nodes.get(e.step_id or "")
    if n is None:
        return
    set_step_status(st, n, StepStatus.STALE)
    _set_rerun_pending(st, n, bool(_v(p.rerun, False)))


def _step_rerun(st: RunState, e: Any, p: Any) -> None:
    n = st.nodes[e.step_id or ""]
    st.finished = False
    set_run_status(st, RunStatus.RUNNING)
    st.cancel_requested = False
    st.outputs = None
    st.error = None
    if (d := _v(p.deadline)) is not None:
        st.deadline = d
    unit = _v(p.unit)
    st.rerun_requested = n.id + (f"[{unit}]" if unit is not None else "")
    if unit is not None and unit in n.units:
        u = n.units[unit]
        u.failures = 0
        u.not_before = None
        set_unit_status(st, n, u, UnitStatus.PENDING)
        set_step_status(st, n, StepStatus.RUNNING)
    else:
        _reset_units(st, n, None)
        if n.rerun_pending:
            _set_rerun_pending(st, n, False)
        set_step_status(st, n, StepStatus.PENDING)


def _human_requested(st: RunState, e: Any, p: Any) -> None:
    rid = p.request_id
    st.human_requests[rid] = p.to_dict() if isinstance(p, Payload) else dict(p)
    if rid not in st.human_answers:
        st.open_requests[rid] = (e.step_id, e.unit or "")
        n = st.nodes.get(e.step_id or "")
        u = n.units.get(e.unit or "") if n is not None else None
        if u is not None and u.status is UnitStatus.RUNNING:
            u.asking = rid


def _human_received(st: RunState, e: Any, p: Any) -> None:
    rid = _v(p.request_id)
    st.human_answers[rid] = _v(p.answer)
    where = st.open_requests.pop(rid, None)
    if where is not None:
        n = st.nodes.get(where[0] or "")
        u = n.units.get(where[1]) if n is not None else None
        if u is not None and u.asking == rid:
            u.asking = None


def _llm_done(st: RunState, e: Any, p: Any) -> None:
    usage = _v(p.usage) or {}
    tin = int(usage.get("input_tokens", 0) or 0)
    tout = int(usage.get("output_tokens", 0) or 0)
    cost = float(_v(p.cost, 0) or 0)
    st.tokens_in += tin
    st.tokens_out += tout
    st.cost += cost
    n = st.nodes.get(e.step_id or "")
    _, a = _attempt(n, e.unit, e.attempt)
    if a is not None and a.status is AttemptStatus.RUNNING:
        a.used += tin + tout
        a.cost += cost


_HANDLERS: dict[str, Any] = {
    E.RUN_STARTED: _run_started,
    E.RUN_RESUMED: _run_resumed,
    E.RUN_RECOVERED: _run_resumed,
    E.RUN_QUEUED: _run_queued,
    E.RUN_PAUSED: _run_paused,
    E.RUN_PARKED: _run_parked,
    E.RUN_CANCEL_REQUESTED: _cancel_requested,
    E.RUN_COMPLETED: _run_completed,
    E.RUN_FAILED: _run_failed,
    E.RUN_CANCELED: _run_canceled,
    E.STEP_STARTED: _step_started,
    E.LOOP_ITERATION: _loop_iteration,
    E.ATTEMPT_STARTED: _attempt_started,
    E.ATTEMPT_COMPLETED: _attempt_completed,
    E.ATTEMPT_FAILED: _attempt_failed,
    E.ATTEMPT_INTERRUPTED: _attempt_interrupted,
    E.ATTEMPT_CANCELED: _attempt_canceled,
    E.STEP_RETRYING: _step_retrying,
    E.STEP_COMPLETED: _step_completed,
    E.STEP_FAILED: _step_failed,
    E.STEP_SKIPPED: _step_skipped,
    E.STEP_CANCELED: _step_canceled,
    E.STEP_STALE: _step_stale,
    E.STEP_RERUN: _step_rerun,
    E.HUMAN_INPUT_REQUESTED: _human_requested,
    E.HUMAN_INPUT_RECEIVED: _human_received,
    E.LLM_DONE: _llm_done,
}


def fold(st: RunState, events: list[Any]) -> RunState:
    """Fold a log into ``st``; afterwards every step is due a look from the scheduler (a
    rebuilt state has no history of what changed)."""
    for e in events:
        apply(st, e)
    st.check.update(st.nodes)
    st.touched.update(nid for nid, n in st.nodes.items() if n.status is StepStatus.RUNNING)
    st.retry_candidates.clear()  # a stored failure already had its retry decided
    return st


def is_route(n: NodeState) -> bool:
    return isinstance(n.spec, RouteStep)


def is_parallel(n: NodeState) -> bool:
    return isinstance(n.spec, ParallelStep)


def is_broadcast(n: NodeState) -> bool:
    return isinstance(n.spec, BroadcastStep)
