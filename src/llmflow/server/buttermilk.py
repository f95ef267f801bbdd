"""Buttermilk's HTTP API (``buttermilk/api/flow.py``, ``routes.py``), following its seed
documents where they and its code disagree:

- ``POST /flow/{name}`` (and ``GET /flow/{name}?prompt=``) really runs the flow and answers
  with the result, as the seed documents say; ``?async=true`` or ``"wait": false`` answers
  at once with the run id and a ``websocket_url`` to watch it;
- ``GET /api/session`` answers with both ``session_id`` and ``sessionId``;
- errors are 4xx with ``{"detail": ...}``, not Buttermilk's blanket 500.
"""

from __future__ import annotations

from html import escape
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse

from llmflow.engine.states import RunStatus
from llmflow.server.schemas import FlowRequestIn, check_text
from llmflow.server.services import Services
from llmflow.server.sessions import SESSION_ID, TooManySessions, iso

router = APIRouter(tags=["buttermilk"])

FlowName = Annotated[str, Path(min_length=1, max_length=200)]
SessionId = Annotated[str, Path(min_length=1, max_length=128)]


async def get_services(request: Request) -> Services:
    return request.app.state.services


Svc = Annotated[Services, Depends(get_services)]


def _flow_choices(request: Request, svc: Services) -> Any:
    names = svc.catalog.names()
    accept = request.headers.get("accept", "")
    if "text/html" in accept and "application/json" not in accept:
        return HTMLResponse("".join(f'<option value="{escape(n)}">{escape(n)}</option>\n' for n in names))
    return {"flow_choices": names}


@router.get("/flows", summary="Flow names (Buttermilk)", response_model=None)
async def flows(request: Request, svc: Svc) -> Any:
    return _flow_choices(request, svc)


@router.get("/api/flows", summary="Flow names (Buttermilk)", response_model=None)
async def api_flows(request: Request, svc: Svc) -> Any:
    return _flow_choices(request, svc)


def _values(v: Any) -> list[Any]:
    return list(v) if isinstance(v, list | tuple) else ([v] if v not in (None, "") else [])


def flow_models_and_criteria(f: Any) -> tuple[list[str], list[str]]:
    """Every model a flow can use (agents, steps, the flow's, matrix and variant values)
    and its criteria (parameters.criteria, matrix / variants ``criteria``)."""
    models: set[str] = {f.model} if f.model else set()
    criteria: list[Any] = _values((f.parameters or {}).get("criteria"))
    for a in f.agents.values():
        if a.model:
            models.add(a.model)
        variants = a.variants or {}
        models |= {str(m) for m in _values(variants.get("model"))}
        criteria += _values(variants.get("criteria"))
    for st in f.all_steps():
        own = getattr(st, "model", None)
        if isinstance(own, str) and own:
            models.add(own)
        matrix = st.matrix if isinstance(st.matrix, dict) else {}
        models |= {str(m) for m in _values(matrix.get("model")) if not str(m).startswith("{{")}
        criteria += [c for c in _values(matrix.get("criteria")) if not str(c).startswith("{{")]
    seen: list[str] = []
    for c in criteria:
        if str(c) not in seen:
            seen.append(str(c))
    return sorted(models), seen


@router.get(
    "/api/flows/{flow}/info", summary="A flow's criteria, every model it can use, inputs and (empty) datasets"
)
async def flow_info(flow: FlowName, svc: Svc) -> dict[str, Any]:
    f = (await svc.load(flow)).flow
    models, criteria = flow_models_and_criteria(f)
    return {
        "criteria": criteria,
        "record_ids": [],
        "models": models,
        "datasets": sorted((f.storage or {}).keys()) if isinstance(f.storage, dict) else [],
        "inputs": list(f.inputs),
        "description": f.description,
    }


