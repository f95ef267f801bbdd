"""The Python API: ``await llmflow.run(...)``, ``llmflow.run_sync(...)`` and ``llmflow.start(...)``.

One async code path; ``run_sync`` wraps it and also works inside a running event loop
(Jupyter), where it runs on a private loop in a helper thread."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmflow.engine.events import Event
from llmflow.runtime import RunRequest, Runtime, run_blocking


@dataclass
class StepResult:
    id: str
    kind: str
    status: str
    output: Any = None
    error: str | None = None
    started_at: float | None = None
    ended_at: float | None = None
    duration: float | None = None
    model: str | None = None
    usage: dict[str, int] = field(default_factory=dict)
    attempts: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Run:
    """The result of a run: status, outputs, and every step with its attempts."""

    id: str
    flow: str
    status: str
    outputs: dict[str, Any] | None
    error: str | None
    steps: list[StepResult]
    usage: dict[str, Any]
    duration: float | None
    workspace: str | None = None
    artifacts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "COMPLETED"

    @property
    def output(self) -> Any:
        """The single output, when the run has one (``outputs['result']``)."""
        if not self.outputs:
            return None
        return self.outputs.get(
            "result", next(iter(self.outputs.values())) if len(self.outputs) == 1 else self.outputs
        )

    def step(self, step_id: str) -> StepResult:
        for s in self.steps:
            if s.id == step_id:
                return s
        raise KeyError(step_id)

    @classmethod
    def from_view(cls, v: dict[str, Any]) -> Run:
        steps = [
            StepResult(
                id=s["id"],
                kind=s["kind"],
                status=s["status"],
                output=s["output"],
                error=s["error"],
                started_at=s["started_at"],
                ended_at=s["ended_at"],
                duration=s["duration"],
                model=s["model"],
                usage={"input_tokens": s["tokens_in"], "output_tokens": s["tokens_out"]},
                attempts=s["attempts"],
            )
            for s in v["steps"]
        ]
        return cls(
            v["id"],
            v["flow"],
            v["status"],
            v["outputs"],
            v["error"],
            steps,
            v["usage"],
            v["duration"],
            v.get("workspace"),
            v.get("artifacts", []),
        )


def _options(
    models: dict[str, str] | str | None, timeout: float | None, workspace: str | Path | None, **kw: Any
) -> RunRequest:
    if isinstance(models, str):
        models = {"*": models}
    return RunRequest(
        models=dict(models or {}), timeout=timeout, workspace=str(workspace) if workspace else None, **kw
    )


def _runtime(runtime: Runtime | None, home: str | Path | None) -> tuple[Runtime, bool]:
    """The caller's runtime, or the process's shared one (opened once, never closed here)."""
    if runtime is not None:
        return runtime, False
    from llmflow.runtime import shared_runtime

    return shared_runtime(Path(home) if home else None), False


class RunHandle:
    """A run executing in the background of the current event loop."""

    def __init__(self, runtime: Runtime, run_id: str, owns_runtime: bool) -> None:
        self.runtime = runtime
        self.id = run_id
        self._owns = owns_runtime
        self._queue: asyncio.Queue[Event | None] = asyncio.Queue()
        self._runner: Any = None
        self._task: asyncio.Task[Any] | None = None

    def _start(self) -> None:
        def on_runner(r: Any) -> None:
            self._runner = r

        async def go() -> Any:
            try:
                return await self.runtime.execute(
                    self.id,
                    subscribers=[self._queue.put_nowait],
                    linger_when_paused=True,
                    on_runner=on_runner,
                )
            finally:
                self._queue.put_nowait(None)

        self._task = asyncio.create_task(go())

    async def events(self) -> AsyncIterator[Event]:
        """Every event of the run as it is recorded, from the first, until the run ends."""
        for e in self.runtime.store.events(self.id, 0, 1):
            yield e
        while True:
            e = await self._queue.get()
            if e is None:
                return
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
    runtime: Runtime | None = None,
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
    runtime: Runtime | None = None,
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
