"""Agent Runner's API: the same routes and JSON shapes, so its console, Bruno collection and
scripts keep working (``johnboyce/agent-runner`` ``app/routes.py``).

Differences, on purpose:

- runs have integer ids here, as in Agent Runner: the store-wide id of the run's first
  event (a serial assigned at creation); every route also takes llmflow's string id;
- the timeline is Agent Runner's (agent_runner_view.py): its event names and messages, as
  a view over the same log; its event ids are integers too;
- ``resume`` re-queues a run paused before it started; ``stop`` really stops a running
  workflow (cancel); a failing ``mvn test`` fails the run;
- a stopped (canceled) run reports status ``STOPPED``, as theirs did;
- ``run_type`` other than ``workflow`` runs the built-in ``agent`` flow (plan, then
  execute) unless ``options.workflow`` names a flow; theirs only simulated it;
- pause / resume / stop on a finished run answer 200 with the run unchanged;
- errors are 404 / 422 / 400 with ``{"detail": "<a string>"}`` (FastAPI's list only for
  422 validation), never 500.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from sse_starlette import ServerSentEvent

from llmflow.engine.states import RUN_TERMINAL, RunStatus, StepStatus
from llmflow.errors import FlowNotFoundError, RunStateError
from llmflow.server.agent_runner_view import SCALE, TimelineView, step_models, timeline
from llmflow.server.catalog import AGENT_FLOW, DEFAULT_WORKFLOW
from llmflow.server.native import artifact_rows, get_run
from llmflow.server.schemas import AgentRunIn, DirectiveIn, check_text
from llmflow.server.services import Services
from llmflow.server.sse import comment, frame, last_event_id, sse_response

router = APIRouter(tags=["agent-runner"])

ACTIONS = ("pause", "resume", "stop")
RunId = Annotated[
    str, Path(min_length=1, max_length=300, description="the run's integer id (or llmflow's string id)")
]


async def get_services(request: Request) -> Services:
    return request.app.state.services


Svc = Annotated[Services, Depends(get_services)]


def iso(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, UTC).isoformat() if ts else None


def status_of(rec: Any) -> str:
    return "STOPPED" if rec.status == RunStatus.CANCELED else rec.status


def run_number(svc: Services, run_id: str) -> int | None:
    """The run's integer id: the store-wide id of its first event (RUN_CREATED)."""
    first = svc.store.events(run_id, 0, limit=1)
    return first[0].id if first else None


def find_run(svc: Services, ref: str) -> Any:
    """The run named by its integer id or its string id; None when there is none."""
    if "\x00" in ref:
        return None
    if ref.isdigit() and len(ref) < 19:
        n = int(ref)
        first = svc.store.event_by_id(n) if n > 0 else None
        if first is None or first.seq != 1:
            return None
        return svc.store.get_run(first.run_id)
    return svc.store.get_run(ref)


def run_dict(svc: Services, rec: Any) -> dict[str, Any]:
    steps = svc.store.step_rows(rec.id)
    return {
        "id": run_number(svc, rec.id),
        "project_id": rec.project_id,
        "name": rec.name,
        "goal": rec.goal,
        "run_type": rec.run_type,
        "status": status_of(rec),
        "current_iteration": sum(1 for s in steps.values() if s["status"] == StepStatus.COMPLETED),
        "options": rec.options.get("request_options"),
        "metadata": rec.metadata or None,
        "created_at": iso(rec.created_at),
    }


def project_dict(p: Any) -> dict[str, Any]:
    return {"id": p.id, "name": p.name, "local_path": p.local_path, "created_at": iso(p.created_at)}


def lines(svc: Services, rec: Any, after_id: int = 0) -> list[dict[str, Any]]:
    """The run's timeline as Agent Runner shows it, lines with ids above ``after_id``."""
    number = run_number(svc, rec.id)
    return [
        ln.to_dict(number, iso)
        for ln in timeline(
            svc.store.events(rec.id), rec.goal, rec.run_type, after_id, step_models(rec.options)
        )
    ]


NOT_FOUND = {"detail": "Run not found"}


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
            return JSONResponse(
                {"detail": [{"loc": ["query", field], "msg": str(exc), "type": "value_error"}]},
                status_code=422,
            )
    return project_dict(svc.create_project(name, local_path))


