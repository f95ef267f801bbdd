"""Agent Runner's API: the same routes and JSON shapes, so its console, Bruno collection and
scripts keep working (``johnboyce/agent-runner`` ``app/routes.py``).

Differences, on purpose:

- ids of runs are opaque strings (theirs are integers); project ids stay integers;
- ``resume`` re-queues a run paused before it started; ``stop`` really stops a running
  workflow (cancel); a failing ``mvn test`` fails the run;
- a stopped (canceled) run reports status ``STOPPED``, as theirs did;
- ``run_type`` other than ``workflow`` runs the built-in ``agent`` flow (plan, then
  execute) unless ``options.workflow`` names a flow; theirs only simulated it;
- errors are 404 / 409 / 422 / 400 with ``{"detail": ...}``, never 500.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import JSONResponse

from llmflow.errors import FlowNotFoundError, RunStateError
from llmflow.server.catalog import AGENT_FLOW, DEFAULT_WORKFLOW
from llmflow.server.native import artifact_rows, get_run
from llmflow.server.schemas import AgentRunIn, DirectiveIn, check_text
from llmflow.server.services import Services
from llmflow.server.sse import event_frames, last_event_id, sse_response

router = APIRouter(tags=["agent-runner"])

ACTIONS = ("pause", "resume", "stop")
RunId = Annotated[str, Path(min_length=1, max_length=300, description="an opaque run id")]


def get_services(request: Request) -> Services:
    return request.app.state.services


Svc = Annotated[Services, Depends(get_services)]


def iso(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, UTC).isoformat() if ts else None


def status_of(rec: Any) -> str:
    return "STOPPED" if rec.status == "CANCELED" else rec.status


def run_dict(svc: Services, rec: Any) -> dict[str, Any]:
    steps = svc.store.step_rows(rec.id)
    return {
        "id": rec.id,
        "project_id": rec.project_id,
        "name": rec.name,
        "goal": rec.goal,
        "run_type": rec.run_type,
        "status": status_of(rec),
        "current_iteration": sum(1 for s in steps.values() if s["status"] == "COMPLETED"),
        "options": rec.options.get("request_options"),
        "metadata": rec.metadata or None,
        "created_at": iso(rec.created_at),
    }


def event_dict(e: Any) -> dict[str, Any]:
    return {"id": e.id, "run_id": e.run_id, "type": e.type, "payload": e.message, "created_at": iso(e.ts)}


def project_dict(p: Any) -> dict[str, Any]:
    return {"id": p.id, "name": p.name, "local_path": p.local_path, "created_at": iso(p.created_at)}


def seq_after_id(svc: Services, run_id: str, after_id: int) -> int:
    """The per-run sequence number that corresponds to Agent Runner's global ``after_id``."""
    if after_id <= 0:
        return 0
    events = svc.store.events(run_id)
    for e in events:
        if e.id is not None and e.id > after_id:
            return e.seq - 1
    return events[-1].seq if events else 0


# -- projects -------------------------------------------------------------------------------------
@router.post("/projects", summary="Create a project (query parameters, as in Agent Runner)")
async def create_project(
    svc: Svc,
    name: Annotated[str, Query(min_length=1, max_length=200)],
    local_path: Annotated[str, Query(min_length=1, max_length=4096)],
) -> Any:
    for field, value in (("name", name), ("local_path", local_path)):
        try:
            check_text(value)
        except ValueError as exc:
            return JSONResponse({"detail": [{"loc": ["query", field], "msg": str(exc), "type": "value_error"}]}, status_code=422)
    return project_dict(svc.create_project(name, local_path))


@router.get("/projects", summary="List projects")
async def list_projects(svc: Svc) -> list[dict[str, Any]]:
    return [project_dict(p) for p in svc.store.list_projects()]


# -- runs -----------------------------------------------------------------------------------------
@router.post("/runs", summary="Create a run (status QUEUED) in a project")
async def create_run(body: AgentRunIn, svc: Svc) -> Any:
    project = svc.store.get_project(body.project_id)
    if project is None:
        return JSONResponse({"detail": f"Project with id {body.project_id} not found"}, status_code=404)
    options = dict(body.options or {})
    named = options.get("workflow") or options.get("workflow_name")
    if named is not None and not isinstance(named, str):
        return JSONResponse({"detail": [{"loc": ["body", "options", "workflow"], "msg": "the workflow must be a flow name", "type": "string_type"}]}, status_code=422)
    flow_name = named or (DEFAULT_WORKFLOW if body.run_type == "workflow" else AGENT_FLOW)
    try:
        loaded = await svc.load(flow_name)
    except FlowNotFoundError as exc:
        detail = f"Workflow {flow_name!r} not found" + (f" ({exc.hint})" if exc.hint else "")
        return JSONResponse({"detail": [{"loc": ["body", "options", "workflow"], "msg": detail, "type": "workflow_not_found"}]}, status_code=422)
    models = options.get("models") or {}
    timeout = options.get("timeout_seconds")
    problems = []
    if not isinstance(models, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in models.items()):
        problems.append({"loc": ["body", "options", "models"], "msg": "models maps step names to provider:model strings", "type": "dict_type"})
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= 7 * 86400):
        problems.append({"loc": ["body", "options", "timeout_seconds"], "msg": "timeout_seconds must be a number of seconds above 0 (at most a week)", "type": "value_error"})
    if problems:
        return JSONResponse({"detail": problems}, status_code=422)
    inputs = {"goal": body.goal} if "goal" in loaded.flow.inputs else {}
    name = body.name or time.strftime("Run - %Y-%m-%d %H:%M")
    opts = svc.options(models=models, timeout=timeout, project_id=project.id, name=name, goal=body.goal, run_type=body.run_type, metadata=body.metadata, request_options=body.options)
    rec = svc.submit(loaded, inputs, opts)
    return run_dict(svc, rec)


