"""Run state = fold(events). ``apply`` is pure in the sense that matters: deterministic,
no I/O, no clock; it updates the state in place for speed (callers own their state)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from llmflow.engine.events import EventType, NewEvent
from llmflow.engine.states import RunStatus, StepStatus
from llmflow.model.graph import Graph, build_graph
from llmflow.model.spec import Flow, LoopStep, StepSpec


@dataclass
class AttemptState:
    n: int
    status: str = "RUNNING"  # RUNNING | COMPLETED | FAILED | INTERRUPTED | CANCELED
    output: Any = None
    error: str | None = None
    error_kind: str | None = None
    retryable: bool = False
    retry_after: float | None = None


@dataclass
class UnitState:
    key: str
    vars: dict[str, Any] = field(default_factory=dict)  # item / matrix / agent
    status: str = "PENDING"  # PENDING | RUNNING | COMPLETED | FAILED | CANCELED
    attempts: list[AttemptState] = field(default_factory=list)
    failures: int = 0  # failed attempts in the current generation (for the retry budget)
    output: Any = None
    error: str | None = None
    order: int | None = None  # completion order (broadcast "first")

    @property
    def running(self) -> bool:
        return self.status == "RUNNING"


@dataclass
class NodeState:
    """A schedulable node: a flow step, or a loop body step in one iteration."""

    id: str  # qualified id: "x" or "loop#2/x"
    spec: StepSpec
    needs: tuple[str, ...]
    group: str | None = None
    scope: str | None = None  # "loop#2" for loop bodies
    status: StepStatus = StepStatus.PENDING
    units: dict[str, UnitState] = field(default_factory=dict)
    output: Any = None
    error: str | None = None
    reason: str | None = None  # why skipped / failed
    rerun_pending: bool = False  # STALE but will run again (--downstream)
    iteration: int = 0  # loops: current iteration
    done_count: int = 0  # completion order counter for units

    @property
    def short_id(self) -> str:
        return self.id.rsplit("/", 1)[-1]


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

    def running_units(self) -> int:
        return sum(1 for n in self.nodes.values() for u in n.units.values() if u.status == "RUNNING")

    def node(self, node_id: str) -> NodeState:
        return self.nodes[node_id]


def new_state(run_id: str, flow: Flow, inputs: dict[str, Any], options: dict[str, Any] | None = None) -> RunState:
    g = build_graph(flow.steps)
    st = RunState(run_id=run_id, flow=flow, graph=g, inputs=dict(inputs), options=dict(options or {}))
    for nid in g.order:
        n = g.nodes[nid]
        st.nodes[nid] = NodeState(nid, n.step, n.needs, n.group)
    return st


def add_loop_iteration(st: RunState, loop_id: str, iteration: int) -> None:
    """Create the body nodes of one loop iteration (ids ``loop#i/body``)."""
    loop = st.nodes[loop_id]
    spec = loop.spec
    assert isinstance(spec, LoopStep)
    body = build_graph(spec.steps)
    scope = f"{loop_id}#{iteration}"
    loop.iteration = iteration
    for bid in body.order:
        bn = body.nodes[bid]
        needs = tuple(f"{scope}/{d}" for d in bn.needs)
        qid = f"{scope}/{bid}"
        if qid not in st.nodes:
            st.nodes[qid] = NodeState(qid, bn.step, needs, None, scope=scope)


def loop_body_ids(st: RunState, loop_id: str, iteration: int) -> list[str]:
    prefix = f"{loop_id}#{iteration}/"
    return [k for k in st.nodes if k.startswith(prefix)]


def apply(st: RunState, e: NewEvent) -> RunState:
    """Fold one event into the state."""
    t = e.type
    p = e.payload
    if t == EventType.RUN_STARTED or t == EventType.RUN_RESUMED or t == EventType.RUN_RECOVERED:
        st.status = RunStatus.RUNNING
        st.started = True
    elif t == EventType.RUN_QUEUED:
        st.status = RunStatus.QUEUED
    elif t == EventType.RUN_PAUSED:
        st.status = RunStatus.PAUSED
    elif t == EventType.RUN_CANCEL_REQUESTED:
        st.cancel_requested = True
    elif t == EventType.RUN_COMPLETED:
        st.status = RunStatus.COMPLETED
        st.outputs = p.get("outputs")
        st.finished = True
    elif t == EventType.RUN_FAILED:
        st.status = RunStatus.FAILED
        st.error = p.get("error") or e.message
        st.finished = True
    elif t == EventType.RUN_CANCELED:
        st.status = RunStatus.CANCELED
        st.finished = True
    elif t == EventType.STEP_STARTED:
        n = st.nodes.get(e.step_id or "")
        if n is not None:
            n.status = StepStatus.RUNNING
            n.rerun_pending = False
            n.output = None
            n.error = None
            n.done_count = 0
            if "units" in p:
                n.units = {}
                for u in p["units"]:
                    n.units[u["key"]] = UnitState(u["key"], dict(u.get("vars") or {}))
            if isinstance(n.spec, LoopStep):
                add_loop_iteration(st, n.id, int(p.get("iteration", 1)))
    elif t == "LOOP_ITERATION":
        add_loop_iteration(st, e.step_id or "", int(p["iteration"]))
    elif t == EventType.ATTEMPT_STARTED:
        n = st.nodes[e.step_id or ""]
        u = n.units.get(e.unit or "")
        if u is None:  # a node without recorded units (routes/groups) never starts attempts
            u = n.units[e.unit or ""] = UnitState(e.unit or "")
        u.status = "RUNNING"
        u.attempts.append(AttemptState(int(e.attempt or 1)))
        key = (n.id, u.key)
        st.attempt_counter[key] = max(st.attempt_counter.get(key, 0), int(e.attempt or 1))
    elif t in (EventType.ATTEMPT_COMPLETED, EventType.ATTEMPT_FAILED, EventType.ATTEMPT_INTERRUPTED, EventType.ATTEMPT_CANCELED):
        n = st.nodes.get(e.step_id or "")
        u = n.units.get(e.unit or "") if n else None
        if u is None or not u.attempts:
            return st
        a = next((x for x in reversed(u.attempts) if x.n == e.attempt), u.attempts[-1])
        if t == EventType.ATTEMPT_COMPLETED:
            a.status = "COMPLETED"
            a.output = p.get("output")
            u.status = "COMPLETED"
            u.output = a.output
            u.error = None
            n.done_count += 1
            u.order = n.done_count
        elif t == EventType.ATTEMPT_FAILED:
            a.status = "FAILED"
            a.error = p.get("error") or e.message
            a.error_kind = p.get("kind")
            a.retryable = bool(p.get("retryable"))
            a.retry_after = p.get("retry_after")
            u.failures += 1
            u.error = a.error
            u.status = "FAILED"  # the scheduler may start a retry right away
        elif t == EventType.ATTEMPT_INTERRUPTED:
            a.status = "INTERRUPTED"
            a.error = p.get("error") or "interrupted"
            u.status = "PENDING"
        else:
            a.status = "CANCELED"
            u.status = "CANCELED"
            u.error = p.get("error") or "canceled"
    elif t == EventType.STEP_RETRYING:
        n = st.nodes[e.step_id or ""]
        u = n.units[e.unit or ""]
        u.status = "PENDING"
    elif t == EventType.STEP_COMPLETED:
        n = st.nodes[e.step_id or ""]
        n.status = StepStatus.COMPLETED
        n.output = p.get("output")
        n.error = None
    elif t == EventType.STEP_FAILED:
        n = st.nodes[e.step_id or ""]
        n.status = StepStatus.FAILED
        n.error = p.get("error") or e.message
        n.output = p.get("output")
    elif t == EventType.STEP_SKIPPED:
        n = st.nodes[e.step_id or ""]
        n.status = StepStatus.SKIPPED
        n.reason = p.get("reason")
    elif t == EventType.STEP_CANCELED:
        n = st.nodes[e.step_id or ""]
        n.status = StepStatus.CANCELED
    elif t == EventType.STEP_STALE:
        n = st.nodes.get(e.step_id or "")
        if n is not None:
            n.status = StepStatus.STALE
            n.rerun_pending = bool(p.get("rerun"))
    elif t == EventType.STEP_RERUN:
        n = st.nodes[e.step_id or ""]
        st.finished = False
        st.status = RunStatus.RUNNING
        st.cancel_requested = False
        st.outputs = None
        st.error = None
        unit = p.get("unit")
        if unit is not None and unit in n.units:
            u = n.units[unit]
            u.status = "PENDING"
            u.failures = 0
            n.status = StepStatus.RUNNING
        else:
            n.status = StepStatus.PENDING
            n.units = {}
            n.rerun_pending = False
    elif t == EventType.HUMAN_INPUT_REQUESTED:
        st.human_requests[p["request_id"]] = dict(p)
    elif t == EventType.HUMAN_INPUT_RECEIVED:
        st.human_answers[p["request_id"]] = p.get("answer")
    elif t == EventType.LLM_DONE:
        usage = p.get("usage") or {}
        st.tokens_in += int(usage.get("input_tokens", 0) or 0)
        st.tokens_out += int(usage.get("output_tokens", 0) or 0)
        st.cost += float(p.get("cost", 0) or 0)
    return st


def fold(st: RunState, events: list[Any]) -> RunState:
    for e in events:
        apply(st, e)
    return st
