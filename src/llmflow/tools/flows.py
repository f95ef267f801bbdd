"""A flow as a tool: the model fills the flow's inputs; each call runs the flow as a child
run linked to this one (its id ends with the call id, so a resumed loop finds it again)."""

from __future__ import annotations

from typing import Any

from llmflow.errors import StepError
from llmflow.model.loader import LoadedFlow
from llmflow.model.spec import Flow
from llmflow.tools.base import CallContext, Tool

_JSON_TYPES = {
    "string": "string",
    "integer": "integer",
    "number": "number",
    "boolean": "boolean",
    "array": "array",
    "object": "object",
}
CODE_KINDS = frozenset({"shell", "python", "flow"})


def flow_parameters(flow: Flow) -> dict[str, Any]:
    props: dict[str, Any] = {}
    required = []
    for name, spec in flow.inputs.items():
        p: dict[str, Any] = {}
        if spec.type in _JSON_TYPES:
            p["type"] = _JSON_TYPES[spec.type]
        if spec.description:
            p["description"] = spec.description
        if spec.enum is not None:
            p["enum"] = list(spec.enum)
        if not spec.is_required:
            p["default"] = spec.default
        else:
            required.append(name)
        props[name] = p
    return {"type": "object", "properties": props, "required": required}


def flow_runs_code(flow: Flow) -> bool:
    """Whether running the flow leads to code execution (shell/python/sub-flow steps, or
    tools that run code are judged by the caller)."""
    return any(s.kind in CODE_KINDS for s in flow.all_steps())


def flow_tool(
    ref: str, loaded: LoadedFlow, *, name: str | None = None, description: str | None = None
) -> Tool:
    flow = loaded.flow
    source = loaded.source if loaded.source and not loaded.source.startswith("<") else ref

    async def call(arguments: dict[str, Any], cc: CallContext) -> Any:
        services = cc.step.settings.get("tools")
        run_child = getattr(services, "run_child", None)
        if run_child is None:
            raise StepError(
                "flows as tools need the runtime (child runs are not available here)", retryable=False
            )
        return await run_child(cc.step, source, dict(arguments), [], key=cc.call_id)

    tool_name = name or "".join(ch if ch.isalnum() or ch in "_-" else "_" for ch in flow.name)
    return Tool(
        tool_name,
        description or flow.description or f"Run the flow {flow.name}.",
        flow_parameters(flow),
        call,
        f"flow {source}",
        runs_code=flow_runs_code(flow),
    )
