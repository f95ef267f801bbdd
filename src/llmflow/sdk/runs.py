"""The Python API: ``await llmflow.run(...)``, ``llmflow.run_sync(...)`` and ``llmflow.start(...)``.

One async code path; ``run_sync`` wraps it and also works inside a running event loop
(Jupyter), where it runs on a private loop in a helper thread."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmflow.engine.events import Event
from llmflow.runtime import RunRequest, run_blocking
from llmflow.runtime.follow import EventFollower, EventHub
from llmflow.sdk.result import Run, StepResult

if TYPE_CHECKING:
    from llmflow.runtime.ports import RunService

__all__ = ["Run", "RunHandle", "StepResult", "run", "run_sync", "start"]


def _options(
    models: dict[str, str] | str | None, timeout: float | None, workspace: str | Path | None, **kw: Any
) -> RunRequest:
    if isinstance(models, str):
        models = {"*": models}
    return RunRequest(
        models=dict(models or {}), timeout=timeout, workspace=str(workspace) if workspace else None, **kw
    )


def _runtime(runtime: RunService | None, home: str | Path | None) -> tuple[RunService, bool]:
    """The caller's runtime, or the process's shared one (opened once, never closed here)."""
    if runtime is not None:
        return runtime, False
    from llmflow.runtime import shared_runtime

    return shared_runtime(Path(home) if home else None), False


class RunHandle:
    """A run executing in the background of the current event loop."""

    def __init__(self, runtime: RunService, run_id: str, owns_runtime: bool) -> None:
        self.runtime = runtime
        self.id = run_id
        self._owns = owns_runtime
        self._hub = EventHub()  # the runner's events wake the followers of this handle
        self._runner: Any = None
        self._task: asyncio.Task[Any] | None = None

    def _start(self) -> None:
        def on_runner(r: Any) -> None:
            self._runner = r

        async def go() -> Any:
            try:
                return await self.runtime.execute(
                    self.id,
                    subscribers=[self._hub.publish],
                    linger_when_paused=True,
                    on_runner=on_runner,
                )
            finally:
                self._hub.notify(self.id)

        self._task = asyncio.create_task(go())

    async def events(self) -> AsyncIterator[Event]:
        """Every event of the run as it is recorded, from the first, until the run ends (or
        stops executing here: parked for a person, its lease lost)."""
        follower = EventFollower(self.runtime.store, self._hub, self.id)
        async for e in follower.events(stop=lambda: self._task is None or self._task.done()):
            yield e

    def _control(self, action: str, payload: dict[str, Any] | None = None) -> None:
        if self._runner is not None:
            self._runner.control(action, payload or {})
        else:
            self.runtime.control(self.id, action, payload)

    def cancel(self) -> None:
        self._control("cancel")

    def pause(self) -> None:
        self._control("pause")

    def resume(self) -> None:
        self._control("resume")

    def answer(self, answer: Any, request_id: str | None = None) -> None:
        self._control("answer", {"answer": answer, "request_id": request_id})

    async def wait(self) -> Run:
        assert self._task is not None
        await self._task
        v = self.runtime.view(self.id)
        if self._owns:
            self.runtime.close()
        return Run.from_view(v)

    async def rerun(self, step: str, *, unit: str | None = None, downstream: bool = False) -> Run:
        """Re-run one step (or one unit of it) in place, after the run has finished."""
        if self._task is not None and not self._task.done():
            await self._task
        await self.runtime.rerun(self.id, step, unit=unit, downstream=downstream)
        return Run.from_view(self.runtime.view(self.id))


async def start(
    flow: Any,
    inputs: dict[str, Any] | None = None,
    *,
    overrides: list[str] | None = None,
    models: dict[str, str] | str | None = None,
    timeout: float | None = None,
    workspace: str | Path | None = None,
    home: str | Path | None = None,
    runtime: RunService | None = None,
    **options: Any,
) -> RunHandle:
    rt, owns = _runtime(runtime, home)
    rec = rt.create_run(
        flow, inputs, _options(models, timeout, workspace, **options), overrides=overrides, claim=True
    )
    h = RunHandle(rt, rec.id, owns)
    h._start()
    return h


async def run(
    flow: Any,
    inputs: dict[str, Any] | None = None,
    *,
    overrides: list[str] | None = None,
    models: dict[str, str] | str | None = None,
    timeout: float | None = None,
    workspace: str | Path | None = None,
    home: str | Path | None = None,
    runtime: RunService | None = None,
    on_event: Callable[[Event], None] | None = None,
    **options: Any,
) -> Run:
    """Run a flow (a name, a path, a Flow) to the end and return the result."""
    rt, owns = _runtime(runtime, home)
    try:
        rec = rt.create_run(
            flow,
            inputs,
            _options(models, timeout, workspace, **options),
            overrides=overrides,
            claim=True,
            defer=True,
        )
        st = await rt.execute(rec.id, subscribers=[on_event] if on_event else None)
        return Run.from_view(rt.view(rec.id, st))
    finally:
        if owns:
            rt.close()


def run_sync(flow: Any, inputs: dict[str, Any] | None = None, **kw: Any) -> Run:
    """``run`` for scripts and notebooks (works inside Jupyter's running loop)."""
    return run_blocking(run(flow, inputs, **kw))