async def _run(svc: Services, name: str, rr: FlowRequestIn, wait: bool) -> Any:
    mgr = svc.sessions
    session = None
    if rr.session_id or not wait:
        try:
            session = mgr.create(rr.session_id)
        except TooManySessions as exc:
            return JSONResponse({"detail": str(exc)}, status_code=429)
    if session is not None:
        if session.live:
            return JSONResponse(
                {"detail": f"session {session.id} is already running run {session.run_id}"}, status_code=409
            )
        run_id = await mgr.start_run(session, rr, flow=name)
    else:
        loaded = await svc.load(name)
        params = {**rr.extra_parameters(), **rr.parameters}
        inputs = svc.request_inputs(
            loaded.flow, prompt=rr.prompt, text=rr.text, uri=rr.uri, record_id=rr.record_id, parameters=params
        )
        meta = {k: v for k, v in (("record_id", rr.record_id), ("uri", rr.uri)) if v is not None}
        run_id = svc.submit(
            loaded, inputs, svc.options(metadata=meta, name=f"{name} {rr.record_id or ''}".strip())
        ).id
    out: dict[str, Any] = {"flow": name, "run_id": run_id}
    if session is not None:
        out.update(session_id=session.id, websocket_url=f"/ws/{session.id}")
    if not wait:
        out.update(
            status=RunStatus.QUEUED,
            message=f"Flow started. Connect via WebSocket to {out.get('websocket_url')} to follow it.",
        )
        return JSONResponse(out, status_code=202)
    rec = await svc.wait(run_id)
    out.update(status=rec.status, outputs=rec.outputs, error=rec.error)
    if rec.outputs and len(rec.outputs) == 1:
        out["output"] = next(iter(rec.outputs.values()))
    elif rec.outputs and "result" in rec.outputs:
        out["output"] = rec.outputs["result"]
    return JSONResponse(out, status_code=200 if svc.is_terminal(rec) else 202)


@router.post(
    "/flow/{flow_name}",
    summary="Run a flow and answer with its result (?async=true: at once)",
    response_model=None,
)
async def post_flow(
    flow_name: FlowName,
    svc: Svc,
    body: FlowRequestIn | None = None,
    async_: Annotated[
        bool, Query(alias="async", description="answer at once with the run id and a websocket_url")
    ] = False,
) -> Any:
    svc.catalog.entry(flow_name)  # 404 for an unknown flow before anything else
    rr = body or FlowRequestIn()
    return await _run(svc, flow_name, rr, wait=rr.wait and not async_)


@router.get("/flow/{flow_name}", summary="Run a flow with ?prompt= (Buttermilk)", response_model=None)
async def get_flow(
    flow_name: FlowName,
    svc: Svc,
    prompt: Annotated[str | None, Query(max_length=100_000)] = None,
    q: Annotated[str | None, Query(max_length=100_000)] = None,
    async_: Annotated[bool, Query(alias="async")] = False,
) -> Any:
    svc.catalog.entry(flow_name)
    text = prompt if prompt is not None else q
    if not text:
        return JSONResponse(
            {
                "detail": [
                    {"loc": ["query", "prompt"], "msg": "GET /flow/{name} needs ?prompt=", "type": "missing"}
                ]
            },
            status_code=400,
        )
    try:
        check_text(text)
    except ValueError as exc:
        return JSONResponse(
            {"detail": [{"loc": ["query", "prompt"], "msg": str(exc), "type": "value_error"}]},
            status_code=422,
        )
    return await _run(svc, flow_name, FlowRequestIn(prompt=text), wait=not async_)


# -- sessions -------------------------------------------------------------------------------------
@router.get("/api/session", summary="A new session id (both session_id and sessionId)", response_model=None)
async def new_session(
    svc: Svc, session_id: Annotated[str | None, Query(max_length=128, pattern=r"^[A-Za-z0-9_\-]+$")] = None
) -> Any:
    """A new session; ``?session_id=<existing>`` answers with that session (a reconnecting
    client keeps its id)."""
    if session_id is not None and (existing := _session(svc, session_id)) is not None:
        info = existing.info(svc.config.session_timeout)
        return {
            "session_id": existing.id,
            "sessionId": existing.id,
            "status": info["status"],
            "created_at": info["created_at"],
            "websocket_url": f"/ws/{existing.id}",
        }
    try:
        s = svc.sessions.create(session_id)
    except TooManySessions as exc:
        return JSONResponse({"detail": str(exc)}, status_code=429)
    return {
        "session_id": s.id,
        "sessionId": s.id,
        "status": "initializing",
        "created_at": iso(s.created_at),
        "websocket_url": f"/ws/{s.id}",
    }


def _session(svc: Services, sid: str) -> Any:
    return svc.sessions.get(sid) if SESSION_ID.match(sid) else None


@router.get("/api/session/{session_id}/status", summary="A session's status", response_model=None)
async def session_status(session_id: SessionId, svc: Svc) -> Any:
    s = _session(svc, session_id)
    if s is None:
        return JSONResponse({"detail": f"Session {session_id} not found"}, status_code=404)
    return s.info(svc.config.session_timeout)


