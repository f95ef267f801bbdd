"""SuperOptiX orchestra files as flows. Pure: a document in, a flow document out.

::

    orchestra:
      id: sdlc
      workspace: {type: local_fs, path: ./orchestra_workspaces/sdlc}
      execution: {strategy: sequential|parallel|mixed, max_parallel_tasks: 2,
                  task_timeout_seconds: 300, retry_strategy: exponential_backoff}
    agents: [developer, qa_engineer]            # names, or {name, model, system, ...}
    tasks:
      - {name: task_one, agent: developer, description: "Start on '{goal}' ..."}
      - {name: task_two, agent: qa_engineer, description: "...", context: [task_one]}

Each task becomes an ``llm`` step run by its agent; ``{goal}`` is the flow's ``goal``
input. ``sequential`` chains the tasks in file order and feeds each task the previous
task's output (as SuperOptiX does); ``parallel`` and ``mixed`` run every task as soon as
the tasks named in its ``context`` are done, up to ``max_parallel_tasks`` at once (the
run's ``max_concurrency``). A task sees the outputs of its ``context`` tasks in its prompt.

A failed task stops only what depends on it: tasks have ``on_error: continue`` and each
dependent has a ``when:`` that requires its needs to have COMPLETED, so it is SKIPPED
(and its own dependents after it) while independent branches finish. Each completed task's
result is written to ``<workspace>/<task>_result.json`` (``{task_name, agent, success,
result}``) by a ``write_file`` step; a relative workspace path is taken from the directory
the command runs in, as SuperOptiX does. The last step fails the run when a task failed, so
the run's status agrees with the result's ``success``. ``task_timeout_seconds`` (or a task's
``timeout_seconds``) is the step timeout; ``retry_strategy`` gives 3 attempts with
exponential (or, for ``fixed`` / ``linear``, constant) backoff; ``none`` disables retries.
"""

from __future__ import annotations

import json
import os
from typing import Any

AGENT_KEYS = ("model", "system", "prompt", "description", "params", "tools", "weight", "role")


def _agents(raw: Any) -> dict[str, Any]:
    agents: dict[str, Any] = {}
    items = raw.items() if isinstance(raw, dict) else ((None, a) for a in raw or [])
    for key, a in items:
        if isinstance(a, str):
            agents[a] = {"description": a, "system": f"You are the {a.replace('_', ' ')} agent."}
        elif isinstance(a, dict):
            name = key or a.get("name") or a.get("id")
            if name:
                agents[str(name)] = {k: v for k, v in a.items() if k in AGENT_KEYS}
        elif key is not None and a is None:
            agents[str(key)] = {"description": str(key)}
    return agents


def _retry(strategy: Any) -> dict[str, Any] | None:
    if not strategy:
        return None  # the default policy: transient provider errors are retried
    if str(strategy).lower() in ("none", "no", "false"):
        return {"attempts": 1}
    multiplier = 1.0 if str(strategy).lower() in ("fixed", "linear", "constant") else 2.0
    return {"attempts": 3, "backoff": 1.0, "multiplier": multiplier}


def _all_completed(needs: list[str]) -> str:
    return " and ".join(f"steps.{n}.status == 'COMPLETED'" for n in needs)


