"""llmflow as an MCP server (the official ``mcp`` SDK, 2.x): an agent in an editor lists,
validates and starts flows, follows runs, answers their questions, cancels them, re-runs a
step and reads artifacts.

Two transports over the same tools and the same service layer (catalog, store, worker):
``/mcp`` on ``llmflow serve`` (streamable HTTP, behind the API token like every route), and
``llmflow mcp`` (stdio; the process runs its own queue worker). Errors a user can fix come
back as tool errors carrying llmflow's message and hint, never a traceback.
"""

from __future__ import annotations

import asyncio
import base64
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from llmflow.engine.events import RUN_END_EVENTS
from llmflow.engine.events import EventType as E
from llmflow.engine.states import RUN_TERMINAL, RunStatus
from llmflow.errors import FlowValidationError, LlmflowError
from llmflow.isotime import iso_event, iso_view

INSTRUCTIONS = """\
llmflow runs multi-step LLM flows with a durable event log. Typical use: list_flows, then
start_run (flow name + inputs), then follow_run until it is finished or waits for a person
(answer_prompt), then show_run / read_artifact. rerun_step re-runs one step of a finished
run in place; cancel_run stops one."""

QUIET = frozenset({E.LLM_TOKENS, E.LLM_HEARTBEAT, E.LLM_LOADING_MODEL})
ENDS = RUN_END_EVENTS | frozenset({E.RUN_PARKED, E.RUN_PAUSED})
# a run in one of these is not moving: it waits for someone, or it is over
_STILL = RUN_TERMINAL | frozenset({RunStatus.WAITING, RunStatus.PAUSED})
MAX_ARTIFACT_BYTES = 1_000_000
MAX_FOLLOW_SECONDS = 300.0


