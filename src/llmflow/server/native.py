"""The native API under ``/api/v1``: flows, runs (create, list, show, events, SSE, control,
re-run, fork, answers, artifacts), projects, stats and the worker.

Run ids are opaque strings. Event cursors are per-run sequence numbers (``seq``, from 1).
"""

from __future__ import annotations

import asyncio
from pathlib import Path as FsPath
from typing import Annotated, Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse

from llmflow.engine.states import RUN_TERMINAL, RunStatus
from llmflow.errors import FlowValidationError, LlmflowError, RunNotFoundError, WorkspaceError
from llmflow.isotime import iso, iso_event, iso_view
from llmflow.server.errors import SafeJSONResponse, diagnostics_detail
from llmflow.server.schemas import (
    AnswerIn,
    CreateRunIn,
    CreateRunsIn,
    DirectiveIn,
    ForkIn,
    ProjectIn,
    RerunIn,
    RunSpecIn,
    ValidateIn,
)
from llmflow.server.services import Services, _under
from llmflow.server.sse import event_frames, last_event_id, sse_response

router = APIRouter(prefix="/api/v1", tags=["native"])

Status = Literal["QUEUED", "RUNNING", "PAUSED", "COMPLETED", "FAILED", "CANCELED"]
RunId = Annotated[str, Path(min_length=1, max_length=300, description="an opaque run id")]
FlowName = Annotated[str, Path(min_length=1, max_length=200)]
Cursor = Annotated[int, Query(ge=0, le=2**62, description="events with a sequence number above this")]
Limit = Annotated[int, Query(ge=1, le=10_000)]


async def get_services(request: Request) -> Services:
    return request.app.state.services


Svc = Annotated[Services, Depends(get_services)]


def get_run(svc: Services, run_id: str) -> Any:
    rec = svc.store.get_run(run_id) if "\x00" not in run_id else None
    if rec is None:
        raise RunNotFoundError(f"no run {run_id!r}", hint="list runs with GET /api/v1/runs")
    return rec


def run_summary(rec: Any) -> dict[str, Any]:
    return {
        "id": rec.id,
        "flow": rec.flow_name,
        "status": rec.status,
        "name": rec.name,
        "goal": rec.goal,
        "run_type": rec.run_type,
        "project_id": rec.project_id,
        "batch_id": rec.batch_id,
        "parent_run_id": rec.parent_run_id,
        "created_at": iso(rec.created_at),
        "started_at": iso(rec.started_at),
        "ended_at": iso(rec.ended_at),
        "duration": (rec.ended_at - rec.started_at) if rec.ended_at and rec.started_at else None,
        "usage": {"input_tokens": rec.tokens_in, "output_tokens": rec.tokens_out, "cost": rec.cost},
        "error": rec.error,
        "last_seq": rec.last_seq,
        "links": {
            "self": f"/api/v1/runs/{quote(rec.id)}",
            "events": f"/api/v1/runs/{quote(rec.id)}/events",
            "stream": f"/api/v1/runs/{quote(rec.id)}/events/stream",
            "ws": f"/api/v1/runs/{quote(rec.id)}/ws",
        },
    }


def project_dict(p: Any) -> dict[str, Any]:
    return {"id": p.id, "name": p.name, "local_path": p.local_path, "created_at": iso(p.created_at)}


# -- flows ----------------------------------------------------------------------------------------
@router.get("/flows", summary="List the flows this server offers")
async def list_flows(svc: Svc) -> dict[str, Any]:
    rows = [await asyncio.to_thread(svc.catalog.describe, n) for n in svc.catalog.names()]
    return {"flows": rows}


@router.get("/flows/{name}", summary="Show a flow: inputs, steps, resolved definition")
async def show_flow(name: FlowName, svc: Svc) -> dict[str, Any]:
    entry = svc.catalog.entry(name)
    loaded = await svc.load(name)
    f = loaded.flow
    return {
        "name": f.name,
        "origin": entry.origin,
        "description": f.description,
        "version": f.version,
        "inputs": {
            k: {"type": s.type, "required": s.is_required, "default": s.default, "description": s.description}
            for k, s in f.inputs.items()
        },
        "steps": [
            {"id": s.id, "kind": s.kind, "needs": s.needs or [], "description": s.description}
            for s in f.steps
        ],
        "definition": loaded.public_dict(),  # secrets as their ${oc.env:...}
    }


