"""Executing a run: claim it (or take the one this process just created), fold its log,
drive it with a :class:`llmflow.engine.runner.RunDriver` until it finishes, pauses, is
parked or loses its lease, and give the lease back.

A run keeps the choices it was created with (``options["choices"]``): executing it later,
in this process or another, uses those, never the executing process's environment, and a
takeover never widens what the run may do."""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmflow.engine.events import Event
from llmflow.engine.events import EventType as E
from llmflow.engine.inputs import Resume, Start
from llmflow.engine.runner import RunDriver, RunnerConfig
from llmflow.engine.state import RunState
from llmflow.engine.states import RUN_TERMINAL, RunStatus
from llmflow.errors import RunStateError
from llmflow.model.limits import using as using_limits
from llmflow.runtime.ownership import owner_is_dead_here

if TYPE_CHECKING:
    from llmflow.runtime.service import Observer, Runtime
    from llmflow.store.base import RunRecord

log = logging.getLogger("llmflow.runtime")


async def _claim(
    rt: Runtime, run_id: str, claimed: RunRecord | None
) -> tuple[RunRecord, list[Event] | None, Any]:
    """The run's record with this process holding its lease, its events when already known,
    and its deferred creation (written with the driver's first commit), if any."""
    now = rt.clock.now()
    lease = rt.settings.lease_seconds
    deferred = rt._deferred.pop(run_id, None)
    fresh = rt._fresh.pop(run_id, None)
    events: list[Event] | None = None
    if (
        claimed is not None
        and claimed.id == run_id
        and claimed.owner == rt.owner
        and now < (claimed.lease_expires_at or 0) - lease / 2
    ):
        pass  # claimed by this process a moment ago
    elif deferred is not None:  # not written yet: the driver's first commit creates it
        claimed, events = deferred[0], []
    elif fresh is not None and now - fresh[0].created_at < lease / 2:
        # created here a moment ago, holding its lease: nothing to claim or read back
        claimed, events = fresh
    else:
        claimed = await rt.io(rt.store.claim, rt.owner, now, lease, run_id)
    if claimed is None:
        rec = await rt.io(rt.get, run_id)
        if rec.status in RUN_TERMINAL:  # a re-run in place re-opens the run first (STEP_RERUN)
            raise RunStateError(
                f"run {run_id} is {rec.status}; nothing to resume",
                hint="use `llmflow runs rerun ID --step S` to re-run a step in place",
            )
        if owner_is_dead_here(rec.owner):
            # its process on this machine is gone: no need to wait for the lease to expire
            await rt.io(functools.partial(rt.store.update_run, run_id, owner=None, lease_expires_at=None))
            claimed = await rt.io(functools.partial(rt.store.claim, rt.owner, now, lease, run_id=run_id))
        if claimed is None:
            raise RunStateError(
                f"run {run_id} is being executed by another process ({rec.owner})",
                hint="wait for it, or cancel it with `llmflow runs cancel ID`",
            )
    return claimed, events, deferred


async def execute(
    rt: Runtime,
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
    claimed, events, deferred = await _claim(rt, run_id, claimed)
    st: RunState | None = None
    try:
        if events is None:
            events = await rt.io(rt.store.events, run_id)
        started = any(e.type == E.RUN_STARTED for e in events)
        flow = rt.run_flows.flow_of(claimed, force=force, check_source=started)
        workspace = rt.workspace_of(claimed)
        st = rt.state_of(claimed, flow, events, workspace)
        driver = RunDriver(
            log_=rt.store,
            clock=rt.clock,
            state=st,
            executors=rt.executors,
            config=driver_config(
                rt, claimed, workspace, linger_when_paused=linger_when_paused, park_after=park_after
            ),
            llm=rt.gateway,
            run_child=rt.run_child,
            subscribers=[*_observers_of(rt, claimed), *(subscribers or [])],
            writer=rt.writer,
            create=deferred,
            controls=rt.mailbox.take if rt.mailbox is not None else None,
        )
        rt.active[run_id] = driver
        if on_runner is not None:
            on_runner(driver)
        with using_limits(rt.limits):  # the driver's tasks and render threads inherit them
            return await driver.run(Resume(rt.owner) if started else Start(rt.owner))
    finally:
        rt.active.pop(run_id, None)
        try:
            if st is None or not (
                st.finished or st.status is RunStatus.WAITING
            ):  # those events ended the lease
                await rt.io(rt.store.release, run_id, rt.owner)
        except Exception:  # noqa: BLE001 - the lease expires anyway; keep the real error
            log.warning("run %s: releasing the lease failed", run_id, exc_info=True)


def _observers_of(rt: Runtime, rec: RunRecord) -> list[Observer]:
    """The runtime's observers that want this run's events: one with a ``wants(record)``
    method (the results-file writer: only runs of flows with ``storage``) says so itself."""
    out = []
    for obs in rt.observers:
        wants = getattr(obs, "wants", None)
        if wants is None or wants(rec):
            out.append(obs)
    return out


def driver_config(
    rt: Runtime, rec: RunRecord, workspace: Path, *, linger_when_paused: bool, park_after: float | None
) -> RunnerConfig:
    choices = rec.options.get("choices")
    recorded = (choices or {}).get("settings") or {}
    # a takeover never widens what the run may do: shell only if both allow it
    allow_shell = (
        rt.settings.allow_shell
        and recorded.get("allow_shell", True)
        and not rec.options.get("disallow_shell")
    )
    shared = getattr(rt.store, "shared", True)
    return RunnerConfig(
        workspace=workspace,
        artifacts_dir=rt.artifacts_of(rec),
        owner=rt.owner if shared else None,  # a store only this process sees needs no lease renewal
        lease_seconds=rt.settings.lease_seconds,
        linger_when_paused=linger_when_paused,
        allow_shell=bool(allow_shell),
        run_models=dict(rec.options.get("models") or {}),
        env_models=dict(choices["env_models"])
        if choices and "env_models" in choices
        else rt.settings.env_models,
        functions=rt.functions,
        cache_dir=rt.cache_dir(),
        park_after=park_after,
        poll_controls=shared,
        settings=step_settings(rt, rec),
    )


def step_settings(rt: Runtime, rec: RunRecord) -> dict[str, Any]:
    """What steps read from ``ctx.settings``: tool services, the run's thread, the flow's
    directory, and where the run may write (``trust``, steps/trust.py)."""
    src = rec.spec.get("source_path") or rec.spec.get("source")
    flow_dir = None
    if src and not src.startswith("<"):
        # resolved once per path (it reads the file system); a relative source is resolved
        # against the current directory, as Path.resolve does, so that is part of the key
        key = src if os.path.isabs(src) else os.path.join(os.getcwd(), src)
        flow_dir = rt._flow_dirs.get(key)
        if flow_dir is None:
            flow_dir = str(Path(key).resolve().parent)
            if len(rt._flow_dirs) > 1024:
                rt._flow_dirs.clear()
            rt._flow_dirs[key] = flow_dir
    return {
        "tools": rt.tool_services,
        "thread": (rec.metadata or {}).get("thread"),
        "flow_dir": flow_dir,
        "trust": rt.trust,
    }
