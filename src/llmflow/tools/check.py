"""Tool references checked before a run is created, located at file:line like the other
validation problems: an unknown tool, a ``module:function`` that does not import, a function
whose arguments have no JSON schema, an MCP server that is not declared, a flow tool that is
not a valid flow, two tools with one name. (A retrieval index is made with ``llmflow index
add``, possibly after the flow is written: a missing one fails the step that uses it, with
that command in the message.)

This pass imports user modules and reads the project's files, so it is not part of the pure
model validation (:mod:`llmflow.model.validate`); the runtime runs it when it creates a run,
``llmflow validate`` and the server run it too. MCP servers are not contacted here: a tool
missing on a server is reported when the step connects.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from llmflow.model.diagnostics import Diagnostic, Location, format_path
from llmflow.model.loader import LoadedFlow
from llmflow.model.spec import Flow, LlmStep, StepSpec, ToolSpec
from llmflow.tools.resolve import Resolved, all_servers, classify


def tool_entries(flow: Flow) -> Iterator[tuple[tuple[Any, ...], ToolSpec, str]]:
    """(key path, entry, owner) of every ``tools:`` entry of the flow's agents and steps."""
    for name, agent in flow.agents.items():
        for i, t in enumerate(agent.tools):
            yield ("agents", name, "tools", i), t, f"agent '{name}'"
    for path, s in walk_steps(flow.steps, ("steps",)):
        if isinstance(s, LlmStep):
            for i, t in enumerate(s.tools):
                yield (*path, "tools", i), t, f"step '{s.id}'"


def _written(loaded: LoadedFlow | None, path: tuple[Any, ...]) -> tuple[Any, ...]:
    """``steps[0].tools[1]`` as the document spells it (``steps[0].llm.tools[1]``)."""
    if loaded is None or loaded.composed is None or path[:1] != ("steps",) or len(path) < 3:
        return path
    entries = loaded.composed.sources.entries
    for cut in range(len(path) - 1, 1, -1):
        head, rest = path[:cut], path[cut:]
        if isinstance(head[-1], int):
            try:
                step = loaded.flow.steps[head[1]] if len(head) == 2 else None
            except IndexError:
                step = None
            kind = step.kind if step is not None else None
            if kind and (*head, kind, *rest) in entries:
                return (*head, kind, *rest)
    return path


def walk_steps(steps: list[StepSpec], prefix: tuple[Any, ...]) -> Iterator[tuple[tuple[Any, ...], StepSpec]]:
    for i, s in enumerate(steps):
        path = (*prefix, i)
        yield path, s
        for f in s.NESTED:
            yield from walk_steps(getattr(s, f), (*path, f))


def _locator(loaded: LoadedFlow) -> Callable[[tuple[Any, ...]], Location]:
    sources = loaded.composed.sources if loaded.composed is not None else None

    def locate(path: tuple[Any, ...]) -> Location:
        if sources is not None:
            loc = sources.locate(path)
            if loc.file or loc.origin:
                return loc
        return Location(loaded.source)

    return locate


def check_flow(
    flow: Flow,
    services: Any,
    functions: dict[str, Callable[..., Any]],
    *,
    locate: Callable[[tuple[Any, ...]], Location],
    flow_dir: Path | None,
    allow_code: bool = True,
    loaded: LoadedFlow | None = None,
) -> list[Diagnostic]:
    """Every tool problem of ``flow``. With ``allow_code=False`` (flows posted over HTTP to a
    server without --allow-shell), tools that lead to code execution are problems too."""
    out: list[Diagnostic] = []
    project, file_diags = services.project_servers()
    servers = all_servers(flow, project)
    entries = list(tool_entries(flow))
    if entries:
        out += file_diags
    names: dict[tuple[str, ...], dict[str, tuple[Any, ...]]] = {}

    def fmt(path: tuple[Any, ...]) -> str:
        return format_path(_written(loaded, path))

    for path, spec, owner in entries:
        r: Resolved = classify(
            spec,
            functions=functions,
            servers=servers,
            flow_dir=flow_dir,
            config_dir=services.conf_dir,
            index_dir=services.index_dir,
        )
        if r.problem is not None:
            code, message, hint = r.problem
            out.append(Diagnostic(code, f"{owner}: {message}", fmt(path), hint, locate(path)))
            continue
        if (
            not allow_code
            and r.runs_code
            and not (r.server is not None and r.server in project and r.server not in flow.mcp_servers)
        ):
            what = (
                "an MCP server started as a command"
                if r.server
                else ("a flow with shell, python or sub-flow steps" if spec.flow else "a tool that runs code")
            )
            out.append(
                Diagnostic(
                    "not-allowed",
                    f"{owner}: tool {spec.ref!r} is {what}; flows posted over the API may not run code on the server",
                    fmt(path),
                    "start the server with --allow-shell, use a tool the operator registered, or serve the flow from the config dir",
                    locate(path),
                )
            )
        owner_key = path[:-2]
        seen = names.setdefault(owner_key, {})
        for t in r.tools:
            n = spec.name or t.name
            if n in seen:
                out.append(
                    Diagnostic(
                        "duplicate-tool",
                        f"{owner}: two tools are named {n!r}",
                        fmt(path),
                        "give one of them another name: {tool: ..., name: other_name}",
                        locate(path),
                    )
                )
            seen[n] = path
    return out


def check_loaded(
    loaded: LoadedFlow,
    services: Any,
    functions: dict[str, Callable[..., Any]],
    *,
    thread: str | None = None,
    allow_code: bool = True,
) -> list[Diagnostic]:
    from llmflow.tools.threads import check_thread_name

    out: list[Diagnostic] = []
    if thread is not None:
        problem = check_thread_name(thread)
        if problem:
            out.append(
                Diagnostic(
                    "invalid-value",
                    problem,
                    "thread",
                    "use a simple name such as support-42",
                    Location(origin="run option thread"),
                )
            )
    src = loaded.source
    flow_dir = Path(src).resolve().parent if src and not src.startswith("<") else None
    out += check_flow(
        loaded.flow,
        services,
        functions,
        locate=_locator(loaded),
        flow_dir=flow_dir,
        allow_code=allow_code,
        loaded=loaded,
    )
    return out


def validate_flow_and_tools(
    target: str, overrides: list[str], config_dir: str | Path | None, settings: Any
) -> list[Diagnostic]:
    """``llmflow validate``: the model's checks, then (when those pass) the tool checks."""
    from llmflow.model.loader import load_flow, validate_flow
    from llmflow.tools.services import ToolServices

    diags = validate_flow(target, overrides, config_dir)
    if diags:
        return diags
    loaded = load_flow(target, overrides, config_dir)
    return check_loaded(loaded, ToolServices(settings), {})
