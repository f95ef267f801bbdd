"""From a ``tools:`` list to tools: what each entry names, checked without side effects
(:func:`classify`), and the open set of tools a tool loop uses (:class:`Toolset`).

A ``tool:`` string is looked up in this order: a built-in (``read_file``, ``write_file``,
``list_files``, ``shell``); a function given to the runtime or registered with
``@llmflow.tool``; ``module:function``; an MCP server ``name``; ``name.tool`` of an MCP server.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmflow.errors import ShellDisabledError, StepConfigError, StepError
from llmflow.model.diagnostics import did_you_mean
from llmflow.model.registry import registry
from llmflow.model.spec import Flow, McpServerSpec, ToolSpec
from llmflow.tools.base import DEFAULT_TIMEOUT, Tool
from llmflow.tools.builtins import BUILTINS


@dataclass
class Resolved:
    """What one entry names: tools known now, or an MCP server (all tools or one), or a
    problem (code, message, hint)."""

    tools: list[Tool] = dataclasses.field(default_factory=list)
    server: str | None = None
    server_tool: str | None = None
    problem: tuple[str, str, str | None] | None = None
    runs_code: bool = False


def known_names(functions: dict[str, Callable[..., Any]], servers: dict[str, McpServerSpec]) -> list[str]:
    return sorted({*BUILTINS, *functions, *registry.tool_names(), *servers})


def classify(
    spec: ToolSpec,
    *,
    functions: dict[str, Callable[..., Any]],
    servers: dict[str, McpServerSpec],
    flow_dir: Path | None,
    config_dir: Path | None,
    index_dir: Path | None,
) -> Resolved:
    from llmflow.tools.python import SchemaError, import_function, python_tool

    if spec.flow is not None:
        return _flow_entry(spec, flow_dir, config_dir)
    if spec.index is not None:
        from llmflow.tools.retrieval_tool import index_tool

        return Resolved(
            [
                index_tool(
                    spec.index, index_dir, name=spec.name, description=spec.description, top_k=spec.top_k
                )
            ]
        )
    ref = spec.tool or ""
    if ref in BUILTINS:
        t = BUILTINS[ref]
        return Resolved([t], runs_code=t.runs_code)
    fn = functions.get(ref) or registry.tool(ref)
    by_name = fn is not None
    source = None
    runs_code = False
    if fn is None and ":" in ref:
        try:
            fn = import_function(ref, flow_dir)
        except LookupError as exc:
            return Resolved(
                problem=(
                    "unknown-tool",
                    f"tool {ref!r}: {exc}",
                    "check the module path (and that it is importable from here), or register the function with @llmflow.tool",
                )
            )
        source = f"python {ref}"
        runs_code = True
    if fn is not None:
        try:
            return Resolved(
                [python_tool(fn, name=ref if by_name else None, source=source)], runs_code=runs_code
            )
        except SchemaError as exc:
            return Resolved(
                problem=(
                    "tool-schema",
                    f"tool {ref!r}: {exc}",
                    "annotate each argument with a JSON-describable type (str, int, float, bool, list, dict, a pydantic model, Literal[...])",
                )
            )
    if ref in servers:
        return Resolved(server=ref, runs_code=servers[ref].command is not None)
    head, dot, rest = ref.partition(".")
    if dot and head and rest:
        if head in servers:
            return Resolved(server=head, server_tool=rest, runs_code=servers[head].command is not None)
        hint = did_you_mean(head, servers) or (
            f"declared servers: {', '.join(sorted(servers))}"
            if servers
            else "declare it under 'mcp_servers:' in the flow or in the project's mcp_servers.yaml"
        )
        return Resolved(
            problem=(
                "unknown-mcp-server",
                f"tool {ref!r} names MCP server {head!r}, which is not declared",
                hint,
            )
        )
    hint = (
        did_you_mean(ref, known_names(functions, servers))
        or f"built-in tools: {', '.join(BUILTINS)}; or write 'module:function', register one with @llmflow.tool, or declare an MCP server"
    )
    return Resolved(problem=("unknown-tool", f"unknown tool {ref!r}", hint))


def _flow_entry(spec: ToolSpec, flow_dir: Path | None, config_dir: Path | None) -> Resolved:
    from llmflow.errors import CompositionError, FlowNotFoundError, FlowValidationError
    from llmflow.model.loader import load_flow
    from llmflow.tools.flows import flow_tool

    ref = spec.flow or ""
    target = ref
    if flow_dir is not None and not Path(ref).is_absolute() and (flow_dir / ref).exists():
        target = str(flow_dir / ref)
    try:
        loaded = load_flow(target, [], config_dir)
    except FlowValidationError as exc:
        first = exc.diagnostics[0].format() if exc.diagnostics else str(exc)
        return Resolved(
            problem=(
                "invalid-flow-tool",
                f"flow tool {ref!r} is not a valid flow: {first}",
                f"run `llmflow validate {ref}`",
            )
        )
    except (FlowNotFoundError, CompositionError) as exc:
        return Resolved(
            problem=(
                "unknown-tool",
                f"flow tool {ref!r}: {exc.message}",
                exc.hint or "give a flow file path (relative to this flow) or a flow name",
            )
        )
    t = flow_tool(ref, loaded, name=spec.name, description=spec.description)
    return Resolved([t], runs_code=t.runs_code)


def apply_options(t: Tool, spec: ToolSpec) -> Tool:
    return dataclasses.replace(
        t,
        name=spec.name or t.name,
        description=spec.description or t.description,
        confirm=spec.confirm or t.confirm,
        timeout=spec.timeout or t.timeout or DEFAULT_TIMEOUT,
        retry=spec.retry or t.retry,
    )


def all_servers(flow: Flow, project: dict[str, McpServerSpec]) -> dict[str, McpServerSpec]:
    """Project servers, and the flow's own (which win on a name clash)."""
    return {**project, **flow.mcp_servers}


