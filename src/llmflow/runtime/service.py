"""The runtime: create runs, execute them (fresh, resumed or recovered), control them,
re-run steps in place and fork runs. Built by :func:`llmflow.runtime.root.build_runtime`.

Every decision about a run - also for a run no process executes (cancel, pause, resume,
answer, re-run) - is made by :func:`llmflow.engine.scheduler.decide` on the run's folded
state; the runtime only loads, appends and hands over. Every event it appends, by any path,
reaches the runtime's ``observers`` once it is durable.

A run keeps the choices it was created with (``options["choices"]``): the models the
environment chose (``LLMFLOW_MODEL*``), the settings that change behaviour, the flow
version. Executing it later, in this process or another, uses those, never the executing
process's environment.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
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
from llmflow.engine.inputs import (
    CancelRequested,
    HumanAnswered,
    PauseRequested,
    RerunRequested,
    Resume,
    ResumeRequested,
    Start,
)
from llmflow.engine.models import resolve_model
from llmflow.engine.payloads import RunCreated
from llmflow.engine.ports import StepContext
from llmflow.engine.runner import Runner, RunnerConfig
from llmflow.engine.scheduler import decide
from llmflow.engine.state import FlowPlan, RunState, fold, new_state, plan_flow
from llmflow.engine.states import RUN_TERMINAL, RunStatus, StepStatus
from llmflow.errors import (
    FlowValidationError,
    ResumeRefusedError,
    RunNotFoundError,
    RunStateError,
    StepError,
)
from llmflow.runtime.flowcache import FlowCache
from llmflow.model.diagnostics import Location
from llmflow.model.graph import build_graph
from llmflow.model.limits import Limits
from llmflow.model.limits import using as using_limits
from llmflow.model.loader import LoadedFlow, restore_secrets
from llmflow.model.spec import BroadcastStep, Flow
from llmflow.model.validate import validate_inputs
from llmflow.providers.preflight import check_run_models
from llmflow.settings import Settings
from llmflow.steps.trust import TrustPolicy
from llmflow.store.base import RunRecord

log = logging.getLogger("llmflow.runtime")
Observer = Callable[[Event], None]
LLM_KINDS = ("llm", "broadcast", "conductor")


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
    # 48 random bits: thousands of runs a second must not collide (24 bits did, by birthday)
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(6)


def child_run_id(parent_id: str, node_id: str, unit: str) -> str:
    """Stable across processes (a content hash, never Python's salted ``hash()``): a resumed
    parent finds the child a previous process started."""
    base = f"{parent_id}.{node_id.replace('/', '.')}"
    if not unit:
        return base
    return f"{base}.{hashlib.blake2b(unit.encode(), digest_size=4).hexdigest()}"


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
    disallow_shell: bool | None = (
        None  # no shell / imported code, whatever the process allows (posted flows, their child runs)
    )

    def to_dict(self) -> dict[str, Any]:
        return {
            k: v
            for k, v in self.__dict__.items()
            if v not in (None, {}, []) and k not in ("run_id", "thread")
        }


class ControlMailbox:
    """The control mailbox as the runs this process executes poll it: one query per poll
    interval tells which runs have a control waiting (``Store.runs_with_controls``), and only
    those take theirs - instead of one transaction per run per interval (hundreds a second
    for a busy worker on Postgres). A control is seen within one interval either way."""

    def __init__(self, store: Any, io: Callable[..., Any], interval: float = 0.1) -> None:
        self.store = store
        self.io = io
        self.interval = interval
        self._pending: set[str] = set()
        self._at = float("-inf")
        self._busy = False

    async def take(self, run_id: str) -> list[Any]:
        if not self._busy and time.monotonic() - self._at >= self.interval:
            self._busy = True  # one look at a time; the others use the last answer meanwhile
            try:
                self._pending = await self.io(self.store.runs_with_controls)
                self._at = time.monotonic()
            finally:
                self._busy = False
        if run_id not in self._pending:
            return []
        self._pending.discard(run_id)
        return list(await self.io(self.store.take_controls, run_id))


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
        observers: list[Observer] | None = None,
        writer: Any | None = None,
    ) -> None:
        from llmflow.store.writer import writer_for

        self.settings = settings
        self.store = store
        self.executors = executors
        self.gateway = gateway
        self.clock = clock or SystemClock()
        self.functions = dict(functions or {})
        self.observers: list[Observer] = list(observers or [])
        self.writer = writer if writer is not None else writer_for(store)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(2)}"
        self.active: dict[str, Runner] = {}
        self.flows = FlowCache()
        self._flows: dict[str, Flow] = {}  # fingerprint -> validated Flow (specs are immutable)
        self._fingerprints: dict[int, tuple[Flow, str]] = {}
        self._plans: dict[int, FlowPlan] = {}
        self._records: dict[
            int, tuple[Any, dict[str, Any], str]
        ] = {}  # id(LoadedFlow or Flow) -> (it, its spec record, source)
        self._choices: dict[Any, dict[str, Any]] = {}
        self._tooled: dict[int, tuple[Flow, bool]] = {}
        self._checked: dict[
            Any, Flow
        ] = {}  # (flow id, run models) -> the flow whose models passed the preflight
        self._closed = False
        self._cache_dir = settings.state_dir / "cache"
        self._inline_io = not getattr(store, "shared", True) or not hasattr(self.writer, "call")
        self.mailbox = ControlMailbox(store, self.io) if hasattr(store, "runs_with_controls") else None
        self._fresh: dict[str, tuple[RunRecord, list[Event]]] = {}  # created here to run here next
        self._deferred: dict[
            str, tuple[RunRecord, list[NewEvent]]
        ] = {}  # to be written with their first events
        # where runs may write (steps/trust.py); a server adds the dirs it serves flows from
        self.trust = TrustPolicy.build(
            settings.home,
            config_dirs=[settings.config_dir, "conf"],
            database_path=getattr(store, "path", None),
        )
        self.limits = Limits.from_env(settings.env)  # template and flow limits of this process's runs
        from llmflow.tools.services import ToolServices

        self.tool_services = ToolServices(settings, run_child=self._run_child, store=store)

    async def io(self, fn: Callable[..., Any], *args: Any) -> Any:
        """A store call off the event loop (on the writer's thread) where the store is shared
        with other processes; in memory, directly."""
        if self._inline_io:
            return fn(*args)
        return await self.writer.call(fn, *args)

    # -- events --------------------------------------------------------------------------------
    def notify(self, events: list[Event]) -> None:
        """Hand durable events to the observers (an observer's error is logged, never raised)."""
        if not self.observers:
            return
        for e in events:
            for obs in self.observers:
                try:
                    obs(e)
                except Exception:  # noqa: BLE001 - observers never break a run
                    log.exception("event observer failed")

    def record(self, run_id: str, events: list[NewEvent]) -> list[Event]:
        """Append events to a run outside a runner and tell the observers."""
        stored = self.store.append(run_id, events, self.clock.now())
        self.notify(stored)
        return stored

    def record_new_run(self, run: RunRecord, events: list[NewEvent]) -> list[Event]:
        stored = self.store.create_run(run, events, self.clock.now())
        self.notify(stored)
        return stored

    # -- flows ---------------------------------------------------------------------------------
    def load(
        self, flow_ref: str | Path | Flow | LoadedFlow, overrides: list[str] | None = None
    ) -> LoadedFlow:
        if isinstance(flow_ref, LoadedFlow):
            return flow_ref
        if isinstance(flow_ref, Flow):
            return LoadedFlow(flow_ref, None, "<python>")
        return self.flows.load(flow_ref, list(overrides or []), self.settings.config_dir)

    def _record(self, loaded: LoadedFlow) -> dict[str, Any]:
        if loaded.composed is not None:
            hit = self._records.get(id(loaded))
            if hit is not None and hit[0] is loaded:  # a flow loaded elsewhere (a server's catalog), again
                return hit[1]
            rec = self.flows.record(loaded)
            # ``source`` is shown relative to the working directory; a process resuming the
            # run elsewhere (sub-flows, the source check) needs the absolute path too
            rec.setdefault("source_path", str(loaded.composed.target.flow_file))
            if len(self._records) > 256:
                self._records.clear()
            self._records[id(loaded)] = (loaded, rec, loaded.source)
            return rec
        # a flow built in Python: the same Flow object gives the same record
        hit = self._records.get(id(loaded.flow))
        if hit is not None and hit[0] is loaded.flow and hit[2] == loaded.source:
            return hit[1]
        rec = loaded.record()
        if len(self._records) > 256:
            self._records.clear()
        self._records[id(loaded.flow)] = (loaded.flow, rec, loaded.source)
        return rec

    def plan_of(self, flow: Flow) -> FlowPlan:
        p = self._plans.get(id(flow))
        if p is None or p.flow is not flow:
            p = plan_flow(flow)
            if len(self._plans) > 256:
                self._plans.clear()
            self._plans[id(flow)] = p
        return p

    # -- choices -------------------------------------------------------------------------------
    def choices(self, flow: Flow, run_models: dict[str, str]) -> dict[str, Any]:
        """What a run is created with and keeps: the models each LLM step resolves to (and
        what chose them), the environment's model settings, the behaviour settings."""
        s = self.settings
        key = (id(flow), tuple(sorted(run_models.items())), tuple(sorted(s.env_models.items())))
        hit = self._choices.get(key)
        if hit is not None and hit["_flow"] is flow:
            return {k: v for k, v in hit.items() if k != "_flow"}
        models: dict[str, dict[str, str]] = {}
        for step in flow.all_steps():
            if step.kind not in LLM_KINDS:
                continue
            agents = list(step.agents) if isinstance(step, BroadcastStep) else [getattr(step, "agent", None)]
            for a in agents:
                agent = flow.agents.get(a) if a else None
                model, source = resolve_model(
                    step, flow, agent=agent, run_models=run_models, env=s.env_models
                )
                models[f"{step.id}[{a}]" if isinstance(step, BroadcastStep) else step.id] = {
                    "model": model,
                    "source": source,
                }
        out = {
            "models": models,
            "env_models": dict(s.env_models),
            "settings": {
                "allow_shell": s.allow_shell,
                "max_units": s.max_units,
                "human_timeout": s.human_timeout,
                "block_real_models": s.block_real_models,
            },
            "flow_version": flow.version,
        }
        if len(self._choices) > 256:
            self._choices.clear()
        self._choices[key] = {**out, "_flow": flow}
        return out

    # -- runs ----------------------------------------------------------------------------------
    def create_run(
        self,
        flow_ref: Any,
        inputs: dict[str, Any] | None = None,
        options: RunOptions | None = None,
        *,
        overrides: list[str] | None = None,
        coerce_strings: bool = True,
        choices: dict[str, Any] | None = None,
        claim: bool = False,
        spec_record: dict[str, Any] | None = None,
        defer: bool = False,
    ) -> RunRecord:
        """Record a QUEUED run. ``claim``: this process executes it next, so it is created
        holding the lease (a worker polling the same queue cannot take it in between).
        ``spec_record``: the stored spec to keep (a fork keeps its source run's, secrets as
        their ``${oc.env:...}``), instead of recording the flow anew. ``defer`` (with
        ``claim``, for a caller that executes the run right away): the run is written with its
        first events, in one transaction, when it executes."""
        run, created = self._build_run(
            flow_ref,
            inputs,
            options,
            overrides=overrides,
            coerce_strings=coerce_strings,
            choices=choices,
            claim=claim,
            spec_record=spec_record,
        )
        if claim and defer:
            if len(self._deferred) > 1024:
                self._deferred.clear()
            self._deferred[run.id] = (run, created)
            return run
        stored = self.record_new_run(run, created)
        if claim:
            if len(self._fresh) > 1024:
                self._fresh.clear()
            self._fresh[run.id] = (replace(run, last_seq=len(stored)), stored)
        return run

    async def create_run_async(
        self,
        flow_ref: Any,
        inputs: dict[str, Any] | None = None,
        options: RunOptions | None = None,
        **kw: Any,
    ) -> RunRecord:
        """``create_run`` for a queue (a server's ``POST /runs``): the run is written in the
        writer's next group commit - off the event loop on Postgres, and the runs of
        concurrent requests share one transaction."""
        run, created = self._build_run(flow_ref, inputs, options, **kw)
        stored = await self.writer.append(run.id, created, self.clock.now(), create=run)
        self.notify(stored)
        return run

    def _build_run(
        self,
        flow_ref: Any,
        inputs: dict[str, Any] | None = None,
        options: RunOptions | None = None,
        *,
        overrides: list[str] | None = None,
        coerce_strings: bool = True,
        choices: dict[str, Any] | None = None,
        claim: bool = False,
        spec_record: dict[str, Any] | None = None,
    ) -> tuple[RunRecord, list[NewEvent]]:
        """The validated run record and its creation event (nothing written)."""
        loaded = self.load(flow_ref, overrides)
        flow = loaded.flow
        options = options or RunOptions()
        clean, diags = validate_inputs(flow, dict(inputs or {}), coerce_strings=coerce_strings)
        if diags:  # located in the flow's file (not "<flow>") when it has one
            raise FlowValidationError(
                [
                    d
                    if d.location.file or d.location.origin or loaded.source.startswith("<")
                    else replace(d, location=Location(file=loaded.source))
                    for d in diags
                ]
            )
        if options.thread is not None or self._uses_tools(flow):
            from llmflow.tools.check import check_loaded

            diags = check_loaded(loaded, self.tool_services, self.functions, thread=options.thread)
            if diags:
                raise FlowValidationError(diags)
        if options.models:
            ids = None
            for step in options.models:
                if step == "*":
                    continue
                ids = ids or {s.id for s in flow.all_steps()}
                if step not in ids:
                    from llmflow.model.diagnostics import Diagnostic, did_you_mean

                    raise FlowValidationError(
                        [
                            Diagnostic(
                                "unknown-step",
                                f"--model names unknown step '{step}'",
                                f"models.{step}",
                                did_you_mean(step, sorted(ids)) or "use STEP=provider:model",
                            )
                        ]
                    )
        self._check_models(loaded, options.models)  # unknown provider, no key: refused now
        now = self.clock.now()
        opts = options.to_dict()
        opts["choices"] = choices if choices is not None else self.choices(flow, dict(options.models))
        run = RunRecord(
            id=options.run_id or new_run_id(),
            flow_name=flow.name,
            status=RunStatus.QUEUED,
            created_at=now,
            inputs=clean,
            spec=spec_record if spec_record is not None else self._record(loaded),
            fingerprint=self._fingerprint(flow),
            options=opts,
            metadata={**options.metadata, **({"thread": options.thread} if options.thread else {})},
            parent_run_id=options.parent_run_id,
            batch_id=options.batch_id,
            project_id=options.project_id,
            name=options.name,
            goal=options.goal,
            run_type=options.run_type,
            owner=self.owner if claim else None,
            lease_expires_at=now + self.settings.lease_seconds if claim else None,
        )
        return run, [
            NewEvent(
                E.RUN_CREATED,
                f"Run created for flow {flow.name}",
                payload=RunCreated(flow=flow.name, version=flow.version, inputs=clean),
            )
        ]

    def _uses_tools(self, flow: Flow) -> bool:
        """Whether the flow declares tools (only then is there anything for the tool check to
        look at); once per flow object."""
        hit = self._tooled.get(id(flow))
        if hit is not None and hit[0] is flow:
            return hit[1]
        from llmflow.tools.check import tool_entries

        uses = next(iter(tool_entries(flow)), None) is not None
        if len(self._tooled) > 256:
            self._tooled.clear()
        self._tooled[id(flow)] = (flow, uses)
        return uses

    def _check_models(self, loaded: LoadedFlow, run_models: dict[str, str]) -> None:
        """``check_run_models``, once per flow object and model choice: the registry, the
        environment and the installed extras are fixed for this runtime (the check reads
        the plugin entry points, tens of milliseconds with many packages installed)."""
        key = (id(loaded.flow), tuple(sorted(run_models.items())))
        hit = self._checked.get(key)
        if hit is not None and hit is loaded.flow:
            return
        check_run_models(self.gateway, loaded, run_models, self.settings.env_models)
        if len(self._checked) > 256:
            self._checked.clear()
        self._checked[key] = loaded.flow

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
        if f is None:  # secrets were stored as their ${oc.env:...}: read them from this process's env
            f = Flow.model_validate(
                restore_secrets(rec.spec["flow"], rec.spec["secrets"], self.settings.env)
                if rec.spec.get("secrets")
                else rec.spec["flow"]
            )
            if len(self._flows) > 256:
                self._flows.clear()
            self._flows[rec.fingerprint] = f
        return f

    def flow_of(self, rec: RunRecord, *, force: bool = False, check_source: bool = True) -> Flow:
        stored = self._stored_flow(rec)
        source = rec.spec.get("source_path") or rec.spec.get("source")
        if not check_source or not source or source.startswith("<") or not Path(source).exists():
            return stored
        try:
            current = self.flows.load(source, rec.spec.get("overrides") or [], self.settings.config_dir).flow
        except Exception:  # noqa: BLE001 - an unloadable source: keep running what was recorded
            return stored
        if current is stored or self._fingerprint(current) == rec.fingerprint:
            return stored
        changed = changed_keys(stored.to_dict(), current.to_dict())
        if not force:
            raise ResumeRefusedError(
                f"flow {rec.flow_name!r} changed since run {rec.id} started ({source}): "
                + ", ".join(changed[:8])
                + (" ..." if len(changed) > 8 else ""),
                hint="restore the flow, or pass --force to continue with the new definition",
            )
        return current

    def state_of(
        self,
        rec: RunRecord,
        flow: Flow | None = None,
        events: list[Event] | None = None,
        workspace: Path | None = None,
    ) -> RunState:
        flow = flow or self._stored_flow(rec)
        st = new_state(rec.id, flow, rec.inputs, self._state_options(rec, workspace), self.plan_of(flow))
        return fold(st, self.store.events(rec.id) if events is None else events)

    def _state_options(self, rec: RunRecord, workspace: Path | None = None) -> dict[str, Any]:
        o = dict(rec.options)
        settings = (o.get("choices") or {}).get("settings") or {}
        o.setdefault("max_units", settings.get("max_units") or self.settings.max_units)
        o.setdefault(
            "human_timeout",
            settings.get("human_timeout") if "human_timeout" in settings else self.settings.human_timeout,
        )
        o["run_vars"] = {
            "workspace": str(workspace or self.workspace_of(rec)),
            "name": rec.name,
            "batch_id": rec.batch_id,
        }
        return o

    def workspace_of(self, rec: RunRecord) -> Path:
        ws = rec.options.get("workspace") or (rec.spec.get("flow", {}).get("options", {}) or {}).get(
            "workspace"
        )
        if ws:
            p = Path(ws).expanduser()
            if not p.is_absolute():
                src = rec.spec.get("source_path") or rec.spec.get("source")
                base = (
                    Path(src).parent
                    if src and not src.startswith("<") and not rec.options.get("workspace")
                    else self.settings.home
                )
                p = base / p
            return p
        return Path(os.path.join(self.settings.state_dir, "runs", rec.id, "workspace"))

    def artifacts_of(self, rec: RunRecord) -> Path:
        return Path(os.path.join(self.settings.state_dir, "runs", rec.id, "artifacts"))

    def _runner_config(
        self, rec: RunRecord, workspace: Path, *, linger_when_paused: bool, park_after: float | None
    ) -> RunnerConfig:
        choices = rec.options.get("choices")
        recorded = (choices or {}).get("settings") or {}
        # a takeover never widens what the run may do: shell only if both allow it
        allow_shell = (
            self.settings.allow_shell
            and recorded.get("allow_shell", True)
            and not rec.options.get("disallow_shell")
        )
        shared = getattr(self.store, "shared", True)
        return RunnerConfig(
            workspace=workspace,
            artifacts_dir=self.artifacts_of(rec),
            owner=self.owner if shared else None,  # a store only this process sees needs no lease renewal
            lease_seconds=self.settings.lease_seconds,
            linger_when_paused=linger_when_paused,
            allow_shell=bool(allow_shell),
            run_models=dict(rec.options.get("models") or {}),
            env_models=dict(choices["env_models"])
            if choices and "env_models" in choices
            else self.settings.env_models,
            functions=self.functions,
            cache_dir=self._cache_dir,
            park_after=park_after,
            poll_controls=shared,
            settings=self._step_settings(rec),
        )

    async def execute(
        self,
        run_id: str,
        *,
        subscribers: list[Observer] | None = None,
        linger_when_paused: bool = False,
        force: bool = False,
        on_runner: Callable[[Runner], None] | None = None,
        park_after: float | None = None,
        claimed: RunRecord | None = None,
    ) -> RunState:
        """Run (or continue) a run until it finishes, pauses, is parked (``park_after``: it
        waited that long for a person), or its lease is lost. ``claimed``: the record of a run
        this process has just claimed (a worker's queue scan), so it is not claimed again."""
        now = self.clock.now()
        io = self.io
        deferred = self._deferred.pop(run_id, None)
        fresh = self._fresh.pop(run_id, None)
        events: list[Event] | None = None
        if (
            claimed is not None
            and claimed.id == run_id
            and claimed.owner == self.owner
            and now < (claimed.lease_expires_at or 0) - self.settings.lease_seconds / 2
        ):
            pass  # claimed by this process a moment ago
        elif deferred is not None:  # not written yet: the runner's first commit creates it
            claimed, events = deferred[0], []
        elif fresh is not None and now - fresh[0].created_at < self.settings.lease_seconds / 2:
            # created here a moment ago, holding its lease: nothing to claim or read back
            claimed, events = fresh
        else:
            claimed, events = (
                await io(self.store.claim, self.owner, now, self.settings.lease_seconds, run_id),
                None,
            )
        if claimed is None:
            rec = self.get(run_id)
            if rec.status in RUN_TERMINAL:  # a re-run in place re-opens the run first (STEP_RERUN)
                raise RunStateError(
                    f"run {run_id} is {rec.status}; nothing to resume",
                    hint="use `llmflow runs rerun ID --step S` to re-run a step in place",
                )
            if owner_is_dead_here(rec.owner):
                # its process on this machine is gone: no need to wait for the lease to expire
                self.store.update_run(run_id, owner=None, lease_expires_at=None)
                claimed = self.store.claim(self.owner, now, self.settings.lease_seconds, run_id=run_id)
            if claimed is None:
                raise RunStateError(
                    f"run {run_id} is being executed by another process ({rec.owner})",
                    hint="wait for it, or cancel it with `llmflow runs cancel ID`",
                )
        st: RunState | None = None
        try:
            if events is None:
                events = await io(self.store.events, run_id)
            started = any(e.type == E.RUN_STARTED for e in events)
            flow = self.flow_of(claimed, force=force, check_source=started)
            workspace = self.workspace_of(claimed)
            st = self.state_of(claimed, flow, events, workspace)
            runner = Runner(
                log_=self.store,
                clock=self.clock,
                state=st,
                executors=self.executors,
                config=self._runner_config(
                    claimed, workspace, linger_when_paused=linger_when_paused, park_after=park_after
                ),
                llm=self.gateway,
                run_child=self._run_child,
                subscribers=[*self.observers, *(subscribers or [])],
                writer=self.writer,
                create=deferred,
                controls=self.mailbox.take if self.mailbox is not None else None,
            )
            self.active[run_id] = runner
            if on_runner is not None:
                on_runner(runner)
            with using_limits(self.limits):  # the runner's tasks and render threads inherit them
                return await runner.run(Resume(self.owner) if started else Start(self.owner))
        finally:
            self.active.pop(run_id, None)
            try:
                if st is None or not (
                    st.finished or st.status is RunStatus.WAITING
                ):  # those events ended the lease
                    await io(self.store.release, run_id, self.owner)
            except Exception:  # noqa: BLE001 - the lease expires anyway; keep the real error
                log.warning("run %s: releasing the lease failed", run_id, exc_info=True)

    def _step_settings(self, rec: RunRecord) -> dict[str, Any]:
        """What steps read from ``ctx.settings``: tool services, the run's thread, the flow's
        directory, and where the run may write (``trust``, steps/trust.py)."""
        src = rec.spec.get("source_path") or rec.spec.get("source")
        flow_dir = str(Path(src).resolve().parent) if src and not src.startswith("<") else None
        return {
            "tools": self.tool_services,
            "thread": (rec.metadata or {}).get("thread"),
            "flow_dir": flow_dir,
            "trust": self.trust,
        }

    async def run(
        self,
        flow_ref: Any,
        inputs: dict[str, Any] | None = None,
        options: RunOptions | None = None,
        **kw: Any,
    ) -> RunState:
        rec = self.create_run(flow_ref, inputs, options, claim=True, defer=True, **kw)
        return await self.execute(rec.id)

    # -- control -------------------------------------------------------------------------------
    def _owned_live(self, rec: RunRecord) -> bool:
        return rec.owner is not None and (rec.lease_expires_at or 0) > self.clock.now()

    def control(self, run_id: str, action: str, payload: dict[str, Any] | None = None) -> str:
        """cancel | pause | resume | answer | directive. Returns what happened, in words."""
        payload = payload or {}
        rec = self.get(run_id)
        runner = self.active.get(run_id)
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
        if runner is not None:
            runner.control(action, payload)
            return f"{action} sent to the running run"
        now = self.clock.now()
        if self._owned_live(rec):
            self.store.put_control(run_id, action, payload, now)
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
            st = self.state_of(rec)
            rid = payload.get("request_id")
            if st.open_requests and (rid is None or rid in st.open_requests):
                d = decide(st, HumanAnswered(rid, payload.get("answer")), now)
                self.record(run_id, d.events)
                return "answered; the run continues" + (
                    " (re-queued)" if st.status == RunStatus.QUEUED else ""
                )
            if rid is not None and rid in st.human_answers:
                raise RunStateError(f"request {rid!r} of run {run_id} was answered already")
        if inp is None:
            self.store.put_control(run_id, action, payload, now)
            return f"{action} recorded; it is delivered when the run continues"
        d = decide(self.state_of(rec), inp, now)
        self.record(run_id, d.events)
        return {"cancel": "canceled", "pause": "paused", "resume": "re-queued"}[action]

    def pending_requests(self, run_id: str) -> dict[str, dict[str, Any]]:
        """The run's open human-input requests: request id -> the question."""
        st = self.state_of(self.get(run_id))
        return {rid: st.human_requests.get(rid) or {} for rid in st.open_requests}

    # -- re-run in place and fork --------------------------------------------------------------
    def request_rerun(
        self, run_id: str, step_id: str, *, unit: str | None = None, downstream: bool = False
    ) -> list[str]:
        """Record a re-run of one step (or one unit of it) inside the run; mark dependents
        STALE (and due to run again with ``downstream``). Returns the stale step ids."""
        rec = self.get(run_id)
        if self._owned_live(rec) or run_id in self.active:
            raise RunStateError(f"run {run_id} is running; re-run a step once it has finished or paused")
        flow = self._stored_flow(rec)
        st = self.state_of(rec, flow)
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
        d = decide(st, RerunRequested(step_id, unit, downstream), self.clock.now())
        self.record(run_id, d.events)
        return build_graph(flow.steps).downstream(step_id)

    async def rerun(
        self,
        run_id: str,
        step_id: str,
        *,
        unit: str | None = None,
        downstream: bool = False,
        subscribers: list[Observer] | None = None,
    ) -> RunState:
        self.request_rerun(run_id, step_id, unit=unit, downstream=downstream)
        return await self.execute(run_id, subscribers=subscribers)

    def fork(self, run_id: str, from_step: str, options: RunOptions | None = None) -> RunRecord:
        """A new run of the same flow that reuses the recorded outputs of every step that
        does not depend on ``from_step`` and runs the rest."""
        rec = self.get(run_id)
        flow = self._stored_flow(rec)  # secrets read again from this process's environment
        st = self.state_of(rec, flow)
        g = build_graph(flow.steps)
        if from_step not in g.nodes:
            raise RunStateError(f"run {run_id} has no top-level step {from_step!r}")
        redo = {from_step, *g.downstream(from_step)}
        options = options or RunOptions(
            **{k: v for k, v in rec.options.items() if k in RunOptions.__dataclass_fields__}
        )
        options.metadata = {**options.metadata, "forked_from": run_id, "from_step": from_step}
        # the source run's spec record: its secrets stay stored as ${oc.env:...}, never as values
        new = self.create_run(
            LoadedFlow(flow, None, rec.spec.get("source", "<fork>")),
            rec.inputs,
            options,
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
                    payload={"kind": n.spec.kind, "units": [], "reused_from": run_id},
                )
            )
            evs.append(
                NewEvent(
                    E.STEP_COMPLETED,
                    f"Step {nid} completed (reused output of run {run_id})",
                    nid,
                    payload={"output": n.output, "reused_from": run_id},
                )
            )
        if evs:
            self.record(new.id, evs)
        return new

    # -- child runs ----------------------------------------------------------------------------
    async def _run_child(
        self,
        ctx: StepContext,
        flow_ref: str,
        inputs: dict[str, Any],
        overrides: list[str],
        key: str | None = None,
    ) -> dict[str, Any]:
        parent = self.get(ctx.run_id)
        base = child_run_id(ctx.run_id, ctx.node_id, ctx.unit) + (f".{key}" if key else "")
        existing = self.store.get_run(base)
        child_id = base
        if existing is not None:
            if existing.status == RunStatus.COMPLETED:
                return existing.outputs or {}
            if existing.status in (RunStatus.FAILED, RunStatus.CANCELED):
                child_id = f"{base}.a{ctx.attempt}"
                existing = self.store.get_run(child_id)
        if existing is None:
            ref = flow_ref
            src = parent.spec.get("source_path") or parent.spec.get("source")
            if src and not src.startswith("<") and not Path(flow_ref).is_absolute():
                cand = Path(src).parent / flow_ref
                if cand.exists():
                    ref = str(cand)
            # a child never may do more than its parent: a posted flow's sub-flow runs without shell too
            opts = RunOptions(
                models=dict(parent.options.get("models") or {}),
                parent_run_id=ctx.run_id,
                batch_id=parent.batch_id,
                run_id=child_id,
                workspace=str(ctx.workspace),
                disallow_shell=True if parent.options.get("disallow_shell") else None,
            )
            loaded = self.load(ref, overrides)
            inherited = parent.options.get("choices")
            choices = self._choices_with_env(loaded.flow, dict(opts.models), inherited) if inherited else None
            self.create_run(loaded, inputs, opts, choices=choices, claim=True)
        ctx.event(
            E.CHILD_RUN_STARTED,
            f"Sub-flow {flow_ref} running as run {child_id}",
            child_run_id=child_id,
            flow=flow_ref,
        )
        st = await self.execute(child_id)
        if st.status != RunStatus.COMPLETED:
            raise StepError(
                f"sub-flow {flow_ref} (run {child_id}) ended {st.status}: {st.error or ''}".strip(),
                retryable=False,
            )
        return st.outputs or {}

    def _choices_with_env(
        self, flow: Flow, run_models: dict[str, str], parent: dict[str, Any]
    ) -> dict[str, Any]:
        """A child run's choices: its own flow's models, resolved with the parent's recorded
        environment and settings."""
        env = parent.get("env_models") or {}
        models: dict[str, dict[str, str]] = {}
        for step in flow.all_steps():
            if step.kind in LLM_KINDS and not isinstance(step, BroadcastStep):
                agent_name = getattr(step, "agent", None)
                model, source = resolve_model(
                    step,
                    flow,
                    agent=flow.agents.get(agent_name) if agent_name else None,
                    run_models=run_models,
                    env=env,
                )
                models[step.id] = {"model": model, "source": source}
        return {**parent, "models": models, "flow_version": flow.version}

    # -- views ---------------------------------------------------------------------------------
    def view(self, run_id: str, state: RunState | None = None) -> dict[str, Any]:
        """A run with its steps, attempts, outputs and usage, for the CLI and the API
        (``state``: its folded state, when the caller has it)."""
        from llmflow.runtime.views import run_view

        return run_view(self, run_id, state)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        close = getattr(self.writer, "close", None)
        if close is not None:
            close()
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
