"""Batches over the native API: their progress (done / failed / remaining, rate, ETA, tokens,
cost) and resuming them here: ``POST /api/v1/batches/{id}/resume`` runs the jobs that did
not finish, ``/retry-failed`` also re-runs the failed and canceled ones. Batches are
started with `llmflow batch` (or the Python Runner).

A resumed batch runs in this server's event loop on its runtime, through the same
:func:`llmflow.batch.start.prepare_batch` the CLI uses; its jobs run locally whatever engine
the batch was started with. It heartbeats like any batch driver, so `llmflow batches show`
and the console follow it; stopping the server interrupts it cleanly (in-flight jobs are
left for the next resume).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from llmflow.batch.summary import batch_view, driver_alive
from llmflow.isotime import iso_batch
from llmflow.server.services import Services

router = APIRouter(prefix="/api/v1", tags=["native"])
log = logging.getLogger("llmflow.server.batches")


async def _services(request: Request) -> Services:
    return request.app.state.services


Svc = Annotated[Services, Depends(_services)]
BatchId = Annotated[str, Path(max_length=200, description="a batch id")]


class ResumeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    retry_failed: bool = Field(False, description="also re-run the jobs that FAILED or were CANCELED")
    force: bool = Field(
        False, description="take over a batch whose driver still looks alive, or whose flow changed"
    )
    max_workers: int | None = Field(
        None, ge=1, le=256, description="jobs at once (default: what the batch was started with)"
    )


class BackgroundBatches:
    """The batch drivers this server runs, by batch id."""

    def __init__(self) -> None:
        self.tasks: dict[str, tuple[asyncio.Task[Any], Any]] = {}

    def running(self, batch_id: str) -> bool:
        got = self.tasks.get(batch_id)
        return got is not None and not got[0].done()

    def start(self, driver: Any) -> None:
        async def drive() -> None:
            try:
                result = await driver.run()
                log.info(
                    "batch %s: %s (%d completed, %d failed)",
                    result.batch_id,
                    result.status,
                    result.completed,
                    result.failed,
                )
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - one batch's failure must not reach the server
                log.exception("batch %s stopped with an error", driver.plan.id)

        task = asyncio.create_task(drive(), name=f"batch {driver.plan.id}")
        self.tasks[driver.plan.id] = (task, driver)
        bid = driver.plan.id

        def forget(done: asyncio.Task[Any]) -> None:
            if self.tasks.get(bid, (None,))[0] is done:
                self.tasks.pop(bid, None)

        task.add_done_callback(forget)

    async def stop(self) -> None:
        """Interrupt every driver; their in-flight jobs are left for the next resume."""
        for task, driver in list(self.tasks.values()):
            driver.interrupt("the server stopped")
            task.cancel()
        if self.tasks:
            await asyncio.gather(*(t for t, _ in self.tasks.values()), return_exceptions=True)
        self.tasks.clear()


def background(svc: Services) -> BackgroundBatches:
    got = getattr(svc, "background_batches", None)
    if got is None:
        got = svc.background_batches = BackgroundBatches()  # type: ignore[attr-defined]
    return got


def _get(svc: Services, batch_id: str) -> Any:
    b = svc.store.get_batch(batch_id) if "\x00" not in batch_id else None
    if b is None:
        raise HTTPException(
            status_code=404, detail=f"no batch {batch_id!r}; list them with GET /api/v1/batches"
        )
    return b


@router.get("/batches", summary="Batches, newest first, with their progress")
def list_batches(
    svc: Svc,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=2**31)] = 0,
) -> dict[str, Any]:
    now = time.time()
    rows = svc.store.list_batches(limit=limit, offset=offset)
    return {
        "batches": [iso_batch(batch_view(svc.store, b, now)) for b in rows],
        "limit": limit,
        "offset": offset,
    }


@router.get(
    "/batches/{batch_id}", summary="One batch's progress: done, failed, remaining, rate, ETA, tokens, cost"
)
def show_batch(svc: Svc, batch_id: BatchId) -> dict[str, Any]:
    return iso_batch(batch_view(svc.store, _get(svc, batch_id), time.time()))


async def _resume(svc: Services, batch_id: str, body: ResumeIn) -> Any:
    from llmflow.batch.plan import BatchRequest
    from llmflow.batch.start import prepare_batch
    from llmflow.errors import BatchError

    b = _get(svc, batch_id)
    rt = svc.runtime
    now = time.time()
    what = "retry-failed" if body.retry_failed else "resume"
    if background(svc).running(batch_id):
        return JSONResponse(
            {"detail": f"batch {batch_id} is already running on this server"}, status_code=409
        )
    if (
        b.status == "RUNNING"
        and b.owner
        and b.owner != rt.owner
        and driver_alive(b.owner, b.updated_at, now)
        and not body.force
    ):
        return JSONResponse(
            {
                "detail": f'batch {batch_id} is being run by another process ({b.owner}); {what} it when that stops, or with "force": true if it is gone'
            },
            status_code=409,
        )
    max_workers = body.max_workers or int((b.spec or {}).get("max_workers") or 16)
    req = BatchRequest(
        resume=batch_id, retry_failed=body.retry_failed, force=body.force, max_workers=max_workers
    )
    try:
        driver = await asyncio.to_thread(prepare_batch, rt, req, local_only=True)
    except BatchError as exc:
        return JSONResponse(
            {"detail": exc.message + (f" (hint: {exc.hint})" if exc.hint else "")}, status_code=409
        )
    # the driver takes the batch over when it starts; mark it now so the answer shows it
    rt.store.update_batch(
        batch_id, status="RUNNING", owner=rt.owner, updated_at=rt.clock.now(), ended_at=None
    )
    background(svc).start(driver)
    view = iso_batch(batch_view(svc.store, svc.store.get_batch(batch_id), time.time()))
    return JSONResponse({**view, "action": what}, status_code=202)


@router.post(
    "/batches/{batch_id}/resume",
    summary="Resume a batch here: run the jobs that did not finish (retry_failed: also the failed ones)",
    status_code=202,
    response_model=None,
)
async def resume_batch(svc: Svc, batch_id: BatchId, body: ResumeIn | None = None) -> Any:
    return await _resume(svc, batch_id, body or ResumeIn())


@router.post(
    "/batches/{batch_id}/retry-failed",
    summary="Resume a batch here and re-run its failed and canceled jobs",
    status_code=202,
    response_model=None,
)
async def retry_failed_batch(svc: Svc, batch_id: BatchId, body: ResumeIn | None = None) -> Any:
    b = body or ResumeIn()
    return await _resume(svc, batch_id, b.model_copy(update={"retry_failed": True}))
