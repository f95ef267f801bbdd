"""The SuperOptiX-style runner API, thin over the runtime: every call is a recorded run.

::

    from llmflow import Runner

    runner = Runner({"model": "fake:", "system": "You summarise."})   # an agent config,
    result = runner.run_sync("Some text")                             # a flow, a path, or
    results = runner.run_batch_sync(["a", "b", "c"], max_concurrent=2)  # a Python callable
    runner.get_execution_stats()["avg_response_time"]

Scheme: the methods are ``async`` (``await runner.run(...)``), each with a ``*_sync`` twin
for scripts and notebooks; the sync twins also work inside a running event loop
(Jupyter), where they run on a private loop in a helper thread. Results are
:class:`llmflow.Run`, as ``llmflow.run`` returns them, also read by SuperOptiX's keys:
``status``, ``success``, ``output``, ``outputs``, ``error``, ``duration``, ``run_id``,
``usage``. ``run_batch`` runs through the batch engine (a batch in the store, bounded
concurrency) and returns the results in input order (without their steps:
``runtime.view(result.run_id)`` has them).
"""

from __future__ import annotations

import inspect
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmflow.model.loader import LoadedFlow
from llmflow.model.spec import AgentSpec, Flow
from llmflow.runtime import RunRequest, run_blocking
from llmflow.sdk.result import Run

if TYPE_CHECKING:
    from llmflow.runtime.ports import RunService

MAIN_INPUTS = ("input", "query", "prompt", "text", "goal", "question")


def text_of(expr: str) -> str:
    """A template rendering ``expr`` as prompt text (strings as they are, else JSON)."""
    return "{{ " + f"{expr} if {expr} is string else {expr} | tojson" + " }}"


def unwrap(expr: str) -> str:
    """A sub-flow's outputs with one key -> that value (so a flow agent chains like others):
    :func:`llmflow.sdk.result.only_value` as a template expression."""
    return f"({expr}.values() | first if {expr} is mapping and {expr} | length == 1 else {expr})"


def main_input(flow: Flow) -> str | None:
    """The input a bare value feeds: the only (required) one, else a conventional name."""
    names = list(flow.inputs)
    required = [k for k, s in flow.inputs.items() if s.is_required]
    if len(required) == 1:
        return required[0]
    if len(names) == 1:
        return names[0]
    return next((n for n in MAIN_INPUTS if n in flow.inputs), None)


@dataclass
class Agent:
    """How one agent runs: an llm step with an agent config, a python step calling a
    function, or a flow step running a flow file."""

    name: str
    kind: str  # llm | python | flow
    spec: AgentSpec | None = None
    function: str | None = None  # key in the runtime's functions
    flow_path: str | None = None
    flow: Flow | None = None

    def step(self, sid: str, expr: str, value: Any = None) -> dict[str, Any]:
        """A step feeding this agent the value of the template expression ``expr``
        (``value``: that value when it is known now, to map a mapping onto flow inputs)."""
        if self.kind == "llm":
            return {"id": sid, "kind": "llm", "agent": self.name, "prompt": text_of(expr)}
        if self.kind == "python":
            return {
                "id": sid,
                "kind": "python",
                "function": self.function,
                "args": {"input": "{{ " + expr + " }}"},
            }
        assert self.flow is not None
        if isinstance(value, dict) and value and set(value) <= set(self.flow.inputs):
            inputs = {k: "{{ " + f"{expr}[{k!r}]" + " }}" for k in value}
        else:
            target = main_input(self.flow)
            inputs = {target: "{{ " + expr + " }}"} if target else {}
        return {"id": sid, "kind": "flow", "flow": self.flow_path, "inputs": inputs}

    def output_expr(self, sid: str) -> str:
        return unwrap(f"steps.{sid}.output") if self.kind == "flow" else f"steps.{sid}.output"


def _agent_error(exc: Exception) -> Exception:
    """An agent's exception as the task's error (SuperOptiX reports it so): a StepError
    with the exception's type and message, so no traceback reaches stderr."""
    from llmflow.errors import LlmflowError, StepError

    if isinstance(exc, LlmflowError):
        return exc
    return StepError(f"{type(exc).__name__}: {exc}", retryable=False)