@router.get("/projects", summary="List projects")
async def list_projects(svc: Svc) -> list[dict[str, Any]]:
    return [project_dict(p) for p in svc.store.list_projects()]


# -- runs -----------------------------------------------------------------------------------------
def ollama_models(svc: Services, models: dict[str, str]) -> dict[str, str]:
    """Agent Runner's model names are Ollama's: a name whose prefix is no provider llmflow
    knows (``optcoder``, ``qwen3-coder:latest``) means ``ollama:<name>``."""
    known = set(svc.runtime.gateway.registry.known_providers())
    return {
        step: spec if spec.split(":", 1)[0] in known and ":" in spec else f"ollama:{spec}"
        for step, spec in models.items()
    }


def not_found_run(svc: Services, name: str, body: AgentRunIn, project: Any) -> Any:
    """An unknown workflow, as Agent Runner does it: the run exists, then fails with
    WORKFLOW_NOT_FOUND (scripts read the run id from the answer)."""
    from llmflow.engine.events import EventType as E
    from llmflow.engine.events import NewEvent
    from llmflow.model.loader import LoadedFlow
    from llmflow.model.spec import Flow

    flow = Flow.model_validate(
        {
            "name": name,
            "description": "a workflow this server does not have",
            "steps": [{"id": "lookup", "python": {"function": "llmflow.missing:workflow"}}],
        }
    )
    opts = svc.options(
        project_id=project.id,
        name=body.name or time.strftime("Run - %Y-%m-%d %H:%M"),
        goal=body.goal,
        run_type=body.run_type,
        metadata=body.metadata,
        request_options=body.options,
    )
    rec = svc.runtime.create_run(LoadedFlow(flow, None, "<agent-runner>"), {}, opts, claim=True)
    why = f"Workflow not found: {name}"
    hint = ", ".join(svc.catalog.names())
    now = svc.runtime.clock.now()
    svc.store.append(
        rec.id,
        [
            NewEvent(E.WORKFLOW_FAILED, why, payload={"error": why, "not_found": name}),
            NewEvent(E.RUN_FAILED, why, payload={"error": f"{why} (this server has: {hint})"}),
        ],
        now,
    )
    svc.kick(rec.id)
    return svc.store.get_run(rec.id)


def workflow_with(loaded: Any, parameters: dict[str, Any] | None, step_timeout: float | None) -> Any:
    """The workflow with the run's ``options.parameters`` (e.g. ``test_command``) and, as
    in Agent Runner, ``options.timeout_seconds`` as the timeout of the steps that have none
    of their own (a step's own timeout wins)."""
    from llmflow.model.loader import LoadedFlow

    if not parameters and step_timeout is None:
        return loaded
    flow = loaded.flow
    update: dict[str, Any] = {}
    if parameters:
        update["parameters"] = {**flow.parameters, **parameters}
    if step_timeout is not None:
        update["steps"] = [
            st if st.timeout is not None else st.model_copy(update={"timeout": float(step_timeout)})
            for st in flow.steps
        ]
    return LoadedFlow(flow.model_copy(update=update), None, loaded.source)


