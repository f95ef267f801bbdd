"""SuperOptiX orchestra files as flows.

``orchestra: {id, workspace, execution: {strategy, max_parallel_tasks, task_timeout_seconds}}``,
``agents: [...]``, ``tasks: [{name, agent, description, context: [...]}]`` become a flow whose
steps are llm steps; ``context`` becomes ``needs`` (parallel/mixed) and each task's result is
written to ``<workspace>/<task>_result.json``.
"""

from __future__ import annotations

from typing import Any


def orchestra_to_flow(doc: dict[str, Any], default_name: str = "orchestra") -> dict[str, Any]:
    orch = doc.get("orchestra") or {}
    execution = orch.get("execution") or {}
    strategy = execution.get("strategy", "sequential")
    agents_raw = doc.get("agents") or []
    agents: dict[str, Any] = {}
    if isinstance(agents_raw, list):
        for a in agents_raw:
            if isinstance(a, str):
                agents[a] = {"description": a}
            elif isinstance(a, dict) and "name" in a:
                agents[a["name"]] = {k: v for k, v in a.items() if k in ("model", "system", "description")}
    elif isinstance(agents_raw, dict):
        agents = agents_raw
    steps: list[dict[str, Any]] = []
    prev: str | None = None
    for t in doc.get("tasks") or []:
        name = str(t.get("name"))
        agent = t.get("agent")
        if agent and agent not in agents:
            agents[agent] = {"description": agent}
        ctx = t.get("context") or []
        prompt = str(t.get("description", "")).replace("{goal}", "{{ inputs.goal }}")
        if ctx:
            prompt += "\n\nContext from earlier tasks:\n" + "\n".join(
                f"[{c}]\n{{{{ steps.{c}.output }}}}" for c in ctx
            )
        step: dict[str, Any] = {"id": name, "kind": "llm", "prompt": prompt}
        if agent:
            step["agent"] = agent
        if t.get("timeout_seconds") or execution.get("task_timeout_seconds"):
            step["timeout"] = t.get("timeout_seconds") or execution.get("task_timeout_seconds")
        if execution.get("retry_strategy"):
            step["retry"] = {"attempts": 3}
        if strategy == "sequential":
            step["needs"] = [prev] if prev else []
        else:
            step["needs"] = list(ctx)
        steps.append(step)
        steps.append(
            {
                "id": f"{name}_result",
                "kind": "write_file",
                "needs": [name],
                "path": f"{name}_result.json",
                "content": '{{ {"task_name": "' + name + '", "agent": "' + str(agent) + '", "result": steps.' + name + ".output} | tojson }}",
            }
        )
        prev = name
    workspace = orch.get("workspace")
    path = workspace.get("path") if isinstance(workspace, dict) else workspace
    return {
        "name": str(orch.get("id") or default_name),
        "description": str(orch.get("description", "SuperOptiX orchestra")),
        "inputs": {"goal": {"type": "string", "default": ""}},
        "agents": agents,
        "options": {"max_concurrency": int(execution.get("max_parallel_tasks", 4)) if strategy != "sequential" else 1, **({"workspace": path} if path else {})},
        "steps": steps,
    }