def _tool(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """llmflow's own errors become tool errors (message + hint) the model can act on."""
    from mcp.server.mcpserver.exceptions import ToolError

    @functools.wraps(fn)
    async def wrapped(*args: Any, **kw: Any) -> Any:
        try:
            return await fn(*args, **kw)
        except FlowValidationError as exc:
            lines = [str(d) for d in getattr(exc, "diagnostics", [])] or [exc.message]
            raise ToolError("invalid flow or inputs:\n" + "\n".join(lines)) from None
        except LlmflowError as exc:
            raise ToolError(exc.message + (f" (hint: {exc.hint})" if exc.hint else "")) from None
        except LookupError as exc:
            raise ToolError(str(exc.args[0] if exc.args else exc)) from None

    return wrapped


def _event(e: Any) -> dict[str, Any]:
    d = {"seq": e.seq, "type": e.type, "ts": iso_event(e.to_dict())["ts"], "message": e.message}
    for k in ("step_id", "unit", "attempt"):
        if getattr(e, k) is not None:
            d[k] = getattr(e, k)
    return d


def build_server(services: Callable[[], Any]) -> Any:
    """The MCP server; ``services()`` gives the service layer (opened by the caller)."""
    from mcp.server.mcpserver import MCPServer

    from llmflow import __version__
    from llmflow.observe.context import traceparent_of
    from llmflow.server.native import artifact_file, artifact_rows, get_run, run_summary

    server = MCPServer("llmflow", instructions=INSTRUCTIONS, version=__version__)

    @server.tool()
    @_tool
    async def list_flows() -> dict[str, Any]:
        """The flows this server offers: name, description, inputs (with types and defaults)."""
        svc = services()
        return {"flows": [await asyncio.to_thread(svc.catalog.describe, n) for n in svc.catalog.names()]}

    @server.tool()
    @_tool
    async def validate_flow(flow: str | None = None, document: str | None = None) -> dict[str, Any]:
        """Validate a served flow (by name) or a flow document (YAML text). Returns
        valid plus diagnostics with file, line, key path and a hint."""
        svc = services()
        if (flow is None) == (document is None):
            raise LlmflowError("give exactly one of flow (a served flow's name) or document (YAML text)")
        try:
            f = (await svc.load(flow)).flow if flow is not None else svc.parse_document(document).flow
        except FlowValidationError as exc:
            return {"valid": False, "diagnostics": [str(d) for d in exc.diagnostics]}
        return {"valid": True, "flow": f.name, "diagnostics": []}

    @server.tool()
    @_tool
    async def start_run(
        flow: str,
        inputs: dict[str, Any] | None = None,
        model: str | None = None,
        wait: bool = False,
        wait_timeout: float = 60.0,
    ) -> dict[str, Any]:
        """Start a run of a served flow with inputs (queued for the worker). model
        (provider:model) overrides every LLM step's model. wait=true answers when the run
        has finished or stopped to wait for a person (at most wait_timeout seconds)."""
        svc = services()
        loaded = await svc.load(flow)
        opts = svc.options(models={"*": model} if model else None)
        rec = svc.submit(loaded, dict(inputs or {}), opts)
        if wait:
            return await _follow(svc, rec.id, 0, wait_timeout)
        return {**run_summary(rec), "traceparent": traceparent_of(svc.store, rec.id)}

    @server.tool()
    @_tool
    async def list_runs(
        flow: str | None = None, status: str | None = None, limit: int = 20
    ) -> dict[str, Any]:
        """Recent runs, newest first (filter by flow name or status: QUEUED, RUNNING,
        WAITING, PAUSED, COMPLETED, FAILED, CANCELED)."""
        svc = services()
        rows = svc.store.list_runs(
            flow=flow, status=status.upper() if status else None, limit=max(1, min(limit, 200))
        )
        return {"runs": [run_summary(r) for r in rows]}

    @server.tool()
    @_tool
    async def show_run(run_id: str) -> dict[str, Any]:
        """A run: status, steps (status, output, error, attempts, durations), outputs,
        usage and cost, open questions, and its trace (W3C traceparent)."""
        svc = services()
        get_run(svc, run_id)
        view = iso_view(await asyncio.to_thread(svc.runtime.view, run_id))
        view["open_questions"] = _questions(svc, run_id)
        view["traceparent"] = traceparent_of(svc.store, run_id)
        return view

    @server.tool()
    @_tool
    async def run_events(
        run_id: str, after_seq: int = 0, limit: int = 200, tokens: bool = False
    ) -> dict[str, Any]:
        """A run's events after a sequence number (streamed token chunks left out unless
        tokens=true). next_after is the cursor for the next call."""
        svc = services()
        get_run(svc, run_id)
        events = svc.store.events(run_id, max(0, after_seq), max(1, min(limit, 1000)))
        rows = [_event(e) for e in events if tokens or e.type not in QUIET]
        return {"run_id": run_id, "events": rows, "next_after": events[-1].seq if events else after_seq}

    @server.tool()
    @_tool
    async def follow_run(run_id: str, after_seq: int = 0, timeout: float = 30.0) -> dict[str, Any]:
        """Follow a run live: returns its events after after_seq once it has finished, is
        waiting for a person (see open_questions; answer with answer_prompt), is paused,
        or after timeout seconds. Call again with next_after to keep following."""
        svc = services()
        get_run(svc, run_id)
        return await _follow(svc, run_id, after_seq, timeout)

    @server.tool()
    @_tool
    async def answer_prompt(run_id: str, answer: Any, request_id: str | None = None) -> dict[str, Any]:
        """Answer a run's open human-input question (request_id from open_questions; the
        only open one when left out). The run continues."""
        svc = services()
        get_run(svc, run_id)
        result = svc.control(run_id, "answer", {"request_id": request_id, "answer": answer})
        return {"run_id": run_id, "result": result, "status": svc.store.get_run(run_id).status}

    @server.tool()
    @_tool
    async def cancel_run(run_id: str, reason: str | None = None) -> dict[str, Any]:
        """Cancel a run: steps in flight stop, nothing new starts."""
        svc = services()
        get_run(svc, run_id)
        result = svc.control(run_id, "cancel", {"reason": reason} if reason else {})
        rec = await svc.settle(run_id, RUN_TERMINAL)
        return {"run_id": run_id, "result": result, "status": rec.status}

    @server.tool()
    @_tool
    async def rerun_step(
        run_id: str, step: str, unit: str | None = None, downstream: bool = False
    ) -> dict[str, Any]:
        """Re-run one step of a finished (or paused) run in place; the steps depending on
        it become STALE (and run again with downstream=true). Follow it with follow_run."""
        svc = services()
        get_run(svc, run_id)
        after = svc.store.get_run(run_id).last_seq
        stale = svc.rerun(run_id, step, unit, downstream)
        return {
            "run_id": run_id,
            "step": step,
            "stale": stale,
            "status": svc.store.get_run(run_id).status,
            "follow_after_seq": after,
        }

    @server.tool()
    @_tool
    async def list_artifacts(run_id: str) -> dict[str, Any]:
        """Files a run's steps produced: path, size, sha256, step."""
        svc = services()
        rec = get_run(svc, run_id)
        return {"run_id": run_id, "artifacts": artifact_rows(svc, rec, "/api/v1")}

    @server.tool()
    @_tool
    async def read_artifact(run_id: str, path: str, max_bytes: int = 200_000) -> dict[str, Any]:
        """Read one artifact of a run: text when it is UTF-8, else base64 (at most
        max_bytes, up to 1 MB; truncated says whether more was left out)."""
        svc = services()
        rec = get_run(svc, run_id)
        f = artifact_file(svc, rec, path)
        if f is None:
            names = ", ".join(a.path for a in svc.store.artifacts(run_id)) or "(none)"
            raise LlmflowError(f"run {run_id} has no artifact {path!r}", hint=f"its artifacts: {names}")
        limit = max(1, min(max_bytes, MAX_ARTIFACT_BYTES))
        data = f.read_bytes()
        out: dict[str, Any] = {
            "run_id": run_id,
            "path": path,
            "size": len(data),
            "truncated": len(data) > limit,
        }
        try:
            out["text"] = data[:limit].decode("utf-8")
        except UnicodeDecodeError:
            out["base64"] = base64.b64encode(data[:limit]).decode("ascii")
        return out

    return server


def _questions(svc: Any, run_id: str) -> list[dict[str, Any]]:
    return [
        {
            "request_id": rid,
            **{
                k: q.get(k)
                for k in ("prompt", "input", "options", "default", "step_id")
                if q.get(k) is not None
            },
        }
        for rid, q in svc.runtime.pending_requests(run_id).items()
    ]


async def _follow(svc: Any, run_id: str, after_seq: int, timeout: float) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max(0.0, min(timeout, MAX_FOLLOW_SECONDS))
    follower = svc.follower(run_id, max(0, after_seq))
    rows: list[dict[str, Any]] = []
    stop = False
    while not stop:
        left = deadline - loop.time()
        if left <= 0:
            break
        events = await follower.next(min(left, 1.0))
        for e in events:
            if e.type not in QUIET:
                rows.append(_event(e))
            if e.type in ENDS or e.type == E.HUMAN_INPUT_REQUESTED:
                stop = True
        if not events and svc.store.get_run(run_id).status in _STILL:
            stop = True  # nothing new and it is not moving: say so now
    rec = svc.store.get_run(run_id)
    questions = _questions(svc, run_id) if rec.status not in RUN_TERMINAL else []
    return {
        "run_id": run_id,
        "status": rec.status,
        "finished": rec.status in RUN_TERMINAL,
        "outputs": rec.outputs,
        "error": rec.error,
        "open_questions": questions,
        "events": rows,
        "next_after": follower.seq,
    }


# -- transports ----------------------------------------------------------------------------------
def install(app: Any, config: Any) -> None:
    """``/mcp`` (streamable HTTP) on the service's app. Each lifespan of the app runs a fresh
    MCP server (:func:`running`: the SDK's session manager runs once per instance). The token
    check and cross-site refusal cover it like any route."""
    from starlette.routing import Route

    app.state.mcp_config = config
    app.router.routes.append(Route("/mcp", endpoint=_Endpoint(app)))


class _Endpoint:
    """The ASGI endpoint of ``/mcp``: the running MCP server's, 503 outside a lifespan."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        handler = getattr(self.app.state, "mcp_asgi", None)
        if handler is None:
            from starlette.responses import JSONResponse

            await JSONResponse({"detail": "the MCP server is not running"}, status_code=503)(
                scope, receive, send
            )
            return
        await handler(scope, receive, send)


@asynccontextmanager
async def running(app: Any) -> AsyncIterator[None]:
    config = getattr(app.state, "mcp_config", None)
    if config is None:
        yield
        return
    server = build_server(lambda: app.state.services)
    sub = server.streamable_http_app(streamable_http_path="/mcp", host=config.host)
    async with server.session_manager.run():
        app.state.mcp_asgi = sub
        try:
            yield
        finally:
            app.state.mcp_asgi = None


async def serve_stdio(services: Any) -> None:
    """``llmflow mcp``: the tools over stdin/stdout, on services the caller opened."""
    server = build_server(lambda: services)
    await server.run_stdio_async()
