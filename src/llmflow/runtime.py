"""The runtime: create runs, execute them (fresh, resumed or recovered), control them,
re-run steps in place and fork runs. Built by :func:`llmflow.app.build_runtime`."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from llmflow.engine.events import Event, NewEvent
from llmflow.engine.events import EventType as E
from llmflow.engine.ports import StepContext
from llmflow.engine.runner import Runner, RunnerConfig
from llmflow.engine.state import RunState, fold, new_state
from llmflow.engine.states import RUN_TERMINAL, RunStatus, StepStatus
from llmflow.errors import (
    FlowValidationError,
    ResumeRefusedError,
    RunNotFoundError,
    RunStateError,
    StepError,
)
from llmflow.model.diagnostics import Location
from llmflow.model.graph import build_graph
from llmflow.model.loader import LoadedFlow, load_flow
from llmflow.model.spec import Flow
from llmflow.model.validate import validate_inputs
from llmflow.providers.preflight import check_run_models
from llmflow.settings import Settings
from llmflow.store.base import RunRecord


class SystemClock:
    def now(self) -> float:
        return time.time()


def owner_is_dead_here(owner: str | None) -> bool:
    """An owner is "host:pid:token"; on this host, a pid that no longer exists is dead."""
    if not owner:
        return False
    host, _, rest = owner.partition(":")
    pid_s = rest.split(":", 1)[0]
    if host != socket.gethostname() or not pid_s.isdigit():
        return False
    pid = int(pid_s)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:  # a zombie (killed, not yet reaped by its parent) is dead too
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return False


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)


@dataclass
class RunOptions:
    models: dict[str, str] = field(default_factory=dict)  # step id (or "*") -> provider:model
    timeout: float | None = None
    workspace: str | None = None
    max_concurrency: int | None = None
    max_tokens: int | None = None
    max_cost: float | None = None
    batch_id: str | None = None
    project_id: int | None = None
    parent_run_id: str | None = None
    name: str | None = None
    goal: str | None = None
    run_type: str = "flow"
    metadata: dict[str, Any] = field(default_factory=dict)
    run_id: str | None = None
    thread: str | None = None  # continue this conversation thread (kept as metadata.thread)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v not in (None, {}, []) and k not in ("run_id", "thread")}


def changed_keys(a: Any, b: Any, path: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for k in sorted(set(a) | set(b), key=str):
            out += changed_keys(a.get(k), b.get(k), f"{path}.{k}" if path else str(k))
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        out = []
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            out += changed_keys(x, y, f"{path}[{i}]")
        return out
    return [] if a == b else [path or "(root)"]


class Runtime:
    def __init__(
        self,
        settings: Settings,
        store: Any,
        *,
        executors: dict[str, Any],
        gateway: Any,
        clock: Any | None = None,
        functions: dict[str, Callable[..., Any]] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.executors = executors
        self.gateway = gateway
        self.clock = clock or SystemClock()
        self.functions = dict(functions or {})
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(2)}"
        self.active: dict[str, Runner] = {}
        self._flows: dict[str, Flow] = {}  # fingerprint -> validated Flow (specs are immutable)
        self._fingerprints: dict[int, tuple[Flow, str]] = {}
        from llmflow.tools.services import ToolServices

        self.tool_services = ToolServices(settings, run_child=self._run_child, store=store)

    # -- flows ------------------------------------------------------------------------------
    def load(self, flow_ref: str | Path | Flow | LoadedFlow, overrides: list[str] | None = None) -> LoadedFlow:
        if isinstance(flow_ref, LoadedFlow):
            return flow_ref
        if isinstance(flow_ref, Flow):
            return LoadedFlow(flow_ref, None, "<python>")
        return load_flow(flow_ref, overrides or [], self.settings.config_dir)

    # -- runs -------------------------------------------------------------------------------
    def create_run(self, flow_ref: Any, inputs: dict[str, Any] | None = None, options: RunOptions | None = None, *, overrides: list[str] | None = None, coerce_strings: bool = True) -> RunRecord:
        loaded = self.load(flow_ref, overrides)
        flow = loaded.flow
        options = options or RunOptions()
        clean, diags = validate_inputs(flow, dict(inputs or {}), coerce_strings=coerce_strings)
        if diags:  # located in the flow's file (not "<flow>") when it has one
            raise FlowValidationError([d if d.location.file or d.location.origin or loaded.source.startswith("<") else replace(d, location=Location(file=loaded.source)) for d in diags])
        from llmflow.tools.check import check_loaded

        diags = check_loaded(loaded, self.tool_services, self.functions, thread=options.thread)
        if diags:
            raise FlowValidationError(diags)
        for step in options.models:
            if step != "*" and step not in {s.id for s in flow.all_steps()}:
                from llmflow.model.diagnostics import Diagnostic, did_you_mean

                raise FlowValidationError([Diagnostic("unknown-step", f"--model names unknown step '{step}'", f"models.{step}", did_you_mean(step, [s.id for s in flow.all_steps()]) or "use STEP=provider:model")])
        check_run_models(self.gateway, loaded, options.models, self.settings.env_models)  # unknown provider, no key: refused now
        now = self.clock.now()
        run = RunRecord(
            id=options.run_id or new_run_id(),
            flow_name=flow.name,
            status="QUEUED",
            created_at=now,
            inputs=clean,
            spec=loaded.record(),
            fingerprint=self._fingerprint(flow),
            options=options.to_dict(),
            metadata={**options.metadata, **({"thread": options.thread} if options.thread else {})},
            parent_run_id=options.parent_run_id,
            batch_id=options.batch_id,
            project_id=options.project_id,
            name=options.name,
            goal=options.goal,
            run_type=options.run_type,
        )
        self.store.create_run(run, [NewEvent(E.RUN_CREATED, f"Run created for flow {flow.name}", payload={"flow": flow.name, "version": flow.version, "inputs": clean})], now)
        return run

    def _fingerprint(self, flow: Flow) -> str:
        hit = self._fingerprints.get(id(flow))
        if hit is not None and hit[0] is flow:
            return hit[1]
        fp = flow.fingerprint()
        if len(self._fingerprints) > 256:
            self._fingerprints.clear()
        self._fingerprints[id(flow)] = (flow, fp)
        self._flows.setdefault(fp, flow)
        return fp

    def get(self, run_id: str) -> RunRecord:
        rec = self.store.get_run(run_id)
        if rec is None:
            raise RunNotFoundError(f"no run {run_id!r}", hint="list runs with `llmflow runs list`")
        return rec

    def _stored_flow(self, rec: RunRecord) -> Flow:
        f = self._flows.get(rec.fingerprint)
        if f is None:
            f = Flow.model_validate(rec.spec["flow"])
            if len(self._flows) > 256:
                self._flows.clear()
            self._flows[rec.fingerprint] = f
        return f

    def flow_of(self, rec: RunRecord, *, force: bool = False, check_source: bool = True) -> Flow:
        stored = self._stored_flow(rec)
        source = rec.spec.get("source")
        if not check_source or not source or source.startswith("<") or not Path(source).exists():
            return stored
        try:
            current = load_flow(source, rec.spec.get("overrides") or [], self.settings.config_dir).flow
        except Exception:  # noqa: BLE001 - an unloadable source: keep running what was recorded
            return stored
        if current.fingerprint() == rec.fingerprint:
            return stored
        changed = changed_keys(stored.to_dict(), current.to_dict())
        if not force:
            raise ResumeRefusedError(
                f"flow {rec.flow_name!r} changed since run {rec.id} started ({source}): " + ", ".join(changed[:8]) + (" ..." if len(changed) > 8 else ""),
                hint="restore the flow, or pass --force to continue with the new definition",
            )
        return current

    def state_of(self, rec: RunRecord, flow: Flow | None = None) -> RunState:
        flow = flow or self._stored_flow(rec)
        st = new_state(rec.id, flow, rec.inputs, self._state_options(rec))
        return fold(st, self.store.events(rec.id))

    def _state_options(self, rec: RunRecord) -> dict[str, Any]:
        o = dict(rec.options)
        o["run_vars"] = {"workspace": str(self.workspace_of(rec)), "name": rec.name, "batch_id": rec.batch_id}
        return o

    def workspace_of(self, rec: RunRecord) -> Path:
        ws = rec.options.get("workspace") or (rec.spec.get("flow", {}).get("options", {}) or {}).get("workspace")
        if ws:
            p = Path(ws).expanduser()
            if not p.is_absolute():
                src = rec.spec.get("source")
                base = Path(src).parent if src and not src.startswith("<") and not rec.options.get("workspace") else self.settings.home
                p = base / p
            return p
        return self.settings.state_dir / "runs" / rec.id / "workspace"

    def artifacts_of(self, rec: RunRecord) -> Path:
        return self.settings.state_dir / "runs" / rec.id / "artifacts"

    async def execute(
        self,
        run_id: str,
        *,
        subscribers: list[Callable[[Event], None]] | None = None,
        linger_when_paused: bool = False,
        force: bool = False,
        on_runner: Callable[[Runner], None] | None = None,
    ) -> RunState:
        """Run (or continue) a run until it finishes, pauses, or its lease is lost."""
        rec = self.get(run_id)
        if rec.status in RUN_TERMINAL:  # a re-run in place re-opens the run first (STEP_RERUN)
            raise RunStateError(f"run {run_id} is {rec.status}; nothing to resume", hint="use `llmflow runs rerun ID --step S` to re-run a step in place")
        now = self.clock.now()
        claimed = self.store.claim(self.owner, now, self.settings.lease_seconds, run_id=run_id)
        if claimed is None and owner_is_dead_here(rec.owner):
            # its process on this machine is gone: no need to wait for the lease to expire
            self.store.update_run(run_id, owner=None, lease_expires_at=None)
            claimed = self.store.claim(self.owner, now, self.settings.lease_seconds, run_id=run_id)
        if claimed is None:
            raise RunStateError(f"run {run_id} is being executed by another process ({rec.owner})", hint="wait for it, or cancel it with `llmflow runs cancel ID`")
        try:
            events = self.store.events(run_id)
            started = any(e.type == E.RUN_STARTED for e in events)
            flow = self.flow_of(rec, force=force, check_source=started)
            st = new_state(rec.id, flow, rec.inputs, self._state_options(rec))
            fold(st, events)
            initial = self._initial_events(st, started, events)
            workspace = self.workspace_of(rec)  # created by the first step that writes into it
            runner = Runner(
                log_=self.store,
                clock=self.clock,
                state=st,
                executors=self.executors,
                config=RunnerConfig(
                    workspace=workspace,
                    artifacts_dir=self.artifacts_of(rec),
                    owner=self.owner,
                    lease_seconds=self.settings.lease_seconds,
                    linger_when_paused=linger_when_paused,
                    run_timeout=rec.options.get("timeout") or flow.options.timeout,
                    allow_shell=self.settings.allow_shell and not rec.options.get("disallow_shell"),
                    run_models=dict(rec.options.get("models") or {}),
                    env_models=self.settings.env_models,
                    functions=self.functions,
                    cache_dir=self.settings.state_dir / "cache",
                    settings=self._step_settings(rec),
                ),
                llm=self.gateway,
                run_child=self._run_child,
                subscribers=subscribers,
            )
            self.active[run_id] = runner
            if on_runner is not None:
                on_runner(runner)
            return await runner.run(initial)
        finally:
            self.active.pop(run_id, None)
            self.store.release(run_id, self.owner)

    def _step_settings(self, rec: RunRecord) -> dict[str, Any]:
        """What steps read from ``ctx.settings``: tool services, the run's thread, the flow's directory."""
        src = rec.spec.get("source")
        flow_dir = str(Path(src).resolve().parent) if src and not src.startswith("<") else None
        return {"tools": self.tool_services, "thread": (rec.metadata or {}).get("thread"), "flow_dir": flow_dir}

    def _initial_events(self, st: RunState, started: bool, events: list[Event] | None = None) -> list[NewEvent]:
        if not started:
            return [
                NewEvent(E.RUN_STARTED, "Run started", payload={"owner": self.owner}),
                NewEvent(E.WORKFLOW_STARTED, f"Starting {st.flow.name} v{st.flow.version}", payload={"flow": st.flow.name, "version": st.flow.version}),
            ]
        out: list[NewEvent] = []
        interrupted = []
        for n in st.nodes.values():
            for u in n.units.values():
                if u.status == "RUNNING" and u.attempts and u.attempts[-1].status == "RUNNING":
                    a = u.attempts[-1]
                    interrupted.append(f"{n.id}{'[' + u.key + ']' if u.key else ''}#{a.n}")
                    out.append(NewEvent(E.ATTEMPT_INTERRUPTED, f"Attempt {a.n} of {n.short_id} was interrupted; it will run again", n.id, u.key or None, a.n, {"error": "the process running it stopped"}))
        reruns = [e.step_id for e in reversed(events or []) if e.type == E.STEP_RERUN][:1] if events and events[-1].type in (E.STEP_RERUN, E.STEP_STALE) else []
        if reruns and not interrupted:  # a re-run in place, not a recovery: say what happens
            out.append(NewEvent(E.RUN_RESUMED, f"Re-running step {reruns[0]}", payload={"owner": self.owner, "rerun": reruns[0]}))
        elif st.status in (RunStatus.PAUSED, RunStatus.QUEUED):
            out.append(NewEvent(E.RUN_RESUMED, "Run resumed", payload={"owner": self.owner}))
        else:
            out.append(NewEvent(E.RUN_RECOVERED, f"Run recovered by {self.owner}" + (f"; interrupted: {', '.join(interrupted)}" if interrupted else ""), payload={"owner": self.owner, "interrupted": interrupted}))
        return out

    async def run(self, flow_ref: Any, inputs: dict[str, Any] | None = None, options: RunOptions | None = None, **kw: Any) -> RunState:
        rec = self.create_run(flow_ref, inputs, options, **kw)
        return await self.execute(rec.id)

    # -- control ----------------------------------------------------------------------------
    def _owned_live(self, rec: RunRecord) -> bool:
        return rec.owner is not None and (rec.lease_expires_at or 0) > self.clock.now()

    def control(self, run_id: str, action: str, payload: dict[str, Any] | None = None) -> str:
        """cancel | pause | resume | answer | directive. Returns what happened, in words."""
        payload = payload or {}
        rec = self.get(run_id)
        runner = self.active.get(run_id)
        if action in ("cancel", "pause", "resume") and rec.status in RUN_TERMINAL:
            verb = {"pause": "paused", "resume": "resumed"}.get(action, action)
            raise RunStateError(f"run {run_id} is {rec.status}; it cannot be {verb}" if action != "cancel" else f"run {run_id} is {rec.status}; nothing to cancel")
        if action == "pause" and rec.status == "PAUSED":
            raise RunStateError(f"run {run_id} is already paused")
        if action == "resume" and rec.status not in ("PAUSED",):
            raise RunStateError(f"run {run_id} is {rec.status}; only a paused run can be resumed")
        if runner is not None:
            runner.control(action, payload)
            return f"{action} sent to the running run"
        now = self.clock.now()
        if self._owned_live(rec):
            self.store.put_control(run_id, action, payload, now)
            return f"{action} requested; the process running it will act within a second"
        # nobody runs it: apply directly
        if action == "cancel":
            evs = [NewEvent(E.RUN_CANCEL_REQUESTED, "Cancel requested", payload=payload)]
            st = self.state_of(rec)
            for n in st.nodes.values():
                for u in n.units.values():
                    if u.status == "RUNNING" and u.attempts:
                        evs.append(NewEvent(E.ATTEMPT_CANCELED, "Attempt canceled", n.id, u.key or None, u.attempts[-1].n, {"error": "run canceled"}))
                if n.status in (StepStatus.PENDING, StepStatus.RUNNING):
                    evs.append(NewEvent(E.STEP_CANCELED, f"Step {n.short_id} canceled", n.id, payload={"reason": "run canceled"}))
            evs.append(NewEvent(E.RUN_CANCELED, "Run canceled"))
            self.store.append(run_id, evs, now)
            return "canceled"
        if action == "pause":
            self.store.append(run_id, [NewEvent(E.RUN_PAUSED, "Run paused" + (" before it started" if rec.status == "QUEUED" else ""), payload=payload)], now)
            return "paused"
        if action == "resume":
            self.store.append(run_id, [NewEvent(E.RUN_QUEUED, "Run re-queued after resume", payload=payload)], now)
            return "re-queued"
        self.store.put_control(run_id, action, payload, now)
        return f"{action} recorded; it is delivered when the run continues"

    # -- re-run in place and fork ----------------------------------------------------------------
    def request_rerun(self, run_id: str, step_id: str, *, unit: str | None = None, downstream: bool = False) -> list[str]:
        """Record a re-run of one step (or one unit of it) inside the run; mark dependents
        STALE (and due to run again with ``downstream``). Returns the stale step ids."""
        rec = self.get(run_id)
        if self._owned_live(rec) or run_id in self.active:
            raise RunStateError(f"run {run_id} is running; re-run a step once it has finished or paused")
        flow = Flow.model_validate(rec.spec["flow"])
        st = self.state_of(rec, flow)
        if step_id not in st.nodes:
            from llmflow.model.diagnostics import did_you_mean

            raise RunStateError(f"run {run_id} has no step {step_id!r}", hint=did_you_mean(step_id, list(st.nodes)) or f"steps: {', '.join(st.nodes)}")
        n = st.nodes[step_id]
        if unit is not None and unit not in n.units:
            raise RunStateError(f"step {step_id!r} has no unit {unit!r}", hint=f"units: {', '.join(n.units) or '(none)'}")
        if n.status in (StepStatus.PENDING, StepStatus.RUNNING) and rec.status not in RUN_TERMINAL and rec.status != "PAUSED":
            raise RunStateError(f"step {step_id!r} has not finished yet")
        g = build_graph(flow.steps)
        stale = g.downstream(step_id)
        evs = [NewEvent(E.STEP_RERUN, f"Re-run of {step_id}{'[' + unit + ']' if unit else ''} requested" + (" with downstream" if downstream else ""), step_id, unit, payload={"unit": unit, "downstream": downstream})]
        for d in stale:
            if st.nodes[d].status in (StepStatus.COMPLETED, StepStatus.FAILED, StepStatus.SKIPPED, StepStatus.STALE, StepStatus.CANCELED):
                evs.append(NewEvent(E.STEP_STALE, f"Step {d} is stale: {step_id} is re-running", d, payload={"because": step_id, "rerun": downstream}))
        self.store.append(run_id, evs, self.clock.now())
        return stale

    async def rerun(self, run_id: str, step_id: str, *, unit: str | None = None, downstream: bool = False, subscribers: list[Callable[[Event], None]] | None = None) -> RunState:
        self.request_rerun(run_id, step_id, unit=unit, downstream=downstream)
        return await self.execute(run_id, subscribers=subscribers)

    def fork(self, run_id: str, from_step: str, options: RunOptions | None = None) -> RunRecord:
        """A new run of the same flow that reuses the recorded outputs of every step that
        does not depend on ``from_step`` and runs the rest."""
        rec = self.get(run_id)
        flow = Flow.model_validate(rec.spec["flow"])
        st = self.state_of(rec, flow)
        g = build_graph(flow.steps)
        if from_step not in g.nodes:
            raise RunStateError(f"run {run_id} has no top-level step {from_step!r}")
        redo = {from_step, *g.downstream(from_step)}
        options = options or RunOptions(**{k: v for k, v in rec.options.items() if k in RunOptions.__dataclass_fields__})
        options.metadata = {**options.metadata, "forked_from": run_id, "from_step": from_step}
        new = self.create_run(LoadedFlow(flow, None, rec.spec.get("source", "<fork>")), rec.inputs, options, coerce_strings=False)
        evs: list[NewEvent] = []
        for nid in g.order:
            n = st.nodes[nid]
            if nid in redo or n.status != StepStatus.COMPLETED:
                continue
            evs.append(NewEvent(E.STEP_STARTED, f"Step {nid} reused from run {run_id}", nid, payload={"kind": n.spec.kind, "units": [], "reused_from": run_id}))
            evs.append(NewEvent(E.STEP_COMPLETED, f"Step {nid} completed (reused output of run {run_id})", nid, payload={"output": n.output, "reused_from": run_id}))
        if evs:
            self.store.append(new.id, evs, self.clock.now())
        return new

    # -- child runs -------------------------------------------------------------------------
    async def _run_child(self, ctx: StepContext, flow_ref: str, inputs: dict[str, Any], overrides: list[str], key: str | None = None) -> dict[str, Any]:
        parent = self.get(ctx.run_id)
        base = f"{ctx.run_id}.{ctx.node_id.replace('/', '.')}" + (f".{abs(hash(ctx.unit)) % 10**6}" if ctx.unit else "") + (f".{key}" if key else "")
        existing = self.store.get_run(base)
        child_id = base
        if existing is not None:
            if existing.status == "COMPLETED":
                return existing.outputs or {}
            if existing.status in ("FAILED", "CANCELED"):
                child_id = f"{base}.a{ctx.attempt}"
                existing = self.store.get_run(child_id)
        if existing is None:
            ref = flow_ref
            src = parent.spec.get("source")
            if src and not src.startswith("<") and not Path(flow_ref).is_absolute():
                cand = Path(src).parent / flow_ref
                if cand.exists():
                    ref = str(cand)
            opts = RunOptions(models=dict(parent.options.get("models") or {}), parent_run_id=ctx.run_id, batch_id=parent.batch_id, run_id=child_id, workspace=str(ctx.workspace))
            self.create_run(ref, inputs, opts, overrides=overrides)
        ctx.event(E.CHILD_RUN_STARTED, f"Sub-flow {flow_ref} running as run {child_id}", child_run_id=child_id, flow=flow_ref)
        st = await self.execute(child_id)
        if st.status != RunStatus.COMPLETED:
            raise StepError(f"sub-flow {flow_ref} (run {child_id}) ended {st.status}: {st.error or ''}".strip(), retryable=False)
        return st.outputs or {}

    # -- views ------------------------------------------------------------------------------
    def view(self, run_id: str) -> dict[str, Any]:
        """A run with its steps, attempts, outputs and usage, for the CLI and the API."""
        rec = self.get(run_id)
        st = self.state_of(rec)
        attempts = self.store.attempts(run_id)
        rows = self.store.step_rows(run_id)
        from llmflow.tools.view import tool_calls_by_step

        calls = tool_calls_by_step(self.store.events(run_id))
        steps = []
        for nid, n in st.nodes.items():
            r = rows.get(nid, {})
            atts = [a for a in attempts if a.step_id == nid]
            steps.append(
                {
                    "id": nid,
                    "kind": n.spec.kind,
                    "status": str(n.status),
                    "output": n.output,
                    "error": n.error,
                    "reason": n.reason,
                    "started_at": r.get("started_at"),
                    "ended_at": r.get("ended_at"),
                    "duration": (r["ended_at"] - r["started_at"]) if r.get("ended_at") and r.get("started_at") else None,
                    "model": next((a.model for a in reversed(atts) if a.model), None),
                    "tokens_in": sum(a.tokens_in for a in atts),
                    "tokens_out": sum(a.tokens_out for a in atts),
                    "tool_calls": calls.get(nid, []),
                    "attempts": [
                        {
                            "unit": a.unit,
                            "attempt": a.attempt,
                            "status": a.status,
                            "output": a.output,
                            "error": a.error,
                            "started_at": a.started_at,
                            "ended_at": a.ended_at,
                            "duration": (a.ended_at - a.started_at) if a.ended_at and a.started_at else None,
                            "model": a.model,
                            "tokens_in": a.tokens_in,
                            "tokens_out": a.tokens_out,
                            "cost": a.cost,
                            "info": a.info,
                        }
                        for a in atts
                    ],
                }
            )
        return {
            "id": rec.id,
            "flow": rec.flow_name,
            "status": rec.status,
            "created_at": rec.created_at,
            "started_at": rec.started_at,
            "ended_at": rec.ended_at,
            "duration": (rec.ended_at - rec.started_at) if rec.ended_at and rec.started_at else None,
            "inputs": rec.inputs,
            "outputs": rec.outputs,
            "error": rec.error,
            "usage": {"input_tokens": rec.tokens_in, "output_tokens": rec.tokens_out, "cost": rec.cost},
            "parent_run_id": rec.parent_run_id,
            "batch_id": rec.batch_id,
            "project_id": rec.project_id,
            "options": rec.options,
            "workspace": str(self.workspace_of(rec)),
            "steps": steps,
            "artifacts": [a.__dict__ for a in self.store.artifacts(run_id)],
        }

    def close(self) -> None:
        self.store.close()


def run_blocking(coro: Any) -> Any:
    """Run a coroutine to completion from sync code, also inside a running event loop
    (Jupyter): then it runs on a private loop in a helper thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="llmflow-sync") as pool:
        return pool.submit(asyncio.run, coro).result()