@router.post("/runs", summary="Create a run (status QUEUED) in a project")
async def create_run(body: AgentRunIn, svc: Svc) -> Any:
    project = svc.store.get_project(body.project_id)
    if project is None:
        return JSONResponse({"detail": f"Project with id {body.project_id} not found"}, status_code=404)
    options = dict(body.options or {})
    named = options.get("workflow") or options.get("workflow_name")
    if named is not None and not isinstance(named, str):
        return JSONResponse(
            {
                "detail": [
                    {
                        "loc": ["body", "options", "workflow"],
                        "msg": "the workflow must be a flow name",
                        "type": "string_type",
                    }
                ]
            },
            status_code=422,
        )
    models = options.get("models") or {}
    timeout = options.get("timeout_seconds")
    problems = []
    if not isinstance(models, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and v for k, v in models.items()
    ):
        problems.append(
            {
                "loc": ["body", "options", "models"],
                "msg": "models maps step names to model names (an Ollama model, or provider:model)",
                "type": "dict_type",
            }
        )
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= 7 * 86400
    ):
        problems.append(
            {
                "loc": ["body", "options", "timeout_seconds"],
                "msg": "timeout_seconds must be a number of seconds above 0 (at most a week)",
                "type": "value_error",
            }
        )
    if problems:
        return JSONResponse({"detail": problems}, status_code=422)
    flow_name = named or (DEFAULT_WORKFLOW if body.run_type == "workflow" else AGENT_FLOW)
    try:
        loaded = await svc.load(flow_name)
    except FlowNotFoundError:
        return run_dict(svc, not_found_run(svc, flow_name, body, project))
    params = options.get("parameters")
    if params is not None:
        unknown = sorted(set(params) - set(loaded.flow.parameters)) if isinstance(params, dict) else None
        if unknown is None or unknown:
            known = ", ".join(sorted(loaded.flow.parameters)) or "none"
            return JSONResponse(
                {
                    "detail": [
                        {
                            "loc": ["body", "options", "parameters"],
                            "msg": f"workflow {flow_name!r} has no parameter(s) {', '.join(unknown or [])}; its parameters: {known}"
                            if unknown
                            else "parameters maps parameter names to values",
                            "type": "value_error",
                        }
                    ]
                },
                status_code=422,
            )
    loaded = workflow_with(loaded, params, timeout)
    inputs = {"goal": body.goal} if "goal" in loaded.flow.inputs else {}
    name = body.name or time.strftime("Run - %Y-%m-%d %H:%M")
    # timeout_seconds is Agent Runner's default for steps without their own (see workflow_with)
    opts = svc.options(
        models=ollama_models(svc, models),
        timeout=None,
        project_id=project.id,
        name=name,
        goal=body.goal,
        run_type=body.run_type,
        metadata=body.metadata,
        request_options=body.options,
    )
    rec = svc.submit(loaded, inputs, opts)
    return run_dict(svc, rec)


@router.get("/runs", summary="List runs, newest first")
async def list_runs(svc: Svc, limit: Annotated[int, Query(ge=1, le=10_000)] = 1000) -> list[dict[str, Any]]:
    return [run_dict(svc, r) for r in svc.store.list_runs(limit=limit)]


@router.get("/runs/{run_id}", summary="Show a run")
async def show_run(run_id: RunId, svc: Svc) -> Any:
    rec = find_run(svc, run_id)
    if rec is None:
        return JSONResponse(NOT_FOUND, status_code=404)
    return run_dict(svc, rec)


@router.get(
    "/runs/{run_id}/events",
    summary="A run's timeline (Agent Runner's events) with id > after_id, oldest first",
)
async def run_events(run_id: RunId, svc: Svc, after_id: Annotated[int, Query(ge=0, le=2**62)] = 0) -> Any:
    rec = find_run(svc, run_id)
    if rec is None:
        return JSONResponse(NOT_FOUND, status_code=404)
    return lines(svc, rec, after_id)


async def _stream(svc: Services, rec: Any, after_id: int) -> AsyncIterator[ServerSentEvent]:
    """Replay the timeline after ``after_id``, then follow the run; the stream stays open
    after the run ends (keep-alives), as Agent Runner's does, until the client goes."""
    number = run_number(svc, rec.id)
    view = TimelineView(rec.goal, rec.run_type, step_models(rec.options))
    follower = svc.follower(rec.id, 0)  # the timeline is built from the run's first event
    yield comment("connected")
    while True:
        for e in await follower.next(svc.config.sse_keepalive):
            for ln in view.feed(e):
                if ln.id > after_id:
                    yield frame(ln.to_dict(number, iso), id=ln.id, event=ln.type)