@router.get(
    "/flows/{name}/graph", summary="A flow's step graph: Mermaid text, nodes and edges", response_model=None
)
async def flow_graph(
    name: FlowName, svc: Svc, format: Annotated[Literal["json", "text"], Query()] = "json"
) -> Any:
    """JSON: ``{name, mermaid, nodes, edges}`` (nodes and edges as
    :func:`llmflow.model.graph.to_json` describes; the console lays them out); ``text``:
    the Mermaid text alone."""
    from llmflow.model.graph import to_json, to_mermaid

    flow = (await svc.load(name)).flow
    text = to_mermaid(flow)
    if format == "text":
        return PlainTextResponse(text)
    return {"name": name, "mermaid": text, **to_json(flow)}


@router.post("/flows/validate", summary="Validate a served flow or a flow document")
async def validate_flow(body: ValidateIn, svc: Svc) -> dict[str, Any]:
    try:
        if body.flow is not None:
            f = (await svc.load(body.flow)).flow
        else:
            f = svc.parse_document(body.document).flow  # type: ignore[arg-type]
    except FlowValidationError as exc:
        return {"valid": False, "flow": body.flow, "diagnostics": diagnostics_detail(exc.diagnostics)}
    return {"valid": True, "flow": f.name, "diagnostics": []}


# -- runs -----------------------------------------------------------------------------------------
@router.post(
    "/runs",
    status_code=201,
    summary="Create a run (queued; wait=true answers when it has finished)",
    response_model=None,
)
async def create_run(
    body: CreateRunIn,
    svc: Svc,
    traceparent: Annotated[
        str | None, Header(max_length=256, description="W3C trace context: the run's trace continues it")
    ] = None,
) -> Any:
    loaded, posted = await _flow_of(svc, body)
    try:
        opts = _options_of(svc, body, posted, traceparent)
    except LookupError as exc:
        return _unknown_project(["body", "options", "project_id"], exc)
    rec = await svc.submit_async(loaded, body.inputs, opts)
    if not body.wait:  # a plain dict of JSON values: answered as is, not walked by FastAPI again
        return SafeJSONResponse(run_summary(rec), status_code=201)
    rec = await svc.wait(rec.id, body.wait_timeout)
    view = iso_view(await asyncio.to_thread(svc.runtime.view, rec.id))
    return JSONResponse(view, status_code=200 if svc.is_terminal(rec) else 202)


@router.post(
    "/runs/bulk",
    status_code=201,
    summary="Create several runs in one request (all queued, or none)",
    response_model=None,
)
async def create_runs(
    body: CreateRunsIn,
    svc: Svc,
    traceparent: Annotated[
        str | None, Header(max_length=256, description="W3C trace context: every run's trace continues it")
    ] = None,
) -> Any:
    items = []
    for i, item in enumerate(body.runs):
        try:
            loaded, posted = await _flow_of(svc, item)
        except FlowValidationError as exc:
            raise FlowValidationError([_under(f"runs[{i}]", d) for d in exc.diagnostics]) from None
        except LlmflowError as exc:  # answered as its kind is (404 for an unknown flow), naming the item
            exc.message = f"runs[{i}]: {exc.message}"
            raise
        try:
            opts = _options_of(svc, item, posted, traceparent)
        except LookupError as exc:
            return _unknown_project(["body", "runs", i, "options", "project_id"], exc)
        items.append((loaded, item.inputs, opts))
    recs = await svc.submit_many_async(items)
    return SafeJSONResponse({"runs": [run_summary(r) for r in recs]}, status_code=201)


async def _flow_of(svc: Services, spec: RunSpecIn) -> tuple[Any, bool]:
    """The flow a posted run names, or the document it carries; and whether it was posted."""
    if spec.flow is not None:
        return await svc.load(spec.flow), False
    return svc.parse_document(spec.document), True  # type: ignore[arg-type]


def _options_of(svc: Services, spec: RunSpecIn, posted: bool, traceparent: str | None) -> Any:
    """A posted run's options (LookupError: an unknown project)."""
    from llmflow.observe.ids import with_traceparent

    o = spec.options
    return svc.options(
        models=o.models,
        timeout=o.timeout_seconds,
        project_id=o.project_id,
        name=o.name,
        metadata=with_traceparent(o.metadata, traceparent),
        posted=posted,
        max_concurrency=o.max_concurrency,
        max_tokens=o.max_tokens,
        max_cost=o.max_cost,
        thread=o.thread,
    )


def _unknown_project(loc: list[Any], exc: LookupError) -> JSONResponse:
    return JSONResponse({"detail": [{"loc": loc, "msg": str(exc), "type": "not_found"}]}, status_code=404)


