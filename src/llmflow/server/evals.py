"""Evaluations over the native API: start one (``POST /api/v1/evals``), list them, show one
with every record's scores and run, and compare two (regressions).

A posted evaluation runs a flow this server serves over records sent in the request (or
the flow's own ``data:``), in the server's event loop; it answers 202 with the id at once
(``wait: true`` answers when it has finished). Python metrics run code, so they are
refused unless the server allows shell steps (``--allow-shell``); datasets are never read
from the server's disk on a request's say-so.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from llmflow.errors import EvalError
from llmflow.server.services import Services

router = APIRouter(prefix="/api/v1", tags=["native"])
log = logging.getLogger("llmflow.server")
MAX_RECORDS = 10_000

EvalId = Annotated[str, Path(min_length=1, max_length=200, description="an evaluation id")]


async def _services(request: Request) -> Services:
    return request.app.state.services


Svc = Annotated[Services, Depends(_services)]


class EvalIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    flow: str = Field(min_length=1, max_length=200, description="a flow this server serves")
    records: list[dict[str, Any]] | None = Field(
        None, max_length=MAX_RECORDS, description="the records; default: the flow's data"
    )
    metrics: list[str | dict[str, Any]] = Field(
        default_factory=list,
        max_length=50,
        description="metric declarations (see docs/evals.md); default: exact",
    )
    variants: dict[str, list[Any]] = Field(
        default_factory=dict, description="axes of variants, e.g. {model: [a, b]}"
    )
    expected: str | None = Field(None, max_length=200, description="the column with the expected value")
    record_id: str | None = Field(None, max_length=200)
    columns: dict[str, str] = Field(default_factory=dict)
    max_records: int | None = Field(None, ge=0)
    max_workers: int = Field(4, ge=1, le=64)
    min_pass_rate: float | None = Field(None, ge=0, le=1)
    models: dict[str, str] = Field(default_factory=dict, description="step (or *) -> provider:model")
    wait: bool = Field(False, description="answer when the evaluation has finished")


def _row(e: Any) -> dict[str, Any]:
    ov = (e.summary or {}).get("overall") or {}
    return {
        "id": e.id,
        "flow": e.flow_name,
        "status": e.status,
        "created_at": e.created_at,
        "ended_at": e.ended_at,
        "total": ov.get("total"),
        "passed": ov.get("passed"),
        "pass_rate": ov.get("pass_rate"),
        "score": ov.get("score"),
        "variants": [v.get("label") for v in (e.summary or {}).get("variants") or []],
        "links": {"self": f"/api/v1/evals/{e.id}", "runs": f"/api/v1/runs?batch_id={e.batch_id or e.id}"},
    }


@router.get("/evals", summary="Evaluations, newest first, with their pass rate")
def list_evals(
    svc: Svc,
    flow: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=2**31)] = 0,
) -> dict[str, Any]:
    return {
        "evals": [_row(e) for e in svc.store.list_evals(flow=flow, limit=limit, offset=offset)],
        "limit": limit,
        "offset": offset,
    }


def _view(svc: Services, eval_id: str) -> dict[str, Any]:
    from llmflow.evals.runner import evaluation_view

    v = evaluation_view(svc.store, eval_id) if "\x00" not in eval_id else None
    if v is None:
        raise HTTPException(
            status_code=404, detail=f"no evaluation {eval_id!r}; list them with GET /api/v1/evals"
        )
    return v


@router.get(
    "/evals/{eval_id}", summary="One evaluation: per-variant summary and every record's scores, with its run"
)
def show_eval(svc: Svc, eval_id: EvalId) -> dict[str, Any]:
    return _view(svc, eval_id)


@router.get(
    "/evals/{eval_id}/compare/{other_id}",
    summary="Per-metric deltas from eval_id (A) to other_id (B) and the records that regressed",
)
def compare_evals(svc: Svc, eval_id: EvalId, other_id: EvalId) -> dict[str, Any]:
    from llmflow.evals.summary import compare

    return compare(_view(svc, eval_id), _view(svc, other_id))


def _tasks(request: Request) -> set[asyncio.Task[Any]]:
    tasks = getattr(request.app.state, "eval_tasks", None)
    if tasks is None:
        tasks = request.app.state.eval_tasks = set()
    return tasks


@router.post(
    "/evals",
    status_code=202,
    summary="Start an evaluation of a served flow (202 with its id; wait=true answers when done)",
    response_model=None,
)
async def create_eval(body: EvalIn, svc: Svc, request: Request) -> Any:
    from llmflow.evals.runner import EvalRequest, evaluation_view, plan_eval, run_eval

    loaded = await svc.load(body.flow)
    req = EvalRequest(
        flow=loaded,
        records=body.records,
        metrics=list(body.metrics),
        variants={k: list(v) for k, v in body.variants.items()},
        expected=body.expected,
        record_id=body.record_id,
        columns=dict(body.columns),
        max_records=body.max_records,
        max_workers=body.max_workers,
        min_pass_rate=body.min_pass_rate,
        models=dict(body.models),
        allow_code=svc.config.allow_shell,
        metadata={"origin": "api"},
    )
    if body.variants and loaded.composed is not None:
        req.flow = loaded.source  # axes become Hydra overrides of the served file
    try:
        plan = await asyncio.to_thread(plan_eval, svc.runtime, req)
    except EvalError as exc:
        raise HTTPException(
            status_code=422, detail=exc.message + (f" (hint: {exc.hint})" if exc.hint else "")
        ) from None
    task = asyncio.get_running_loop().create_task(run_eval(svc.runtime, plan))
    tasks = _tasks(request)
    tasks.add(task)
    task.add_done_callback(tasks.discard)
    task.add_done_callback(
        lambda t: (
            None
            if t.cancelled() or t.exception() is None
            else log.error("evaluation %s failed", plan.id, exc_info=t.exception())
        )
    )
    if body.wait:
        await asyncio.shield(task)
        return JSONResponse(evaluation_view(svc.store, plan.id), status_code=200)
    return {
        "id": plan.id,
        "status": "RUNNING",
        "flow": plan.record.flow_name,
        "total": plan.batch.batch.total,
        "links": {"self": f"/api/v1/evals/{plan.id}"},
    }