def _callable_wrapper(fn: Callable[..., Any]) -> Callable[..., Any]:
    if inspect.iscoroutinefunction(fn):

        async def acall(input: Any = None) -> Any:  # noqa: A002 - the step argument's name
            try:
                return await fn(input)
            except Exception as exc:  # noqa: BLE001 - any agent failure is the task's error
                raise _agent_error(exc) from exc

        return acall

    def call(input: Any = None) -> Any:  # noqa: A002
        try:
            return fn(input)
        except Exception as exc:  # noqa: BLE001 - any agent failure is the task's error
            raise _agent_error(exc) from exc

    return call


def make_agent(name: str, obj: Any, rt: RunService) -> Agent:
    """An agent from a config (dict or AgentSpec), a Flow, a flow path, or a callable."""
    if isinstance(obj, AgentSpec):
        return Agent(name, "llm", spec=obj)
    if isinstance(obj, dict):
        return Agent(name, "llm", spec=AgentSpec.model_validate(obj))
    if isinstance(obj, Flow | LoadedFlow):
        flow = obj.flow if isinstance(obj, LoadedFlow) else obj
        d = rt.settings.state_dir / "python-flows"
        d.mkdir(parents=True, exist_ok=True)
        path = d / f"{flow.name}-{flow.fingerprint()}.yaml"
        if not path.exists():
            path.write_text(flow.to_yaml())
        return Agent(name, "flow", flow_path=str(path), flow=flow)
    if isinstance(obj, str | Path) and not callable(obj):
        loaded = rt.load(obj)
        src = loaded.source if loaded.source and not loaded.source.startswith("<") else str(obj)
        return Agent(name, "flow", flow_path=str(Path(src).resolve()), flow=loaded.flow)
    if callable(obj):
        key = f"python-agent:{name}:{id(obj):x}"
        rt.functions[key] = _callable_wrapper(obj)
        return Agent(name, "python", function=key)
    raise TypeError(
        f"agent {name!r}: expected an agent config (dict or AgentSpec), a Flow, a flow path or a callable, got {type(obj).__name__}"
    )


def step_id(i: int, name: str) -> str:
    return f"s{i}_" + re.sub(r"\W", "_", name)[:40]


def flow_for(
    agents: list[Agent],
    steps: list[dict[str, Any]],
    name: str,
    outputs: dict[str, str] | None = None,
    **options: Any,
) -> Flow:
    return Flow.model_validate(
        {
            "name": name,
            "inputs": {"input": {"type": "any", "default": None}},
            "agents": {
                a.name: a.spec.model_dump(exclude_defaults=True)
                for a in agents
                if a.kind == "llm" and a.spec is not None
            },
            "steps": steps,
            **({"outputs": outputs} if outputs else {}),
            **({"options": options} if options else {}),
        }
    )


def _runtime(runtime: RunService | None, home: str | Path | None) -> RunService:
    if runtime is not None:
        return runtime
    from llmflow.runtime import shared_runtime  # one store per process, shared by every call

    return shared_runtime(Path(home) if home else None)