@router.get("/runs", summary="List runs, newest first")
async def list_runs(
    svc: Svc,
    flow: Annotated[str | None, Query(max_length=200)] = None,
    status: Annotated[Status | None, Query()] = None,
    project_id: Annotated[int | None, Query(ge=-(2**53), le=2**53)] = None,
    batch_id: Annotated[str | None, Query(max_length=300)] = None,
    parent_run_id: Annotated[str | None, Query(max_length=300)] = None,
    in_batch: Annotated[
        bool | None,
        Query(
            description="false: only runs of no batch (the dashboard groups batch runs under their batch); true: only batch runs"
        ),
    ] = None,
    limit: Limit = 50,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
) -> dict[str, Any]:
    for v in (flow, batch_id, parent_run_id):
        if v is not None and "\x00" in v:
            return {"runs": [], "total": 0, "limit": limit, "offset": offset}

    def read() -> dict[str, Any]:  # in a thread: the store's reads must not block the loop
        rows = svc.store.list_runs(
            flow=flow,
            status=status,
            project_id=project_id,
            batch_id=batch_id,
            parent_run_id=parent_run_id,
            limit=limit,
            offset=offset,
            in_batch=in_batch,
        )
        total = (
            svc.store.count_runs(flow=flow, status=status, batch_id=batch_id, in_batch=in_batch)
            if project_id is None and parent_run_id is None
            else None
        )
        return {"runs": [run_summary(r) for r in rows], "total": total, "limit": limit, "offset": offset}

    return await asyncio.to_thread(read)


@router.get("/runs/{run_id}", summary="Show a run: steps, attempts, outputs, usage")
async def show_run(run_id: RunId, svc: Svc) -> dict[str, Any]:
    def read() -> dict[str, Any]:  # the store's reads and folding a long log: off the loop
        if "\x00" in run_id:
            get_run(svc, run_id)  # raises the API's 404
        try:  # the view reads the run itself: no second read to check that it exists
            return iso_view(svc.runtime.view(run_id))
        except RunNotFoundError:
            raise RunNotFoundError(f"no run {run_id!r}", hint="list runs with GET /api/v1/runs") from None

    return await asyncio.to_thread(read)


@router.get("/runs/{run_id}/events", summary="A run's events after a cursor")
async def run_events(
    run_id: RunId, svc: Svc, after: Cursor = 0, limit: Limit = 1000, tokens: bool = True
) -> dict[str, Any]:
    def read() -> dict[str, Any]:  # off the loop
        events = svc.store.events(run_id, after, limit) if "\x00" not in run_id else []
        if not events:  # a run with events exists; one without may not
            get_run(svc, run_id)
        last = events[-1].seq if events else after
        rows = [iso_event(e.to_dict()) for e in events if tokens or e.type != "LLM_TOKENS"]
        return {"run_id": run_id, "events": rows, "next_after": last}

    return await asyncio.to_thread(read)


