"""Batches over the native API: progress of `llmflow batch` runs (done / failed / remaining,
rate, ETA, tokens, cost). Batches are started and resumed with the CLI (`llmflow batch`)."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request

from llmflow.batch.summary import batch_view
from llmflow.server.services import Services
from llmflow.views import iso_batch

router = APIRouter(prefix="/api/v1", tags=["native"])


def _services(request: Request) -> Services:
    return request.app.state.services


Svc = Annotated[Services, Depends(_services)]


@router.get("/batches", summary="Batches, newest first, with their progress")
def list_batches(svc: Svc, limit: Annotated[int, Query(ge=1, le=500)] = 50, offset: Annotated[int, Query(ge=0, le=2**31)] = 0) -> dict[str, Any]:
    now = time.time()
    rows = svc.store.list_batches(limit=limit, offset=offset)
    return {"batches": [iso_batch(batch_view(svc.store, b, now)) for b in rows], "limit": limit, "offset": offset}


@router.get("/batches/{batch_id}", summary="One batch's progress: done, failed, remaining, rate, ETA, tokens, cost")
def show_batch(svc: Svc, batch_id: Annotated[str, Path(max_length=200)]) -> dict[str, Any]:
    b = svc.store.get_batch(batch_id) if "\x00" not in batch_id else None
    if b is None:
        from fastapi import HTTPException

        raise HTTPException(status_code=404, detail=f"no batch {batch_id!r}; list them with GET /api/v1/batches")
    return iso_batch(batch_view(svc.store, b, time.time()))