@router.get("/runs", summary="List runs, newest first")
async def list_runs(svc: Svc, limit: Annotated[int, Query(ge=1, le=10_000)] = 1000) -> list[dict[str, Any]]:
    return [run_dict(svc, r) for r in svc.store.list_runs(limit=limit)]


@router.get("/runs/{run_id}", summary="Show a run")
async def show_run(run_id: RunId, svc: Svc) -> Any:
    rec = svc.store.get_run(run_id) if "\x00" not in run_id else None
    if rec is None:
        return JSONResponse({"detail": "Run not found"}, status_code=404)
    return run_dict(svc, rec)


@router.get("/runs/{run_id}/events", summary="A run's events with id > after_id, oldest first")
async def run_events(run_id: RunId, svc: Svc, after_id: Annotated[int, Query(ge=0, le=2**62)] = 0) -> Any:
    if "\x00" in run_id or svc.store.get_run(run_id) is None:
        return JSONResponse({"detail": "Run not found"}, status_code=404)
    return [event_dict(e) for e in svc.store.events(run_id, seq_after_id(svc, run_id, after_id))]


@router.get("/runs/{run_id}/events/stream", summary="SSE stream of a run's events (Last-Event-ID / after_id)", response_class=Response, responses={200: {"content": {"text/event-stream": {}}}})
async def run_stream(run_id: RunId, request: Request, svc: Svc, after_id: Annotated[int, Query(ge=0, le=2**62)] = 0) -> Any:
    if "\x00" in run_id or svc.store.get_run(run_id) is None:
        return JSONResponse({"detail": "Run not found"}, status_code=404)
    start = last_event_id(request)
    seq = seq_after_id(svc, run_id, start if start is not None else after_id)
    return sse_response(event_frames(svc, run_id, seq, lambda e: (e.id, e.type, event_dict(e))))


@router.post("/runs/{run_id}/directive", summary="Record a directive")
async def directive(run_id: RunId, body: DirectiveIn, svc: Svc) -> Any:
    if "\x00" in run_id or svc.store.get_run(run_id) is None:
        return JSONResponse({"detail": "Run not found"}, status_code=404)
    events = svc.directive(run_id, body.text)
    if events:
        return event_dict(events[-1])
    return {"id": None, "run_id": run_id, "type": "DIRECTIVE", "payload": body.text, "created_at": iso(time.time())}


@router.get("/runs/{run_id}/artifacts", summary="Files the run produced")
async def artifacts(run_id: RunId, svc: Svc) -> Any:
    if "\x00" in run_id or svc.store.get_run(run_id) is None:
        return JSONResponse({"detail": "Run not found"}, status_code=404)
    return artifact_rows(svc, get_run(svc, run_id), "/api/v1")


@router.post("/runs/{run_id}/{action}", summary="pause | resume | stop a run")
async def control(run_id: RunId, action: Annotated[str, Path(max_length=100)], svc: Svc) -> Any:
    action = action.lower()
    if action not in ACTIONS:
        return JSONResponse({"detail": f"Invalid action. Must be one of: {sorted(ACTIONS)}"}, status_code=400)
    rec = svc.store.get_run(run_id) if "\x00" not in run_id else None
    if rec is None:
        return JSONResponse({"detail": "Run not found"}, status_code=404)
    # idempotent, as in Agent Runner: pausing a paused run or resuming a queued one is a no-op
    noop = (action == "pause" and rec.status == "PAUSED") or (action == "resume" and rec.status in ("QUEUED", "RUNNING"))
    if not noop:
        try:
            svc.control(run_id, "cancel" if action == "stop" else action)
        except RunStateError as exc:
            return JSONResponse({"detail": exc.message}, status_code=409)
        want = {"pause": frozenset({"PAUSED", "COMPLETED", "FAILED", "CANCELED"}), "resume": frozenset({"QUEUED", "RUNNING", "COMPLETED", "FAILED", "CANCELED"}), "stop": frozenset({"CANCELED", "COMPLETED", "FAILED"})}[action]
        rec = await svc.settle(run_id, want)
    return run_dict(svc, rec)


# -- worker ---------------------------------------------------------------------------------------
@router.get("/worker/status", summary="The background worker")
async def worker_status(svc: Svc) -> dict[str, Any]:
    return svc.worker.status()


@router.post("/worker/process", summary="Process queued runs synchronously")
async def worker_process(svc: Svc) -> dict[str, Any]:
    ids = await svc.worker.process_available(min(60.0, svc.config.wait_timeout))
    return {"message": "Processing triggered", "processed": ids}
