"""One stream for every run: ``GET /api/v1/events/stream`` (SSE), for dashboards.

Frames:

- ``event: hello`` first, ``data: {"last_id": N, "worker": {...}}``: the cursor the stream
  starts after, and the worker's state.
- ``event: run``, ``data: <run summary>`` (the shape of ``GET /api/v1/runs``), ``id: <event
  id>``: a run that has new events (created, started, a step moved, usage, finished ...).
  Streaming-only events (token chunks, heartbeats, shell output) do not produce frames, so a
  dashboard sees each change of a run once, not each token.
- ``event: worker``, ``data: {...}`` (``GET /api/v1/worker``) whenever that state changes.
- ``: keepalive`` comments every ``LLMFLOW_SSE_KEEPALIVE`` seconds.

Ids are the store-wide event ids (Agent Runner's cursor). A client that reconnects with
``Last-Event-ID`` (or ``?after=N``) gets a frame for every run that changed meanwhile;
without either the stream starts at the newest event. Events written by any process (the
server's worker, ``llmflow run``, other workers) are found by reading the log every
``poll_interval`` seconds: one indexed query per open stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from sse_starlette import ServerSentEvent

from llmflow.engine.events import EventType as E
from llmflow.runtime.follow import LogFollower
from llmflow.server.native import Svc, run_summary
from llmflow.server.sse import frame, id_only, last_event_id, sse_response

if TYPE_CHECKING:
    from llmflow.store.base import Store

router = APIRouter(prefix="/api/v1", tags=["native"])

QUIET = frozenset({E.LLM_TOKENS, E.LLM_HEARTBEAT, E.SHELL_OUTPUT})
PAGE = 500


def head_id(store: Store) -> int:
    """The highest event id in the store (0 when empty), by O(log n) probes of
    ``events_since`` (the store protocol has no max-id query)."""

    def after(n: int) -> bool:
        return bool(store.events_since(n, 1))

    lo, hi = 0, 1
    while after(hi):
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if after(mid):
            lo = mid
        else:
            hi = mid
    return hi if after(lo) else lo


def changed_runs(events: list[Any]) -> list[str]:
    """Run ids with at least one non-streaming event, in order of their last event."""
    last: dict[str, int] = {}
    for i, e in enumerate(events):
        if e.type not in QUIET:
            last[e.run_id] = i
    return sorted(last, key=last.__getitem__)


async def live_frames(svc: Any, cursor: int) -> AsyncIterator[ServerSentEvent]:
    poll = max(0.05, svc.config.poll_interval)
    worker = svc.worker.status()
    yield frame({"last_id": cursor, "worker": worker}, id=cursor, event="hello")
    follower = LogFollower(svc.store, None, cursor, poll_interval=poll, batch=PAGE)
    while True:
        events = follower.read()
        if events:
            cursor = follower.cursor
            sent = False
            for run_id in changed_runs(events):
                rec = svc.store.get_run(run_id)
                if rec is not None:
                    yield frame(run_summary(rec), id=cursor, event="run")
                    sent = True
            if not sent:  # only token chunks: still move the client's cursor on
                yield id_only(cursor)
        now_worker = svc.worker.status()
        if now_worker != worker:
            worker = now_worker
            yield frame(worker, event="worker")
        if len(events) == PAGE:
            continue  # catching up: read on at once
        await follower.wait(poll)  # keep-alive pings come from sse-starlette


@router.get(
    "/events/stream",
    summary="SSE stream of run changes across all runs (for dashboards; resumes from Last-Event-ID)",
    response_class=Response,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def all_runs_stream(
    request: Request,
    svc: Svc,
    after: Annotated[
        int | None, Query(ge=0, le=2**62, description="store-wide event id to start after")
    ] = None,
) -> Any:
    start = last_event_id(request)
    if start is None:
        start = after
    if start is None:
        start = await asyncio.to_thread(head_id, svc.store)
    return sse_response(live_frames(svc, start), svc.config.sse_keepalive)