class Runner:
    """Run one flow (or one agent, or one callable) on a query or inputs; keep statistics."""

    def __init__(
        self,
        flow: Any,
        *,
        runtime: RunService | None = None,
        home: str | Path | None = None,
        models: dict[str, str] | str | None = None,
        name: str | None = None,
    ) -> None:
        self._own = False  # a given runtime is the caller's; the shared one outlives this Runner
        self.runtime = _runtime(runtime, home)
        self.models = {"*": models} if isinstance(models, str) else dict(models or {})
        if isinstance(flow, Flow | LoadedFlow) or (isinstance(flow, str | Path) and not callable(flow)):
            self.loaded = self.runtime.load(flow)
        else:
            agent = make_agent(name or getattr(flow, "__name__", None) or "agent", flow, self.runtime)
            step = agent.step("run", "inputs.input")
            self.loaded = LoadedFlow(
                flow_for(
                    [agent], [step], name or f"runner-{agent.name}", {"result": "{{ steps.run.output }}"}
                ),
                None,
                "<python>",
            )
        self.reset_stats()

    @property
    def flow(self) -> Flow:
        return self.loaded.flow

    def inputs_for(self, query_or_inputs: Any = None, **inputs: Any) -> dict[str, Any]:
        if isinstance(query_or_inputs, dict):
            return {**query_or_inputs, **inputs}
        if query_or_inputs is None:
            return dict(inputs)
        target = main_input(self.flow)
        if target is None:
            from llmflow.errors import RunStateError

            raise RunStateError(
                f"flow {self.flow.name!r} takes several inputs ({', '.join(self.flow.inputs)}); pass a dict",
                hint="runner.run({'name': value, ...})",
            )
        return {target: query_or_inputs, **inputs}

    def _options(self, **kw: Any) -> RunRequest:
        return RunRequest(models=dict(self.models), run_type="runner", **kw)

    def _record(self, result: Run) -> Run:
        s = self._stats
        s["total_runs"] += 1
        s["successful_runs" if result.success else "failed_runs"] += 1
        d = result.duration or 0.0
        s["durations"].append(d)
        u = result.usage or {}
        s["total_tokens"] += int(u.get("input_tokens") or 0) + int(u.get("output_tokens") or 0)
        s["total_cost"] += float(u.get("cost") or 0.0)
        return result

    async def run(self, query_or_inputs: Any = None, /, **inputs: Any) -> Run:
        """Run once; the result also reads as ``{status, success, output, outputs, error,
        duration, run_id, usage}``."""
        rt = self.runtime
        rec = rt.create_run(
            self.loaded, self.inputs_for(query_or_inputs, **inputs), self._options(), claim=True
        )
        st = await rt.execute(rec.id)
        return self._record(Run.from_view(rt.view(rec.id, st)))

    def run_sync(self, query_or_inputs: Any = None, /, **inputs: Any) -> Run:
        return run_blocking(self.run(query_or_inputs, **inputs))

    async def run_batch(
        self,
        queries: list[Any],
        max_concurrent: int = 1,
        *,
        error_policy: str = "continue",
        output: str | None = None,
    ) -> list[Run]:
        """Run every query (a value or a dict of inputs) as one batch, at most
        ``max_concurrent`` at once; results in input order."""
        from llmflow.batch.plan import BatchRequest
        from llmflow.batch.start import prepare_batch

        if not queries:
            return []
        records = [{**self.inputs_for(q), "__record": str(i)} for i, q in enumerate(queries)]
        rows: dict[int, dict[str, Any]] = {}
        req = BatchRequest(
            flow=self.loaded,
            inline_records=records,
            record_id="__record",
            max_workers=max(1, max_concurrent),
            error_policy=error_policy,
            output=output,
            models=dict(self.models),
        )

        def on_row(row: dict[str, Any]) -> None:
            rows[int(row["record_id"])] = row

        await prepare_batch(self.runtime, req, on_row=on_row).run()
        name = self.flow.name
        return [
            self._record(Run.from_row(name, rows[i]))
            if i in rows
            else Run.not_run(name, "not run (the batch stopped)")
            for i in range(len(queries))
        ]

    def run_batch_sync(self, queries: list[Any], max_concurrent: int = 1, **kw: Any) -> list[Run]:
        return run_blocking(self.run_batch(queries, max_concurrent, **kw))

    def get_execution_stats(self) -> dict[str, Any]:
        s = self._stats
        ds = [d for d in s["durations"] if d is not None]
        n = s["total_runs"]
        return {
            "total_runs": n,
            "successful_runs": s["successful_runs"],
            "failed_runs": s["failed_runs"],
            "success_rate": s["successful_runs"] / n if n else 0.0,
            "avg_response_time": sum(ds) / len(ds) if ds else 0.0,
            "min_response_time": min(ds) if ds else 0.0,
            "max_response_time": max(ds) if ds else 0.0,
            "total_time": sum(ds),
            "total_tokens": s["total_tokens"],
            "total_cost": s["total_cost"],
            "since": s["since"],
        }

    def reset_stats(self) -> None:
        self._stats: dict[str, Any] = {
            "total_runs": 0,
            "successful_runs": 0,
            "failed_runs": 0,
            "durations": [],
            "total_tokens": 0,
            "total_cost": 0.0,
            "since": time.time(),
        }

    def close(self) -> None:
        if self._own:
            self.runtime.close()

    async def __aenter__(self) -> Runner:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.close()

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