def orchestra_to_flow(doc: dict[str, Any], default_name: str = "orchestra") -> dict[str, Any]:
    orch = doc.get("orchestra") or {}
    execution = orch.get("execution") or {}
    strategy = str(execution.get("strategy", "sequential")).lower()
    agents = _agents(doc.get("agents"))
    retry = _retry(execution.get("retry_strategy"))
    steps: list[dict[str, Any]] = []
    outputs: dict[str, str] = {}
    prev: str | None = None
    for t in doc.get("tasks") or []:
        name = str(t.get("name"))
        agent = t.get("agent")
        if agent and agent not in agents:
            agents[agent] = {
                "description": agent,
                "system": f"You are the {str(agent).replace('_', ' ')} agent.",
            }
        ctx = [str(c) for c in (t.get("context") or [])]
        prompt = str(t.get("description", "")).replace("{goal}", "{{ inputs.goal }}").strip()
        if t.get("expected_output"):
            prompt += f"\n\nExpected output: {t['expected_output']}"
        needs = ([prev] if prev else []) if strategy == "sequential" else list(ctx)
        if strategy == "sequential" and prev and prev not in ctx:
            prompt += f"\n\nInput (the result of {prev}):\n{{{{ steps.{prev}.output }}}}"
        if ctx:
            prompt += "\n\nContext from earlier tasks:\n" + "\n".join(
                f"[{c}]\n{{{{ steps.{c}.output }}}}" for c in ctx
            )
        step: dict[str, Any] = {
            "id": name,
            "kind": "llm",
            "prompt": prompt,
            "needs": needs,
            "on_error": "continue",
        }
        if t.get("description"):
            step["description"] = " ".join(str(t["description"]).split())[:120]
        if agent:
            step["agent"] = agent
        if needs:
            step["when"] = _all_completed(needs)
        timeout = t.get("timeout_seconds") or execution.get("task_timeout_seconds")
        if timeout:
            step["timeout"] = timeout
        if retry:
            step["retry"] = dict(retry)
        steps.append(step)
        head = json.dumps({"task_name": name, "agent": str(agent), "success": True})[:-1]
        steps.append(
            {
                "id": f"{name}_result",
                "kind": "write_file",
                "needs": [name],
                "when": _all_completed([name]),
                "path": f"{name}_result.json",
                "content": head + ', "result": {{ steps.' + name + ".output | tojson }}}",
            }
        )
        outputs[name] = f"{{{{ steps.{name}.output }}}}"
        prev = name
    if prev is not None:
        # the run's status agrees with the result's success: it fails when a task failed,
        # once the independent tasks have finished
        names = [str(t.get("name")) for t in doc.get("tasks") or []]
        steps.append(
            {
                "id": "orchestra_result",
                "kind": "python",
                "function": "llmflow.model.orchestra:check_tasks",
                "needs": [f"{n}_result" for n in names],
                "when": "true",
                "description": "the orchestra fails when a task failed",
                "args": {
                    "statuses": {n: "{{ steps." + n + ".status }}" for n in names},
                    "errors": {n: "{{ steps." + n + ".error }}" for n in names},
                },
            }
        )
    workspace = orch.get("workspace")
    path = workspace.get("path") if isinstance(workspace, dict) else workspace
    concurrency = 1 if strategy == "sequential" else int(execution.get("max_parallel_tasks") or 4)
    options: dict[str, Any] = {"max_concurrency": concurrency}
    if path:
        # relative to where the command runs, as in SuperOptiX (not to the orchestra file)
        options["workspace"] = os.path.abspath(os.path.expanduser(str(path)))
    flow: dict[str, Any] = {
        "name": str(orch.get("id") or orch.get("name") or default_name),
        "description": str(orch.get("description") or "SuperOptiX orchestra"),
        "inputs": {
            "goal": {
                "type": "string",
                "default": "",
                "description": "The orchestra's goal ({goal} in task descriptions)",
            }
        },
        "agents": agents,
        "options": options,
        "steps": steps,
    }
    if outputs:
        flow["outputs"] = outputs
    return flow


def check_tasks(statuses: dict[str, str], errors: dict[str, Any] | None = None) -> dict[str, Any]:
    """The orchestra's last step: fails (so the run is FAILED, as ``success`` is false)
    naming the tasks that failed; else the tasks' statuses."""
    from llmflow.errors import StepError

    failed = [n for n, s in statuses.items() if s == "FAILED"]
    if failed:
        why = "; ".join(f"{n}: {(errors or {}).get(n) or 'failed'}" for n in failed)
        raise StepError(f"task(s) failed: {why}", retryable=False)
    return {"statuses": statuses}
