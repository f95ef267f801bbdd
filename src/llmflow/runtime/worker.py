"""The queue worker: claims QUEUED runs (and RUNNING runs whose lease expired) and
executes them, up to ``concurrency`` at once.

Claims are atomic in the store (``Store.claim``), so any number of workers - threads of one
server, `llmflow worker` processes, machines sharing one Postgres - can poll one queue and
each run is executed by one of them. The runner holds the lease with heartbeats while it
executes; when a worker dies, its lease expires and another worker's claim picks the run
up: ``Runtime.execute`` recovers it from the log (in-flight attempts are marked
interrupted and run again; completed steps are reused). Paused runs are not claimed.

A run that waits for a person longer than ``park_after`` is parked (WAITING): it gives its
slot and lease back; an answer (API, WebSocket, web console, ``llmflow runs answer``)
re-queues it, and so does its earliest timer (a human-input timeout, the run deadline):
the queue scan hands out WAITING runs whose ``wake_at`` has come.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from llmflow.engine.events import Event
from llmflow.errors import LlmflowError, StoreError

if TYPE_CHECKING:
    from llmflow.runtime.ports import RunService

log = logging.getLogger("llmflow.runtime.worker")


class Worker:
    """Polls the queue every ``check_interval`` seconds (or when woken) and executes runs."""

    def __init__(
        self,
        runtime: RunService,
        *,
        concurrency: int = 8,
        check_interval: float = 1.0,
        subscribers: list[Callable[[Event], None]] | None = None,
        on_run: Callable[[str, str], None] | None = None,
        park_after: float | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("a worker needs a concurrency of at least 1")
        self.runtime = runtime
        self.concurrency = concurrency
        self.check_interval = check_interval
        self.subscribers = list(subscribers or [])
        self.on_run = on_run  # (run_id, "started" | final status) for logs and the CLI
        # a run that waits this long for a person is parked: it leaves its slot until answered
        self.park_after = park_after if park_after is not None else runtime.settings.park_after
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.running = False
        self.processed = 0
        self._wake: asyncio.Event | None = None
        self._stopping = False
        self._loop_task: asyncio.Task[None] | None = None
        self._listening = 0  # the generation of the thread that listens for new runs

    # -- control --------------------------------------------------------------------------------
    def start(self) -> asyncio.Task[None]:
        """Run the poll loop in a background task of the current event loop."""
        if self._loop_task is None or self._loop_task.done():
            self._stopping = False
            self._loop_task = asyncio.create_task(self.run_forever(), name="llmflow-worker")
        return self._loop_task

    def wake(self) -> None:
        """Look at the queue now rather than at the next poll (a run was queued)."""
        if self._wake is not None:
            self._wake.set()

    async def run_forever(self) -> None:
        self._wake = asyncio.Event()
        self.running = True
        self._listen_for_new_runs()
        log.info(
            "worker %s polling every %gs, %d at once",
            self.runtime.owner,
            self.check_interval,
            self.concurrency,
        )
        try:
            while not self._stopping:
                try:
                    await self.fill_async()
                except StoreError:
                    log.exception("claiming queued runs failed; retrying at the next poll")
                try:
                    await asyncio.wait_for(self._wake.wait(), self.check_interval)
                except TimeoutError:
                    pass
                self._wake.clear()
        finally:
            self.running = False

    def _listen_for_new_runs(self) -> None:
        """Where the store tells of runs created by other processes (Postgres: LISTEN), a
        thread waits for that and wakes the poll loop, so a run queued through another
        process starts at once rather than at the next poll. The poll stays: it also finds
        expired leases and due timers, and covers a wake-up lost to a dropped connection."""
        waiter = getattr(self.runtime.store, "wait_for_queued", None)
        if waiter is None:
            return
        loop = asyncio.get_running_loop()
        self._listening += 1  # a restarted loop's thread replaces the last one
        mine = self._listening

        def listen() -> None:
            while not self._stopping and self._listening == mine:
                try:
                    woke = waiter(1.0)
                except StoreError as exc:  # the store closed, or the connection broke: polls go on
                    log.debug("worker %s stops listening for new runs: %s", self.runtime.owner, exc)
                    return
                if woke and not self._stopping:
                    try:
                        loop.call_soon_threadsafe(self.wake)
                    except RuntimeError:  # the event loop has closed
                        return

        threading.Thread(target=listen, name="llmflow-worker-listen", daemon=True).start()

    async def stop(self) -> None:
        """Stop polling and stop the runs this worker executes. Their leases are released,
        so another worker (or this one, restarted) continues them from the log."""
        self._stopping = True
        self.wake()
        tasks = list(self.tasks.values())
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
            self._loop_task = None
        self.running = False

    # -- claiming -------------------------------------------------------------------------------
    async def fill_async(self) -> list[str]:
        """Claim runs until every slot is busy or the queue is empty, off the event loop (SKIP
        LOCKED on Postgres); returns the ids started."""
        started: list[str] = []
        rt = self.runtime
        many = getattr(rt.store, "claim_many", None)
        while len(self.tasks) < self.concurrency and not self._stopping:
            free = self.concurrency - len(self.tasks)
            if many is not None:  # every free slot in one round trip
                recs = await rt.io(many, rt.owner, rt.clock.now(), rt.settings.lease_seconds, free)
            else:
                rec = await rt.io(rt.store.claim, rt.owner, rt.clock.now(), rt.settings.lease_seconds)
                recs = [rec] if rec is not None else []
            for rec in recs:
                if rec.id in self.tasks:  # ours already: its lease ran out under load; the claim renewed it
                    continue
                self.tasks[rec.id] = asyncio.create_task(
                    self._execute(rec.id, rec), name=f"llmflow-run:{rec.id}"
                )
                started.append(rec.id)
            if len(recs) < (free if many is not None else 1):
                break
        return started

    async def process_available(self, timeout: float | None = None) -> list[str]:
        """Claim and execute queued runs until none is left and the ones claimed here have
        finished (or paused); Agent Runner's synchronous ``POST /worker/process``. Runs the
        background loop started are not waited for. Returns the ids claimed here."""
        done: list[str] = []
        mine: set[asyncio.Task[None]] = set()

        async def drain() -> None:
            while True:
                ids = await self.fill_async()  # claims off the event loop
                done.extend(ids)
                mine.update(self.tasks[i] for i in ids if i in self.tasks)
                pending = {t for t in mine if not t.done()}
                if not pending:
                    if not ids:
                        return
                    continue
                await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)

        if timeout is None:
            await drain()
        else:
            try:
                await asyncio.wait_for(drain(), timeout)
            except TimeoutError:
                pass
        return done

    # -- one run --------------------------------------------------------------------------------
    async def _execute(self, run_id: str, claimed: Any = None) -> None:
        status = "?"
        try:
            if self.on_run:
                self.on_run(run_id, "started")
            st = await self.runtime.execute(
                run_id, subscribers=self.subscribers, park_after=self.park_after, claimed=claimed
            )
            status = str(st.status)
        except asyncio.CancelledError:
            status = "interrupted"
            raise
        except StoreError:
            log.exception("run %s: the store failed; the run stays queued for another try", run_id)
            status = "store error"
        except Exception as exc:  # noqa: BLE001 - a run that cannot start must not be claimed forever
            status = "FAILED"
            await self._fail(run_id, exc)
        finally:
            self.tasks.pop(run_id, None)
            self.processed += 1
            self.wake()  # a slot is free
            if self.on_run:
                self.on_run(run_id, status)

    async def _fail(self, run_id: str, exc: BaseException) -> None:
        """Record why a claimed run could not be executed, so it leaves the queue (off the
        event loop: the store calls go through the runtime's writer)."""
        rt = self.runtime
        if isinstance(exc, LlmflowError):
            msg = exc.message + (f" (hint: {exc.hint})" if exc.hint else "")
            log.warning("run %s cannot be executed: %s", run_id, msg)
        else:
            msg = f"internal error: {type(exc).__name__}: {exc}"
            log.error("run %s cannot be executed", run_id, exc_info=exc)
        try:
            stored = await rt.io(rt.fail_run, run_id, msg)
        except Exception:  # noqa: BLE001 - best effort; the lease expires anyway
            log.exception("run %s: recording the failure failed", run_id)
            return
        rt.notify(stored)
        for e in stored:
            for sub in self.subscribers:
                sub(e)

    def status(self) -> dict[str, Any]:
        interval: float | int = (
            int(self.check_interval) if float(self.check_interval).is_integer() else self.check_interval
        )
        return {
            "running": self.running,
            "check_interval": interval,
            "concurrency": self.concurrency,
            "active_runs": sorted(self.tasks),
            "processed": self.processed,
            "owner": self.runtime.owner,
        }
