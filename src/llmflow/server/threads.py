"""Conversation threads over the native API: list them, show one (its runs and exchanges).
A run joins a thread with ``options.thread`` on ``POST /api/v1/runs``."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request

from llmflow.server.services import Services
from llmflow.tools.threads import thread_view

router = APIRouter(prefix="/api/v1", tags=["native"])


async def _services(request: Request) -> Services:
    return request.app.state.services


Svc = Annotated[Services, Depends(_services)]
ThreadName = Annotated[
    str, Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}$")
]


@router.get("/threads", summary="Conversation threads, most recently used first")
def list_threads(
    svc: Svc,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=2**31)] = 0,
) -> dict[str, Any]:
    return {"threads": svc.store.list_threads(limit=limit, offset=offset), "limit": limit, "offset": offset}


@router.get("/threads/{name}", summary="One thread: its runs and every exchange, oldest first")
async def show_thread(name: ThreadName, svc: Svc) -> dict[str, Any]:
    view = await asyncio.to_thread(thread_view, svc.store, name)
    if not view["runs"]:
        raise HTTPException(
            404, detail=[{"loc": ["path", "name"], "msg": f"no thread {name!r}", "type": "not_found"}]
        )
    return view