@router.delete(
    "/api/session/{session_id}", summary="End a session (cancels its running flow)", response_model=None
)
async def delete_session(session_id: SessionId, svc: Svc) -> Any:
    if _session(svc, session_id) is None or not svc.sessions.delete(session_id):
        return JSONResponse({"detail": f"Session {session_id} not found"}, status_code=404)
    return {"message": f"Session {session_id} cleaned up successfully"}


@router.get("/api/sessions", summary="Every live session")
async def list_sessions(svc: Svc) -> dict[str, Any]:
    svc.sessions.expire()
    rows = [s.info(svc.config.session_timeout) for s in svc.sessions.sessions.values()]
    return {"sessions": rows, "total": len(rows)}


# -- records, monitoring, pull_task (Buttermilk's remaining routes) --------------------------------
def _datasets(f: Any) -> dict[str, Any]:
    """The flow's named data sources: ``data:`` (one source, or Buttermilk's named ones)
    and ``storage:`` entries that read records (file types)."""
    out: dict[str, Any] = {}
    data = f.data
    if isinstance(data, dict) and not ({"type", "path", "records"} & set(data)):
        out.update({k: v for k, v in data.items() if isinstance(v, dict)})
    elif data not in (None, {}, []):
        out["data"] = data
    for k, v in (f.storage or {}).items() if isinstance(f.storage, dict) else []:
        if isinstance(v, dict) and str(v.get("type", "file")) in (
            "file",
            "jsonl",
            "json",
            "csv",
            "plaintext",
            "text",
            "parquet",
        ):
            out.setdefault(k, v)
    return out


def _records(svc: Services, loaded: Any, spec: Any, limit: int) -> list[dict[str, Any]]:
    from llmflow.batch.datasets import BadRow, iter_rows, source_from_flow
    from llmflow.batch.plan import _search_dirs

    src = source_from_flow(spec, _search_dirs(loaded))
    if src is None:
        return []
    rows = []
    for i, row in iter_rows(src, limit=limit):
        if isinstance(row, BadRow):
            continue
        rows.append({"record_id": str(row.get("record_id", row.get("id", i))), **row})
    return rows