@router.get(
    "/runs/{run_id}/events/stream",
    summary="SSE stream of a run's events (resumes from Last-Event-ID)",
    response_class=Response,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def run_stream(run_id: RunId, request: Request, svc: Svc, after: Cursor = 0) -> Any:
    get_run(svc, run_id)
    start = last_event_id(request)
    return sse_response(
        event_frames(
            svc,
            run_id,
            start if start is not None else after,
            lambda e: (e.seq, e.type, iso_event(e.to_dict())),
        ),
        svc.config.sse_keepalive,
    )


async def _control(
    svc: Services, run_id: str, action: str, payload: dict[str, Any] | None = None
) -> dict[str, Any]:
    get_run(svc, run_id)
    result = svc.control(run_id, action, payload)
    want = {
        "cancel": RUN_TERMINAL,
        "pause": frozenset({RunStatus.PAUSED}) | RUN_TERMINAL,
        "resume": frozenset({RunStatus.QUEUED, RunStatus.RUNNING}) | RUN_TERMINAL,
    }.get(action)
    rec = await svc.settle(run_id, want) if want else svc.store.get_run(run_id)
    return {"run_id": run_id, "action": action, "result": result, "status": rec.status}


@router.post("/runs/{run_id}/cancel", summary="Cancel a run: in-flight steps stop, nothing new starts")
async def cancel_run(run_id: RunId, svc: Svc) -> dict[str, Any]:
    return await _control(svc, run_id, "cancel")


@router.post("/runs/{run_id}/pause", summary="Pause a run: running steps finish, no new step starts")
async def pause_run(run_id: RunId, svc: Svc) -> dict[str, Any]:
    return await _control(svc, run_id, "pause")


@router.post("/runs/{run_id}/resume", summary="Resume a paused run (re-queued for a worker)")
async def resume_run(run_id: RunId, svc: Svc) -> dict[str, Any]:
    return await _control(svc, run_id, "resume")


@router.post("/runs/{run_id}/answer", summary="Answer a human-input request (kept if it arrives early)")
async def answer_run(run_id: RunId, body: AnswerIn, svc: Svc) -> dict[str, Any]:
    return await _control(svc, run_id, "answer", {"request_id": body.request_id, "answer": body.answer})


@router.post("/runs/{run_id}/directive", summary="Record a directive in the run's log")
async def record_directive(run_id: RunId, body: DirectiveIn, svc: Svc) -> dict[str, Any]:
    get_run(svc, run_id)
    events = svc.directive(run_id, body.text)
    return {
        "run_id": run_id,
        "recorded": [iso_event(e.to_dict()) for e in events],
        "result": "recorded" if events else "sent to the running run",
    }


@router.post("/runs/{run_id}/rerun", summary="Re-run one step in place (dependents become STALE)")
async def rerun_step(run_id: RunId, body: RerunIn, svc: Svc) -> dict[str, Any]:
    get_run(svc, run_id)
    stale = svc.rerun(run_id, body.step, body.unit, body.downstream)
    return {
        "run_id": run_id,
        "step": body.step,
        "unit": body.unit,
        "stale": stale,
        "status": svc.store.get_run(run_id).status,
    }


@router.post(
    "/runs/{run_id}/fork", status_code=201, summary="A new run reusing this run's outputs before a step"
)
async def fork_run(run_id: RunId, body: ForkIn, svc: Svc) -> dict[str, Any]:
    get_run(svc, run_id)
    new = svc.runtime.fork(run_id, body.from_step)
    svc.kick(new.id)
    return run_summary(new)


# -- artifacts ------------------------------------------------------------------------------------
def artifact_rows(svc: Services, rec: Any, prefix: str) -> list[dict[str, Any]]:
    return [
        {
            "path": a.path,
            "size": a.size,
            "sha256": a.sha256,
            "mime": a.mime,
            "step_id": a.step_id,
            "attempt": a.attempt,
            "created_at": iso(a.created_at),
            "url": f"{prefix}/runs/{quote(rec.id)}/artifacts/{quote(a.path)}",
        }
        for a in svc.store.artifacts(rec.id)
    ]


def artifact_file(svc: Services, rec: Any, path: str) -> FsPath | None:
    """The file of a recorded artifact, looked up inside the run's workspace and artifacts
    directory only."""
    from llmflow.steps.workspace import safe_path

    if "\x00" in path or path not in {a.path for a in svc.store.artifacts(rec.id)}:
        return None
    for base in (svc.runtime.workspace_of(rec), svc.runtime.artifacts_of(rec)):
        try:
            p = safe_path(base, path)
        except WorkspaceError:
            continue
        if p.is_file():
            return p
    return None


@router.get("/runs/{run_id}/artifacts", summary="Files the run's steps produced")
async def list_artifacts(run_id: RunId, svc: Svc) -> dict[str, Any]:
    rec = get_run(svc, run_id)
    return {"run_id": run_id, "artifacts": artifact_rows(svc, rec, "/api/v1")}


@router.get(
    "/runs/{run_id}/artifacts/{path:path}",
    summary="Download one artifact",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
async def download_artifact(run_id: RunId, path: str, svc: Svc) -> Any:
    rec = get_run(svc, run_id)
    f = artifact_file(svc, rec, path)
    if f is None:
        return JSONResponse({"detail": f"run {run_id} has no artifact {path!r}"}, status_code=404)
    return FileResponse(f, filename=f.name)


# -- projects, stats, worker ----------------------------------------------------------------------
@router.get("/projects", summary="List projects")
async def list_projects(svc: Svc) -> dict[str, Any]:
    return {"projects": [project_dict(p) for p in svc.store.list_projects()]}


@router.post(
    "/projects", status_code=201, summary="Create a project (a workspace directory under the projects root)"
)
async def create_project(body: ProjectIn, svc: Svc) -> dict[str, Any]:
    return project_dict(svc.create_project(body.name, body.local_path, ("body", "local_path")))


@router.get("/stats", summary="Run statistics: totals, p50/p95 durations, tokens per model")
async def run_stats(svc: Svc, flow: Annotated[str | None, Query(max_length=200)] = None) -> dict[str, Any]:
    from llmflow.stats import compute_stats

    if flow is not None and "\x00" in flow:
        flow = ""
    return await asyncio.to_thread(compute_stats, svc.store, flow)


@router.get("/worker", summary="The in-process worker's state")
async def worker_status(svc: Svc) -> dict[str, Any]:
    return svc.worker.status()


@router.post("/worker/process", summary="Execute queued runs now and wait for them (or for timeout seconds)")
async def worker_process(
    svc: Svc, timeout: Annotated[float, Query(gt=0, le=3600, allow_inf_nan=False)] = 60.0
) -> dict[str, Any]:
    ids = await svc.worker.process_available(timeout)
    return {"message": "Processing triggered", "processed": ids}
