"""The runtime: create runs, execute them (fresh, resumed or recovered), control them,
re-run steps in place and fork runs. Built by :func:`llmflow.runtime.root.build_runtime`.

Every decision about a run - also for a run no process executes (cancel, pause, resume,
answer, re-run) - is made by :func:`llmflow.engine.scheduler.decide` on the run's folded
state; the runtime only loads, appends and hands over. Every event it appends, by any path,
reaches the runtime's ``observers`` once it is durable.

:class:`Runtime` is the service's one face; its parts live beside it: the run's flow and
its caches (``flows.py``), a new run's record (``creation.py``), executing a run
(``execution.py``), controls, re-runs and forks (``control.py``), child runs
(``children.py``), leases and ownership (``ownership.py``), the view of a run
(``views.py``).
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from llmflow.engine.events import Event, NewEvent
from llmflow.engine.ports import Clock, StepContext
from llmflow.engine.runner import RunDriver
from llmflow.engine.state import RunState, fold, new_state
from llmflow.errors import RunNotFoundError
from llmflow.model.loader import LoadedFlow
from llmflow.model.spec import Flow
from llmflow.runtime import children, control, creation, execution
from llmflow.runtime.flows import RunFlows
from llmflow.runtime.options import RunRequest
from llmflow.runtime.ownership import ControlMailbox, SystemClock, new_owner, owned_live
from llmflow.settings import Settings
from llmflow.steps.trust import TrustPolicy
from llmflow.store.base import RunRecord, Store

log = logging.getLogger("llmflow.runtime")
Observer = Callable[[Event], None]
_BOUND = 1024  # runs created here and not executed yet, remembered


class Runtime:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        *,
        executors: Mapping[str, Any],
        gateway: Any,
        clock: Clock | None = None,
        functions: dict[str, Callable[..., Any]] | None = None,
        observers: list[Observer] | None = None,
        writer: Any | None = None,
    ) -> None:
        from llmflow.store.writer import writer_for

        self.settings = settings
        self.store = store
        self.executors = executors
        self.gateway = gateway
        self.clock: Clock = clock or SystemClock()
        self.functions = dict(functions or {})
        self.observers: list[Observer] = list(observers or [])
        self.writer = writer if writer is not None else writer_for(store)
        self.owner = new_owner()
        self.active: dict[str, RunDriver] = {}
        self.run_flows = RunFlows(settings, gateway)
        self.flows = self.run_flows.cache  # composed flows, cached by file stamps
        self._closed = False
        self._paths_of: tuple[Settings, str, Path] | None = None
        self._flow_dirs: dict[str, str | None] = {}  # a run's source file -> its directory
        self._inline_io = not getattr(store, "shared", True) or not hasattr(self.writer, "call")
        self.mailbox = ControlMailbox(store, self.io) if hasattr(store, "runs_with_controls") else None
        self._fresh: dict[str, tuple[RunRecord, list[Event]]] = {}  # created here to run here next
        self._deferred: dict[str, tuple[RunRecord, list[NewEvent]]] = {}  # written with their first events
        # where runs may write (steps/trust.py); a server adds the dirs it serves flows from
        self.trust = TrustPolicy.build(
            settings.home,
            config_dirs=[settings.config_dir, "conf"],
            database_path=getattr(store, "path", None),
        )
        self.limits = settings.limits()  # template and flow limits of this process's runs
        from llmflow.tools.services import ToolServices

        self.tool_services = ToolServices(settings, run_child=self.run_child, store=store)

    @property
    def closed(self) -> bool:
        return self._closed

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
        return self.run_flows.load(flow_ref, overrides)

    def flow_of(self, rec: RunRecord, *, force: bool = False, check_source: bool = True) -> Flow:
        return self.run_flows.flow_of(rec, force=force, check_source=check_source)

    # -- runs ----------------------------------------------------------------------------------
    def create_run(
        self,
        flow_ref: Any,
        inputs: dict[str, Any] | None = None,
        options: RunRequest | None = None,
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
        run, created = creation.build_run(
            self,
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
            if len(self._deferred) > _BOUND:
                self._deferred.clear()
            self._deferred[run.id] = (run, created)
            return run
        stored = self.record_new_run(run, created)
        if claim:
            if len(self._fresh) > _BOUND:
                self._fresh.clear()
            self._fresh[run.id] = (replace(run, last_seq=len(stored)), stored)
        return run

    async def create_run_async(
        self,
        flow_ref: Any,
        inputs: dict[str, Any] | None = None,
        options: RunRequest | None = None,
        **kw: Any,
    ) -> RunRecord:
        """``create_run`` for a queue (a server's ``POST /runs``): the run is written in the
        writer's next group commit - off the event loop on Postgres, and the runs of
        concurrent requests share one transaction."""
        run, created = creation.build_run(self, flow_ref, inputs, options, **kw)
        stored = await self.writer.append(run.id, created, self.clock.now(), create=run)
        self.notify(stored)
        return run

    def build_run(
        self,
        flow_ref: Any,
        inputs: dict[str, Any] | None = None,
        options: RunRequest | None = None,
        **kw: Any,
    ) -> tuple[RunRecord, list[NewEvent]]:
        """A QUEUED run and its first events, validated but not written: a caller that takes
        several runs at once builds them all (any refusal raises before anything is written),
        then hands them to :meth:`create_runs_async`."""
        return creation.build_run(self, flow_ref, inputs, options, **kw)

    async def create_runs_async(self, built: list[tuple[RunRecord, list[NewEvent]]]) -> list[RunRecord]:
        """Write runs made by :meth:`build_run`, all at once: their appends meet in the
        writer's group commit (a hundred runs cost a few transactions, not a hundred)."""
        import asyncio

        now = self.clock.now()
        stored = await asyncio.gather(
            *(self.writer.append(run.id, created, now, create=run) for run, created in built)
        )
        for events in stored:
            self.notify(events)
        return [run for run, _ in built]

    def get(self, run_id: str) -> RunRecord:
        rec = self.store.get_run(run_id)
        if rec is None:
            raise RunNotFoundError(f"no run {run_id!r}", hint="list runs with `llmflow runs list`")
        return rec

    def state_of(
        self,
        rec: RunRecord,
        flow: Flow | None = None,
        events: list[Event] | None = None,
        workspace: Path | None = None,
    ) -> RunState:
        flow = flow or self.run_flows.stored_flow(rec)
        st = new_state(
            rec.id, flow, rec.inputs, self._state_options(rec, workspace), self.run_flows.plan_of(flow)
        )
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
        return Path(os.path.join(self._paths()[0], rec.id, "workspace"))

    def artifacts_of(self, rec: RunRecord) -> Path:
        return Path(os.path.join(self._paths()[0], rec.id, "artifacts"))

    def _paths(self) -> tuple[str, Path]:
        """(the runs directory, the step cache directory) of these settings, computed once
        (``settings.state_dir`` builds a new path on every read)."""
        hit = self._paths_of
        if hit is None or hit[0] is not self.settings:
            state = self.settings.state_dir
            hit = self._paths_of = (self.settings, os.path.join(state, "runs"), state / "cache")
        return hit[1], hit[2]

    def cache_dir(self) -> Path:
        """Where steps with ``cache: true`` keep their outputs."""
        return self._paths()[1]

    async def execute(
        self,
        run_id: str,
        *,
        subscribers: list[Observer] | None = None,
        linger_when_paused: bool = False,
        force: bool = False,
        on_runner: Callable[[RunDriver], None] | None = None,
        park_after: float | None = None,
        claimed: RunRecord | None = None,
    ) -> RunState:
        """Run (or continue) a run until it finishes, pauses, is parked (``park_after``: it
        waited that long for a person), or its lease is lost. ``claimed``: the record of a run
        this process has just claimed (a worker's queue scan), so it is not claimed again."""
        return await execution.execute(
            self,
            run_id,
            subscribers=subscribers,
            linger_when_paused=linger_when_paused,
            force=force,
            on_runner=on_runner,
            park_after=park_after,
            claimed=claimed,
        )

    async def run(
        self,
        flow_ref: Any,
        inputs: dict[str, Any] | None = None,
        options: RunRequest | None = None,
        **kw: Any,
    ) -> RunState:
        rec = self.create_run(flow_ref, inputs, options, claim=True, defer=True, **kw)
        return await self.execute(rec.id)

    # -- control, re-run in place, fork (control.py) -------------------------------------------
    def owned_live(self, rec: RunRecord) -> bool:
        """Some process (this one or another) holds the run's lease now."""
        return owned_live(rec, self.clock.now())

    def control(self, run_id: str, action: str, payload: dict[str, Any] | None = None) -> str:
        """cancel | pause | resume | answer | directive. Returns what happened, in words."""
        return control.control(self, run_id, action, payload)

    def fail_run(self, run_id: str, error: str) -> list[Event]:
        """Record that a claimed run cannot be executed and release it (control.fail_run);
        synchronous store calls: call it through ``io``."""
        return control.fail_run(self, run_id, error)

    def pending_requests(self, run_id: str) -> dict[str, dict[str, Any]]:
        """The run's open human-input requests: request id -> the question."""
        return control.pending_requests(self, run_id)

    def request_rerun(
        self, run_id: str, step_id: str, *, unit: str | None = None, downstream: bool = False
    ) -> list[str]:
        """Record a re-run of one step (or one unit of it) inside the run; mark dependents
        STALE (and due to run again with ``downstream``). Returns the stale step ids."""
        return control.request_rerun(self, run_id, step_id, unit=unit, downstream=downstream)

    async def rerun(
        self,
        run_id: str,
        step_id: str,
        *,
        unit: str | None = None,
        downstream: bool = False,
        subscribers: list[Observer] | None = None,
    ) -> RunState:
        # folded, decided and recorded through io: off the event loop on a shared store
        await self.io(
            functools.partial(self.request_rerun, run_id, step_id, unit=unit, downstream=downstream)
        )
        return await self.execute(run_id, subscribers=subscribers)

    def fork(self, run_id: str, from_step: str, options: RunRequest | None = None) -> RunRecord:
        """A new run of the same flow that reuses the recorded outputs of every step that
        does not depend on ``from_step`` and runs the rest."""
        return control.fork(self, run_id, from_step, options)

    async def run_child(
        self,
        ctx: StepContext,
        flow_ref: str,
        inputs: dict[str, Any],
        overrides: list[str],
        key: str | None = None,
    ) -> dict[str, Any]:
        """A sub-flow of the step ``ctx`` runs, as a child run (children.py)."""
        return await children.run_child(self, ctx, flow_ref, inputs, overrides, key)

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
