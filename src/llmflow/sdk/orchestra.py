"""SuperOptiX-style orchestration of several agents, thin over the runtime.

::

    from llmflow import Orchestra

    orch = Orchestra({"analyst": {"model": "fake:", "system": "..."}, "clean": my_function,
                      "report": "flows/report.yaml"})
    orch.run_pipeline_sync("raw text", ["clean", "analyst", "report"])
    orch.run_broadcast_sync("claim", ["a", "b", "c"], aggregation="majority")
    orch.run_conditional_sync({"type": "text"}, [{"condition": "input.type == 'text'", "agent": "analyst"}], default_agent="report")
    orch.run_parallel_sync({"raw": "..."}, [{"agent": "clean", "input_key": "raw"}, {"agent": "analyst"}], max_concurrent=2)

Each call builds a flow (``llm`` / ``python`` / ``flow`` steps, a ``broadcast`` step when
every agent of a broadcast is an LLM config, a ``route`` step for conditions) and runs it
on the runtime, so every call is a recorded run (``run_id`` in the result; ``llmflow runs
show``). A condition is an expression over ``input`` (the call's input) and ``inputs``.

Scheme: async methods with ``*_sync`` twins (the twins work inside a running loop too).
Control methods are plain and thread-safe: ``pause_orchestra`` pauses the runs in flight
(running steps finish, no new step starts) and holds new calls; ``resume_orchestra``
continues both; ``stop_orchestra`` cancels the runs in flight and refuses new calls until
``resume_orchestra``.

The flows of the four workflows are built in :mod:`llmflow.sdk.workflows`; a SuperOptiX
orchestra file's result is read in :mod:`llmflow.sdk.orchestra_file`. This class holds the
agents, the controls and status, runs the flows and reads each agent's result.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmflow.engine.states import StepStatus
from llmflow.errors import RunStateError
from llmflow.model.spec import Flow
from llmflow.runtime import RunRequest, run_blocking
from llmflow.sdk.orchestra_file import file_result
from llmflow.sdk.result import Run, only_value
from llmflow.sdk.runner import Agent, _runtime, make_agent, step_id, unwrap
from llmflow.sdk.workflows import (
    AGGREGATIONS,
    aggregate_answers,
    broadcast_flow,
    condition_expr,
    conditional_flow,
    one_broadcast_step,
    parallel_flow,
    pipeline_flow,
)

if TYPE_CHECKING:
    from llmflow.runtime.ports import RunService


class Orchestra:
    def __init__(
        self,
        agents: dict[str, Any] | None = None,
        *,
        runtime: RunService | None = None,
        home: str | Path | None = None,
        models: dict[str, str] | str | None = None,
        name: str = "orchestra",
    ) -> None:
        self._own = False  # a given runtime is the caller's; the shared one outlives this Orchestra
        self.runtime = _runtime(runtime, home)
        self.name = name
        self.models = {"*": models} if isinstance(models, str) else dict(models or {})
        self.agents: dict[str, Agent] = {}
        self._stats: dict[str, dict[str, Any]] = {}
        self._active: dict[str, str] = {}  # run id -> workflow
        self._running: dict[str, int] = {}  # agent -> calls in flight
        self._lock = threading.Lock()
        self._paused = False
        self._stopped = False
        self._runs = 0
        self._last_run: str | None = None
        for k, v in (agents or {}).items():
            self.add_agent(k, v)

    # -- agents -----------------------------------------------------------------------------
    def add_agent(self, agent_id: str, agent: Any) -> None:
        """Add (or replace) an agent: a config dict / AgentSpec, a Flow, a flow path, or a callable."""
        self.agents[agent_id] = make_agent(agent_id, agent, self.runtime)
        self._stats.setdefault(
            agent_id,
            {
                "calls": 0,
                "successes": 0,
                "failures": 0,
                "total_duration": 0.0,
                "last_error": None,
                "last_run_id": None,
            },
        )

    def remove_agent(self, agent_id: str) -> None:
        self._agent(agent_id)
        del self.agents[agent_id]
        self._stats.pop(agent_id, None)

    def _agent(self, name: str) -> Agent:
        if name not in self.agents:
            from llmflow.model.diagnostics import did_you_mean

            raise KeyError(
                f"orchestra {self.name!r} has no agent {name!r}"
                + (
                    f"; {did_you_mean(name, list(self.agents))}"
                    if did_you_mean(name, list(self.agents))
                    else f" (agents: {', '.join(self.agents) or 'none'})"
                )
            )
        return self.agents[name]

    def get_agent_status(self, agent_id: str) -> dict[str, Any]:
        a = self._agent(agent_id)
        s = self._stats[agent_id]
        running = self._running.get(agent_id, 0)
        return {
            "agent_id": agent_id,
            "kind": a.kind,
            "status": "running" if running else ("paused" if self._paused else "idle"),
            "running": running,
            "calls": s["calls"],
            "successes": s["successes"],
            "failures": s["failures"],
            "avg_duration": s["total_duration"] / s["calls"] if s["calls"] else 0.0,
            "last_error": s["last_error"],
            "last_run_id": s["last_run_id"],
        }

    def get_orchestra_status(self) -> dict[str, Any]:
        status = (
            "stopped"
            if self._stopped
            else "paused"
            if self._paused
            else "running"
            if self._active
            else "idle"
        )
        return {
            "name": self.name,
            "status": status,
            "agents": list(self.agents),
            "total_agents": len(self.agents),
            "active_agents": sum(1 for n in self._running.values() if n),
            "active_runs": list(self._active),
            "runs": self._runs,
            "last_run_id": self._last_run,
        }

    # -- control ----------------------------------------------------------------------------
    def _signal(self, action: str) -> None:
        now = self.runtime.clock.now()
        for run_id in list(self._active):
            self.runtime.store.put_control(run_id, action, {"reason": f"orchestra {action}"}, now)

    def pause_orchestra(self) -> None:
        self._paused = True
        self._signal("pause")

    def resume_orchestra(self) -> None:
        was_paused = self._paused
        self._paused = self._stopped = False
        if was_paused:
            self._signal("resume")

    def stop_orchestra(self) -> None:
        self._stopped = True
        self._signal("cancel")

    # -- running ----------------------------------------------------------------------------
    async def _execute(
        self, flow: Flow, value: Any, workflow: str, agents: list[str]
    ) -> tuple[dict[str, Any], Run]:
        while self._paused and not self._stopped:
            await asyncio.sleep(0.05)
        if self._stopped:
            raise RunStateError(
                f"orchestra {self.name!r} is stopped", hint="call resume_orchestra() to accept work again"
            )
        rt = self.runtime
        opts = RunRequest(
            models=dict(self.models),
            run_type="orchestra",
            name=f"{self.name}:{workflow}",
            metadata={"orchestra": self.name, "workflow": workflow, "agents": agents},
        )
        rec = rt.create_run(flow, {"input": value}, opts, claim=True)
        with self._lock:
            self._active[rec.id] = workflow
            self._runs += 1
            self._last_run = rec.id
            for a in agents:
                self._running[a] = self._running.get(a, 0) + 1
        try:
            if self._paused:
                rt.store.put_control(rec.id, "pause", {"reason": "orchestra paused"}, rt.clock.now())
            await rt.execute(rec.id, linger_when_paused=True)
        finally:
            with self._lock:
                self._active.pop(rec.id, None)
                for a in agents:
                    self._running[a] -= 1
        v = rt.view(rec.id)
        return v, Run.from_view(v)

    def _agent_result(
        self, name: str, step: dict[str, Any] | None, run_id: str, unit: str | None = None
    ) -> dict[str, Any]:
        if step is None:
            status, output, error, duration = StepStatus.SKIPPED.value, None, None, None
        elif unit is not None:
            atts = [a for a in step["attempts"] if a["unit"] == unit]
            last = atts[-1] if atts else None
            status = last["status"] if last else StepStatus.SKIPPED.value
            output, error, duration = (
                (last["output"], last["error"], last["duration"]) if last else (None, None, None)
            )
        else:
            status, output, error, duration = step["status"], step["output"], step["error"], step["duration"]
        if self.agents.get(name) is not None and self.agents[name].kind == "flow":
            output = only_value(output)
        s = self._stats.get(name)
        if s is not None and status not in (StepStatus.SKIPPED, StepStatus.PENDING):
            s["calls"] += 1
            s["successes" if status == StepStatus.COMPLETED else "failures"] += 1
            s["total_duration"] += duration or 0.0
            s["last_run_id"] = run_id
            if error:
                s["last_error"] = error
        return {
            "agent": name,
            "status": status,
            "success": status == StepStatus.COMPLETED,
            "output": output,
            "error": error,
            "duration": duration,
        }

    async def run_pipeline(self, input: Any, steps: list[str], **_: Any) -> Run:  # noqa: A002 - SuperOptiX's name
        """Each agent's output is the next one's input; stops at the first failure."""
        agents = [self._agent(s) for s in steps]
        flow = pipeline_flow(self.name, agents, input)
        v, res = await self._execute(flow, input, "pipeline", steps)
        by_id = {s["id"]: s for s in v["steps"]}
        res.extra["steps"] = [
            self._agent_result(a.name, by_id.get(step_id(i, a.name)), v["id"]) for i, a in enumerate(agents)
        ]
        return res

    async def run_broadcast(
        self,
        input: Any,
        agents: list[str],
        aggregation: str = "consensus",
        *,
        weights: dict[str, float] | None = None,
        min_responses: int | None = None,
        **_: Any,
    ) -> Run:  # noqa: A002
        """The same input to every agent; their answers aggregated (consensus, majority, weighted, all, first)."""
        objs = [self._agent(a) for a in agents]
        flow = broadcast_flow(
            self.name, objs, input, aggregation, weights=weights, min_responses=min_responses
        )
        v, res = await self._execute(flow, input, "broadcast", agents)
        if one_broadcast_step(objs):
            b = next(s for s in v["steps"] if s["id"] == "broadcast")
            res.extra["agents"] = {a: self._agent_result(a, b, v["id"], unit=a) for a in agents}
            return res
        by_id = {s["id"]: s for s in v["steps"]}
        res.extra["output"] = (res.outputs or {}).get("result")
        res.extra["agents"] = {
            a.name: self._agent_result(a.name, by_id.get(step_id(i, a.name)), v["id"])
            for i, a in enumerate(objs)
        }
        return res

    async def run_conditional(
        self, input: Any, conditions: list[dict[str, Any]], default_agent: str | None = None, **_: Any
    ) -> Run:  # noqa: A002
        """The first condition that holds picks the agent (else ``default_agent``; else none runs)."""
        names: list[str] = []
        for c in conditions:
            if c.get("agent") not in names:
                names.append(self._agent(c["agent"]).name)
        if default_agent and default_agent not in names:
            names.append(self._agent(default_agent).name)
        objs = [self.agents[n] for n in names]
        flow, sids = conditional_flow(self.name, objs, conditions, default_agent, input)
        v, res = await self._execute(flow, input, "conditional", names)
        by_id = {s["id"]: s for s in v["steps"]}
        selected = (by_id["route"]["output"] or {}).get("selected", []) if by_id.get("route") else []
        res.extra["selected_agent"] = next((n for n in names if sids[n] in selected), None)
        res.extra["agents"] = {
            n: self._agent_result(n, by_id.get(sids[n]) if sids[n] in selected else None, v["id"])
            for n in names
        }
        return res

    async def run_parallel(
        self, input: Any, tasks: list[dict[str, Any]], max_concurrent: int = 4, **_: Any
    ) -> Run:  # noqa: A002
        """Tasks ``{agent, input_key?, name?}`` at once (at most ``max_concurrent``); each
        gets ``input[input_key]`` (or the whole input). A failed task does not stop the others."""
        objs = [self._agent(t["agent"]) for t in tasks]
        flow, names, sids = parallel_flow(self.name, tasks, objs, input, max_concurrent)
        v, res = await self._execute(flow, input, "parallel", [a.name for a in objs])
        by_id = {s["id"]: s for s in v["steps"]}
        res.extra["results"] = {
            n: self._agent_result(objs[i].name, by_id.get(sids[i]), v["id"]) for i, n in enumerate(names)
        }
        res.extra["success"] = res.success and all(r["success"] for r in res.extra["results"].values())
        return res

    async def run_orchestra(self, input_data: Any, workflow_type: str = "pipeline", **kw: Any) -> Run:
        """The seed API's dispatcher: pipeline (``pipeline_steps``), broadcast
        (``target_agents``, ``aggregation_strategy``), conditional (``conditions``), parallel
        (``parallel_tasks``, ``max_concurrent``)."""
        if workflow_type == "pipeline":
            return await self.run_pipeline(
                input_data, kw.get("pipeline_steps") or kw.get("steps") or list(self.agents)
            )
        if workflow_type == "broadcast":
            return await self.run_broadcast(
                input_data,
                kw.get("target_agents") or kw.get("agents") or list(self.agents),
                kw.get("aggregation_strategy") or kw.get("aggregation", "consensus"),
            )
        if workflow_type == "conditional":
            return await self.run_conditional(input_data, kw["conditions"], kw.get("default_agent"))
        if workflow_type == "parallel":
            return await self.run_parallel(
                input_data, kw.get("parallel_tasks") or kw["tasks"], kw.get("max_concurrent", 4)
            )
        raise ValueError(
            f"workflow_type must be pipeline, broadcast, conditional or parallel, not {workflow_type!r}"
        )

    async def run_file(self, path: str | Path, goal: str = "") -> dict[str, Any]:
        """Run a SuperOptiX orchestra file; the result has SuperOptiX's shape
        (``success``, ``total_execution_time``, ``stats``, ``task_results``) plus ``run_id``."""
        rt = self.runtime
        t0 = time.time()
        rec = rt.create_run(
            str(path), {"goal": goal}, RunRequest(models=dict(self.models), run_type="orchestra"), claim=True
        )
        await rt.execute(rec.id)
        return file_result(rt.view(rec.id), time.time() - t0)

    # -- sync twins -------------------------------------------------------------------------
    def run_pipeline_sync(self, input: Any, steps: list[str], **kw: Any) -> Run:  # noqa: A002
        return run_blocking(self.run_pipeline(input, steps, **kw))

    def run_broadcast_sync(
        self, input: Any, agents: list[str], aggregation: str = "consensus", **kw: Any
    ) -> Run:  # noqa: A002
        return run_blocking(self.run_broadcast(input, agents, aggregation, **kw))

    def run_conditional_sync(
        self, input: Any, conditions: list[dict[str, Any]], default_agent: str | None = None, **kw: Any
    ) -> Run:  # noqa: A002
        return run_blocking(self.run_conditional(input, conditions, default_agent, **kw))

    def run_parallel_sync(
        self, input: Any, tasks: list[dict[str, Any]], max_concurrent: int = 4, **kw: Any
    ) -> Run:  # noqa: A002
        return run_blocking(self.run_parallel(input, tasks, max_concurrent, **kw))

    def run_orchestra_sync(self, input_data: Any, workflow_type: str = "pipeline", **kw: Any) -> Run:
        return run_blocking(self.run_orchestra(input_data, workflow_type, **kw))

    def run_file_sync(self, path: str | Path, goal: str = "") -> dict[str, Any]:
        return run_blocking(self.run_file(path, goal))

    def close(self) -> None:
        if self._own:
            self.runtime.close()

    def __enter__(self) -> Orchestra:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# aggregate_answers: runs recorded before llmflow.sdk.workflows name it here as a step function
__all__ = ["AGGREGATIONS", "Orchestra", "aggregate_answers", "condition_expr", "unwrap"]
