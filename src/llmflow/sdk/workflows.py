"""The flows :class:`~llmflow.sdk.orchestra.Orchestra`'s four workflows run, built from its
agents. Pure: no runtime, no I/O; the Orchestra runs what these return and reads the results.

::

    flow = pipeline_flow("orch", [clean, analyst], "raw text")           # clean -> analyst
    flow = broadcast_flow("orch", [a, b, c], "claim", "majority")        # one broadcast step
    flow, step_ids = conditional_flow("orch", [analyst, report], conditions, "report")
    flow, names, step_ids = parallel_flow("orch", tasks, [clean, analyst], {"raw": "..."}, 2)

A broadcast over LLM configs only is one ``broadcast`` step (the engine aggregates); over
mixed agents it is one step per agent and a python step calling :func:`aggregate_answers`.
"""

from __future__ import annotations

import re
from typing import Any

from llmflow.model.spec import Flow
from llmflow.sdk.runner import Agent, flow_for, step_id

AGGREGATIONS = ("consensus", "majority", "weighted", "all", "first")
# what a mixed broadcast's python step records; runs recorded before this module existed name
# llmflow.sdk.orchestra:aggregate_answers or llmflow.orchestra:aggregate_answers (re-exported)
AGGREGATE_FUNCTION = "llmflow.sdk.workflows:aggregate_answers"
_QUOTED = re.compile(r"""('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")""")


def condition_expr(cond: str) -> str:
    """SuperOptiX conditions say ``input.type == 'text'``; the flow's input is ``inputs.input``."""
    parts = _QUOTED.split(cond)
    for i in range(0, len(parts), 2):
        parts[i] = re.sub(r"(?<![\w.])input\b", "inputs.input", parts[i])
    return "".join(parts)


def aggregate_answers(strategy: str, answers: dict[str, Any], weights: dict[str, float] | None = None) -> Any:
    """The python step that aggregates a broadcast over mixed agents (not all LLM configs)."""
    from llmflow.engine.aggregate import Response, aggregate

    responses = [Response(a, out, i) for i, (a, out) in enumerate(answers.items()) if out is not None]
    return aggregate(strategy, responses, weights=weights, total_agents=len(answers))


def one_broadcast_step(agents: list[Agent]) -> bool:
    """Whether a broadcast to ``agents`` is one ``broadcast`` step (all are LLM configs)."""
    return all(a.kind == "llm" for a in agents)


def pipeline_flow(name: str, agents: list[Agent], value: Any) -> Flow:
    """Each agent's output is the next one's input; ``result`` is the last one's output."""
    specs, expr = [], "inputs.input"
    for i, a in enumerate(agents):
        sid = step_id(i, a.name)
        specs.append(a.step(sid, expr, value if i == 0 else None))
        expr = a.output_expr(sid)
    return flow_for(agents, specs, f"{name}-pipeline", {"result": "{{ " + expr + " }}"})


def broadcast_flow(
    name: str,
    agents: list[Agent],
    value: Any,
    aggregation: str,
    *,
    weights: dict[str, float] | None = None,
    min_responses: int | None = None,
) -> Flow:
    """The same input to every agent; their answers aggregated by ``aggregation``."""
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"aggregation must be one of {', '.join(AGGREGATIONS)}, not {aggregation!r}")
    if one_broadcast_step(agents):
        step: dict[str, Any] = {
            "id": "broadcast",
            "kind": "broadcast",
            "agents": [a.name for a in agents],
            "aggregate": aggregation,
            "prompt": "{{ inputs.input if inputs.input is string else inputs.input | tojson }}",
        }
        if weights:
            step["weights"] = weights
        if min_responses:
            step["min_responses"] = min_responses
        return flow_for(agents, [step], f"{name}-broadcast", {"result": "{{ steps.broadcast.output }}"})
    specs = [
        {**a.step(step_id(i, a.name), "inputs.input", value), "needs": [], "on_error": "continue"}
        for i, a in enumerate(agents)
    ]
    answers = {
        a.name: "{{ "
        + f"{a.output_expr(step_id(i, a.name))} if steps.{step_id(i, a.name)}.status == 'COMPLETED' else none"
        + " }}"
        for i, a in enumerate(agents)
    }
    specs.append(
        {
            "id": "aggregate",
            "kind": "python",
            "function": AGGREGATE_FUNCTION,
            "needs": [s["id"] for s in specs],
            "args": {"strategy": aggregation, "answers": answers, "weights": weights},
        }
    )
    return flow_for(
        agents,
        specs,
        f"{name}-broadcast",
        {"result": "{{ steps.aggregate.output.output }}", "aggregate": "{{ steps.aggregate.output }}"},
    )


def conditional_flow(
    name: str, agents: list[Agent], conditions: list[dict[str, Any]], default_agent: str | None, value: Any
) -> tuple[Flow, dict[str, str]]:
    """A ``route`` step: the first condition that holds picks the agent (else
    ``default_agent``; else none runs). Returns the flow and each agent's step id."""
    sids = {a.name: step_id(i, a.name) for i, a in enumerate(agents)}
    route = {
        "id": "route",
        "kind": "route",
        "routes": [
            {"when": condition_expr(str(c["condition"])), "to": [sids[c["agent"]]]} for c in conditions
        ],
        "default": [sids[default_agent]] if default_agent else [],
    }
    specs = [route] + [a.step(sids[a.name], "inputs.input", value) for a in agents]
    outputs = " or ".join(
        f"({a.output_expr(sids[a.name])} if steps.{sids[a.name]}.status == 'COMPLETED' else none)"
        for a in agents
    )
    return flow_for(agents, specs, f"{name}-conditional", {"result": "{{ " + outputs + " }}"}), sids


def parallel_flow(
    name: str, tasks: list[dict[str, Any]], agents: list[Agent], value: Any, max_concurrent: int
) -> tuple[Flow, list[str], list[str]]:
    """Tasks ``{agent, input_key?, name?}`` (``agents[i]`` runs ``tasks[i]``) at once, at most
    ``max_concurrent``; each gets ``value[input_key]`` (or all of it). Returns the flow, each
    task's result name (an output of the flow) and each task's step id."""
    specs, names = [], []
    for i, (t, a) in enumerate(zip(tasks, agents, strict=True)):
        key = t.get("input_key")
        expr = f"inputs.input[{key!r}]" if key else "inputs.input"
        given = value.get(key) if key and isinstance(value, dict) else value
        specs.append({**a.step(step_id(i, a.name), expr, given), "needs": [], "on_error": "continue"})
        names.append(
            str(
                t.get("name")
                or (a.name if sum(1 for x in tasks if x["agent"] == a.name) == 1 else f"{a.name}_{i}")
            )
        )
    outputs = {n: "{{ " + agents[i].output_expr(specs[i]["id"]) + " }}" for i, n in enumerate(names)}
    flow = flow_for(agents, specs, f"{name}-parallel", outputs, max_concurrency=max(1, max_concurrent))
    return flow, names, [s["id"] for s in specs]
