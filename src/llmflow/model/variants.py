"""Buttermilk's agent shapes in a flow document, honoured or refused. Pure: a document in,
a document out (before validation).

- An agent's ``variants:`` (``{model: [...], criteria: [...], ...}``, Buttermilk's
  ``AgentVariants``) is the cross product of parallel instances: each ``llm`` step run by
  that agent gets it as its ``matrix`` (the step's own matrix wins), so ``matrix.model``
  picks each unit's model and ``{{ matrix.criteria }}`` is there for the prompt.
  ``num_runs: N`` adds a ``run: [1..N]`` axis. ``name_components`` name the units in
  Buttermilk's frames (``agent_info.agent_name``, server/sessions.py).
- A flow with an ``orchestrator`` and no ``steps`` (Buttermilk's group chat) becomes one
  ``conductor`` step over its agents: a ``host`` agent (or ``host/sequence_host``
  observer, or none) decides who speaks; ``sequence`` walks them in order;
  ``parameters.human_in_loop`` asks a person before each turn.
- What llmflow cannot honour is a FlowValidationError naming the llmflow form: agents'
  ``tasks`` (sequential sub-tasks), observers other than a host (``spy``, ``owl``,
  ``scorer``, ``fetch``...), variants on an agent no step uses and that no conductor
  runs are fine (nothing to expand).
"""

from __future__ import annotations

from typing import Any

from llmflow.errors import FlowValidationError
from llmflow.model.diagnostics import Diagnostic, Location

HOST_NAMES = ("host", "sequence_host", "host/sequence_host", "sequencer")


def _error(code: str, message: str, path: str, hint: str, file: str) -> Diagnostic:
    return Diagnostic(code, message, path, hint, Location(file))


def _axes(agent: dict[str, Any]) -> dict[str, Any]:
    variants = agent.get("variants") or {}
    axes = (
        {k: v for k, v in variants.items() if v not in (None, [], "")} if isinstance(variants, dict) else {}
    )
    runs = agent.get("num_runs")
    if isinstance(runs, int) and runs > 1:
        axes["run"] = list(range(1, runs + 1))
    return axes


def _steps_of(steps: list[Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for s in steps or []:
        if isinstance(s, dict):
            out.append(s)
            nested = (
                s.get("steps")
                if isinstance(s.get("steps"), list)
                else (s.get("parallel") if isinstance(s.get("parallel"), list) else None)
            )
            if nested:
                out += _steps_of(nested)
    return out


def _step_agent(s: dict[str, Any]) -> str | None:
    llm = s.get("llm")
    if isinstance(llm, dict) and isinstance(llm.get("agent"), str):
        return str(llm["agent"])
    if s.get("kind") == "llm" and isinstance(s.get("agent"), str):
        return str(s["agent"])
    return None


def expand_buttermilk(doc: Any, file: str = "<flow>") -> Any:
    if not isinstance(doc, dict) or not isinstance(doc.get("agents"), dict):
        return doc
    agents: dict[str, Any] = doc["agents"]
    problems: list[Diagnostic] = []
    for name, a in agents.items():
        if isinstance(a, dict) and a.get("tasks"):
            problems.append(
                _error(
                    "not-supported",
                    f"agent {name!r} has 'tasks' (Buttermilk's sequential sub-tasks per instance), which llmflow does not run",
                    f"agents.{name}.tasks",
                    "write the sub-tasks as steps one after another (each an llm step with agent: "
                    + name
                    + ")",
                    file,
                )
            )
    observers = doc.get("observers") or {}
    hosts = (
        [o for o in observers if str(o).split("/")[-1] in HOST_NAMES or str(o) in HOST_NAMES]
        if isinstance(observers, dict)
        else []
    )
    others = [o for o in observers if o not in hosts] if isinstance(observers, dict) else []
    if others:
        problems.append(
            _error(
                "not-supported",
                f"observers {', '.join(map(str, others))} are not run by llmflow (Buttermilk's spy / owl / scorer / fetch agents)",
                "observers",
                "save results with storage: (a file), score with `llmflow eval`, and fetch records with a data source; remove them from observers",
                file,
            )
        )
    if problems:
        raise FlowValidationError(problems)
    doc = {
        **doc,
        "agents": {
            k: ({kk: vv for kk, vv in v.items()} if isinstance(v, dict) else v) for k, v in agents.items()
        },
    }
    if not doc.get("steps") and doc.get("orchestrator"):
        doc = _conductor(doc, hosts)
    doc.pop("observers", None)
    steps = doc.get("steps")
    if isinstance(steps, list):
        doc["steps"] = [dict(s) if isinstance(s, dict) else s for s in steps]
        for s in _steps_of(doc["steps"]):
            agent = _step_agent(s)
            a = doc["agents"].get(agent) if agent else None
            if isinstance(a, dict) and not s.get("matrix"):
                axes = _axes(a)
                if axes:
                    s["matrix"] = axes
    return doc


def _conductor(doc: dict[str, Any], hosts: list[str]) -> dict[str, Any]:
    agents = doc["agents"]
    host_agent = next((n for n in agents if n in ("host", "HOST")), None)
    participants = [n for n in agents if n != host_agent]
    params: dict[str, Any] = doc["parameters"] if isinstance(doc.get("parameters"), dict) else {}
    inputs = dict(doc.get("inputs") or {})
    inputs.setdefault("prompt", {"type": "string", "default": ""})
    step = {
        "id": "chat",
        "description": f"Buttermilk's {str(doc.get('orchestrator')).split('.')[-1]}: a host picks who speaks next",
        "conductor": {
            "host": host_agent or "sequence",
            "participants": participants,
            "prompt": "{{ inputs.prompt }}",
            "human_confirm": bool(params.get("human_in_loop", False)),
            "max_turns": max(1, len(participants) * 2),
        },
    }
    return {**doc, "inputs": inputs, "steps": [step], "orchestrator": doc.get("orchestrator")}


def unit_name(agent: Any, matrix: dict[str, Any] | None, unique: str | None = None) -> str | None:
    """Buttermilk's instance name from ``name_components`` (``["⚖️", "role", "model",
    "criteria", "unique_identifier"]``): a component naming a field takes its value (the
    unit's matrix first, then the agent), any other is written as it is."""
    comps = getattr(agent, "name_components", None)
    if not comps:
        return None
    matrix = matrix or {}
    parts: list[str] = []
    for c in comps:
        key = str(c)
        if key in matrix:
            parts.append(str(matrix[key]))
        elif key == "unique_identifier":
            if unique:
                parts.append(unique)
        elif hasattr(agent, key) and getattr(agent, key) not in (None, "", [], {}):
            parts.append(str(getattr(agent, key)))
        elif key not in ("role", "model", "criteria", "description", "name"):
            parts.append(key)
    return " ".join(parts) or None