@router.get(
    "/runs/{run_id}/events/stream",
    summary="SSE stream of a run's timeline (Last-Event-ID / after_id); stays open",
    response_class=Response,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def run_stream(
    run_id: RunId, request: Request, svc: Svc, after_id: Annotated[int, Query(ge=0, le=2**62)] = 0
) -> Any:
    rec = find_run(svc, run_id)
    if rec is None:
        return JSONResponse(NOT_FOUND, status_code=404)
    start = last_event_id(request)
    return sse_response(_stream(svc, rec, start if start is not None else after_id), svc.config.sse_keepalive)


@router.post("/runs/{run_id}/directive", summary="Record a directive; answers with the recorded event")
async def directive(run_id: RunId, body: DirectiveIn, svc: Svc) -> Any:
    rec = find_run(svc, run_id)
    if rec is None:
        return JSONResponse(NOT_FOUND, status_code=404)
    before = rec.last_seq if getattr(rec, "last_seq", None) is not None else len(svc.store.events(rec.id))
    events = svc.directive(rec.id, body.text)
    if not events:  # the runner executing it records it: wait for the event
        follower = svc.follower(rec.id, before)
        deadline = time.monotonic() + 10.0
        while not events and time.monotonic() < deadline:
            got = await follower.next(max(0.05, deadline - time.monotonic()))
            events = [e for e in got if e.type == "DIRECTIVE"]
    number = run_number(svc, rec.id)
    if events:
        e = events[-1]
        return {
            "id": e.id * SCALE if e.id else None,
            "run_id": number,
            "type": "DIRECTIVE",
            "payload": body.text,
            "created_at": iso(e.ts),
        }
    return JSONResponse(
        {"detail": "the directive was sent to the run, which has not recorded it yet"}, status_code=202
    )


@router.get("/runs/{run_id}/artifacts", summary="Files the run produced")
async def artifacts(run_id: RunId, svc: Svc) -> Any:
    rec = find_run(svc, run_id)
    if rec is None:
        return JSONResponse(NOT_FOUND, status_code=404)
    return artifact_rows(svc, get_run(svc, rec.id), "/api/v1")


FINISHED = RUN_TERMINAL


@router.post(
    "/runs/{run_id}/{action}", summary="pause | resume | stop a run (a finished run: 200, unchanged)"
)
async def control(run_id: RunId, action: Annotated[str, Path(max_length=100)], svc: Svc) -> Any:
    action = action.lower()
    if action not in ACTIONS:
        return JSONResponse({"detail": f"Invalid action. Must be one of: {sorted(ACTIONS)}"}, status_code=400)
    rec = find_run(svc, run_id)
    if rec is None:
        return JSONResponse(NOT_FOUND, status_code=404)
    # idempotent, as in Agent Runner: pausing a paused run or resuming a queued one is a no-op;
    # a finished run stays as it is (Agent Runner answers 200 there too)
    noop = (
        rec.status in FINISHED
        or (action == "pause" and rec.status == RunStatus.PAUSED)
        or (action == "resume" and rec.status in (RunStatus.QUEUED, RunStatus.RUNNING))
    )
    if not noop:
        try:
            svc.control(rec.id, "cancel" if action == "stop" else action)
        except RunStateError:
            return run_dict(svc, svc.store.get_run(rec.id))  # it finished meanwhile
        want = {
            "pause": frozenset({RunStatus.PAUSED}) | FINISHED,
            "resume": frozenset({RunStatus.QUEUED, RunStatus.RUNNING}) | FINISHED,
            "stop": FINISHED,
        }[action]
        rec = await svc.settle(rec.id, want)
    return run_dict(svc, rec)


# -- worker ---------------------------------------------------------------------------------------
@router.get("/worker/status", summary="The background worker")
async def worker_status(svc: Svc) -> dict[str, Any]:
    return svc.worker.status()


@router.post("/worker/process", summary="Process queued runs synchronously")
async def worker_process(svc: Svc) -> dict[str, Any]:
    ids = await svc.worker.process_available(min(60.0, svc.config.wait_timeout))
    return {"message": "Processing triggered", "processed": ids}


class IntegerRunIds:
    """ASGI middleware: ``/api/v1/runs/<integer id>/...`` is the run with that Agent Runner
    id, so every llmflow route takes both forms (an unknown number stays as it is: 404)."""

    PATH = re.compile(r"^/api/v1/runs/(\d{1,18})(/.*)?$")

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            m = self.PATH.match(scope.get("path", ""))
            svc = getattr(scope["app"].state, "services", None) if m and "app" in scope else None
            if m and svc is not None:
                rec = find_run(svc, m.group(1))
                if rec is not None:
                    path = f"/api/v1/runs/{rec.id}{m.group(2) or ''}"
                    scope = {**scope, "path": path, "raw_path": path.encode()}
        await self.app(scope, receive, send)