class Toolset:
    """The tools of one tool loop; MCP servers stay connected while it is open."""

    def __init__(self) -> None:
        self.tools: dict[str, Tool] = {}
        self._stack = contextlib.AsyncExitStack()

    def add(self, t: Tool) -> None:
        if t.name in self.tools:
            raise StepError(
                f"two tools are named {t.name!r} ({self.tools[t.name].source} and {t.source})",
                retryable=False,
                hint="give one of them another name: {tool: ..., name: other_name}",
            )
        self.tools[t.name] = t

    async def __aenter__(self) -> Toolset:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self._stack.aclose()

    async def open(self, ctx: Any, refs: list[ToolSpec]) -> None:
        from llmflow.tools.mcp import McpConnection
        from llmflow.tools.services import services_of

        svc = services_of(ctx)
        project, _ = svc.project_servers()
        servers = all_servers(ctx.flow, project)
        flow_dir = _flow_dir(ctx, svc)
        connections: dict[str, McpConnection] = {}
        for spec in refs:
            r = classify(
                spec,
                functions=ctx.functions,
                servers=servers,
                flow_dir=flow_dir,
                config_dir=svc.conf_dir,
                index_dir=svc.index_dir,
            )
            if r.problem is not None:
                code, message, hint = r.problem
                raise StepConfigError(message, hint=hint)
            if r.runs_code and not ctx.allow_shell and not _operator_server(r, project, ctx.flow):
                raise ShellDisabledError(
                    f"tool {spec.ref!r} runs code on this machine, which this runtime does not allow",
                    hint="start the server with --allow-shell, or use a tool the operator registered",
                )
            if spec.index is not None:
                from llmflow.tools.retrieval.store import index_file

                if not index_file(svc.index_dir, spec.index).exists():
                    raise StepConfigError(
                        f"retrieval index {spec.index!r} does not exist ({index_file(svc.index_dir, spec.index)})",
                        hint=f"create it with `llmflow index add {spec.index} PATH...`",
                    )
            if r.server is not None:
                conn = connections.get(r.server)
                if conn is None:
                    log_dir = Path(ctx.artifacts_dir) / "mcp"
                    base_dir = flow_dir or Path(ctx.workspace)
                    base_dir.mkdir(parents=True, exist_ok=True)  # the workspace is made on first use
                    conn = connections[r.server] = await self._stack.enter_async_context(
                        McpConnection(r.server, servers[r.server], base_dir=base_dir, log_dir=log_dir)
                    )
                offered = await conn.tools()
                if r.server_tool is not None:
                    picked = [t for t in offered if t.name == r.server_tool]
                    if not picked:
                        hint = (
                            did_you_mean(r.server_tool, [t.name for t in offered])
                            or f"its tools: {', '.join(t.name for t in offered) or '(none)'}"
                        )
                        raise StepError(
                            f"MCP server {r.server!r} has no tool {r.server_tool!r} ({hint})",
                            retryable=False,
                            hint=hint,
                        )
                    offered = picked
                for t in offered:
                    self.add(apply_options(t, spec))
            else:
                for t in r.tools:
                    self.add(apply_options(t, spec))


def _operator_server(r: Resolved, project: dict[str, McpServerSpec], flow: Flow) -> bool:
    """A stdio server the operator declared (and the flow did not redefine) is allowed."""
    return r.server is not None and r.server in project and r.server not in flow.mcp_servers


def _flow_dir(ctx: Any, svc: Any) -> Path | None:
    d = ctx.settings.get("flow_dir") if isinstance(ctx.settings, dict) else None
    return Path(d) if d else None