@router.get(
    "/api/flows/{flow}/records",
    summary="The records of the flow's dataset (Buttermilk: ?dataset= when it has several)",
    response_model=None,
)
async def flow_records(
    flow: FlowName,
    svc: Svc,
    dataset: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> Any:
    loaded = await svc.load(flow)
    sets = _datasets(loaded.flow)
    if dataset is None and len(sets) != 1:
        return JSONResponse(
            {
                "detail": "dataset parameter required",
                "error": "dataset parameter required",
                "available_datasets": sorted(sets),
            },
            status_code=400,
        )
    name = dataset or next(iter(sets))
    if name not in sets:
        return JSONResponse(
            {"detail": f"flow {flow!r} has no dataset {name!r}", "available_datasets": sorted(sets)},
            status_code=404,
        )
    from llmflow.batch.datasets import DatasetError

    try:
        return _records(svc, loaded, sets[name], limit)
    except DatasetError as exc:
        return JSONResponse(
            {"detail": exc.message + (f" (hint: {exc.hint})" if exc.hint else "")}, status_code=404
        )


@router.get(
    "/api/flows/{flow}/datasets/{dataset}/records",
    summary="The records of one of the flow's datasets",
    response_model=None,
)
async def dataset_records(
    flow: FlowName,
    dataset: Annotated[str, Path(min_length=1, max_length=200)],
    svc: Svc,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> Any:
    return await flow_records(flow, svc, dataset, limit)


@router.get("/monitoring/health", summary="Buttermilk's monitoring health: overall and per component")
async def monitoring_health(svc: Svc) -> dict[str, Any]:
    from datetime import UTC, datetime

    h = svc.health()
    store_ok = h["store"]["ok"]
    worker = h["worker"]
    components = {
        "store": {
            "status": "healthy" if store_ok else "unhealthy",
            **({"error": h["store"]["error"]} if not store_ok else {}),
        },
        "worker": {
            "status": "healthy" if worker.get("running") or not svc.config.worker_enabled else "degraded",
            "running": worker.get("running"),
        },
        "sessions": {"status": "healthy", "active": len(svc.sessions.sessions)},
    }
    overall = (
        "healthy"
        if all(c["status"] == "healthy" for c in components.values())
        else ("unhealthy" if not store_ok else "degraded")
    )
    return {
        "status": overall,
        "overall_status": overall,
        "timestamp": datetime.now(UTC).isoformat(),
        "components": components,
    }


@router.get("/monitoring/metrics", summary="Buttermilk's monitoring metrics: runs, sessions, worker")
async def monitoring_metrics(svc: Svc) -> dict[str, Any]:
    store = svc.store
    runs = {
        s: store.count_runs(status=s)
        for s in (
            RunStatus.QUEUED,
            RunStatus.RUNNING,
            RunStatus.WAITING,
            RunStatus.PAUSED,
            RunStatus.COMPLETED,
            RunStatus.FAILED,
            RunStatus.CANCELED,
        )
    }
    return {
        "runs": {"total": sum(runs.values()), "by_status": runs},
        "sessions": {"active": len(svc.sessions.sessions)},
        "worker": svc.worker.status(),
        "flows": len(svc.catalog.names()),
    }


@router.get(
    "/api/pull_task",
    summary="Run the next queued job now (Buttermilk's worker pull); answers with the runs started",
)
async def pull_task(svc: Svc) -> dict[str, Any]:
    ids = await svc.worker.process_available(min(60.0, svc.config.wait_timeout))
    return {
        "status": "pulled" if ids else "empty",
        "processed": ids,
        "message": f"ran {len(ids)} queued job(s)" if ids else "no queued job",
    }


# -- scores of a record's runs (Buttermilk's score pages), from the evaluation store -------------
RecordId = Annotated[str, Path(min_length=1, max_length=200)]


def _bad_score_request(svc: Services, flow: str, record_id: str) -> JSONResponse | None:
    """Buttermilk's checks: a 422 for record id ``undefined`` or an unknown flow."""
    if record_id.strip() in ("", "undefined"):
        return JSONResponse({"detail": "Invalid record_id parameter"}, status_code=422)
    names = svc.catalog.names()
    if flow not in names:
        return JSONResponse(
            {"detail": f"Invalid flow: {flow} (this server serves: {', '.join(names) or 'no flows'})"},
            status_code=422,
        )
    return None


def _scores(svc: Services, flow: str, record_id: str, session_id: str | None) -> list[Any]:
    scope = session_id
    if session_id is not None and (s := _session(svc, session_id)) is not None and s.run_id:
        scope = s.run_id  # a WebSocket session: the run it started
    return list(svc.store.record_scores(flow, record_id, scope=scope))


def _trace(r: Any, flow: str, *, response: bool = False, reasoning: bool = True) -> dict[str, Any]:
    """One evaluation result as Buttermilk's ``AgentTrace``: the scorer's call (or, for
    ``/responses``, the answer it scored)."""
    outputs: dict[str, Any]
    if response:
        outputs = {"response": r.output}
    else:
        outputs = {"score": r.score, "passed": r.passed, "scores": r.scores, "expected": r.expected}
    if reasoning and r.reason is not None:
        outputs["reasons"] = [r.reason]
    return {
        "session_id": r.eval_id,
        "call_id": f"{r.eval_id}:{r.job_key}",
        "agent_id": "flow" if response else "scorer",
        "timestamp": iso(r.created_at),
        "agent_info": {
            "agent_id": "flow" if response else "scorer",
            "role": flow if response else "scorer",
            "agent_name": f"{flow} {r.variant}".strip() if response else f"scorer {r.variant}".strip(),
            "description": "the flow's answer"
            if response
            else "llmflow eval: " + ", ".join(sorted(r.scores)),
            "parameters": r.parameters,
        },
        "run_info": {"run_id": r.run_id, "eval_id": r.eval_id, "status": r.status, "variant": r.variant},
        "inputs": {"record_id": r.record_id},
        "outputs": outputs,
        "metadata": {"tokens": r.tokens, "cost": r.cost, "latency": r.latency},
        "error": [] if r.status in (RunStatus.COMPLETED, "") else [f"run {r.run_id} {r.status}"],
    }


async def _record_traces(
    svc: Services,
    flow: str,
    dataset: str | None,
    record_id: str,
    session_id: str | None,
    response: bool,
    reasoning: bool = True,
) -> Any:
    bad = _bad_score_request(svc, flow, record_id)
    if bad is not None:
        return bad
    if dataset is not None and dataset not in _datasets((await svc.load(flow)).flow):
        return JSONResponse({"detail": f"flow {flow!r} has no dataset {dataset!r}"}, status_code=404)
    traces = [
        _trace(r, flow, response=response, reasoning=reasoning)
        for r in _scores(svc, flow, record_id, session_id)
    ]
    return {"record_id": record_id, "agent_traces": traces}


SessionQuery = Annotated[
    str | None, Query(max_length=200, description="an evaluation id, a run id or a session id")
]


@router.get(
    "/api/flows/{flow}/records/{record_id}/scores",
    summary="The scores of a record's runs (Buttermilk: agent_traces), from llmflow eval",
    response_model=None,
)
async def record_scores(
    flow: FlowName, record_id: RecordId, svc: Svc, session_id: SessionQuery = None
) -> Any:
    return await _record_traces(svc, flow, None, record_id, session_id, response=False)


@router.get(
    "/api/flows/{flow}/datasets/{dataset}/records/{record_id}/scores",
    summary="The scores of a record's runs, in one of the flow's datasets",
    response_model=None,
)
async def dataset_record_scores(
    flow: FlowName,
    dataset: Annotated[str, Path(min_length=1, max_length=200)],
    record_id: RecordId,
    svc: Svc,
    session_id: SessionQuery = None,
) -> Any:
    return await _record_traces(svc, flow, dataset, record_id, session_id, response=False)


@router.get(
    "/api/flows/{flow}/records/{record_id}/responses",
    summary="The answers that were scored for a record (Buttermilk: agent_traces)",
    response_model=None,
)
async def record_responses(
    flow: FlowName,
    record_id: RecordId,
    svc: Svc,
    session_id: SessionQuery = None,
    include_reasoning: bool = True,
) -> Any:
    return await _record_traces(svc, flow, None, record_id, session_id, True, include_reasoning)


@router.get(
    "/api/flows/{flow}/datasets/{dataset}/records/{record_id}/responses",
    summary="The answers that were scored for a record, in one of the flow's datasets",
    response_model=None,
)
async def dataset_record_responses(
    flow: FlowName,
    dataset: Annotated[str, Path(min_length=1, max_length=200)],
    record_id: RecordId,
    svc: Svc,
    session_id: SessionQuery = None,
    include_reasoning: bool = True,
) -> Any:
    return await _record_traces(svc, flow, dataset, record_id, session_id, True, include_reasoning)


async def _score_page(svc: Services, flow: str, dataset: str | None, record_id: str) -> Any:
    got = await _record_traces(svc, flow, dataset, record_id, None, response=False)
    if isinstance(got, JSONResponse):
        return got
    rows = "".join(
        "<tr><td>{}</td><td>{}</td><td>{:.3g}</td><td>{}</td><td>{}</td></tr>\n".format(
            escape(t["session_id"]),
            escape(t["run_info"]["variant"] or "-"),
            float(t["outputs"]["score"]),
            "pass" if t["outputs"]["passed"] else "fail",
            escape("; ".join(t["outputs"].get("reasons") or [])),
        )
        for t in got["agent_traces"]
    )
    title = escape(f"{flow} / {dataset + ' / ' if dataset else ''}{record_id}")
    body = (
        f"<h1>Scores: {title}</h1>\n<table>\n"
        "<tr><th>evaluation</th><th>variant</th><th>score</th><th>result</th><th>reason</th></tr>\n"
        f"{rows}</table>\n"
        if rows
        else f"<h1>Scores: {title}</h1>\n<p>No scores yet: run <code>llmflow eval</code> over this record.</p>\n"
    )
    return HTMLResponse(
        f"<!doctype html>\n<html><head><title>Scores: {title}</title></head><body>\n{body}</body></html>"
    )


@router.get("/score/{flow}/{record_id}", summary="A record's score page (HTML)", response_model=None)
async def score_page(flow: FlowName, record_id: RecordId, svc: Svc) -> Any:
    return await _score_page(svc, flow, None, record_id)


@router.get(
    "/score/{flow}/{dataset}/{record_id}",
    summary="A record's score page in a dataset (HTML)",
    response_model=None,
)
async def dataset_score_page(
    flow: FlowName, dataset: Annotated[str, Path(min_length=1, max_length=200)], record_id: RecordId, svc: Svc
) -> Any:
    return await _score_page(svc, flow, dataset, record_id)
