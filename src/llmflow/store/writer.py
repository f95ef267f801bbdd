"""Group commit: one writer per process and store batches the appends of all its runs.

Runners ``await writer.append(run_id, events, now)`` (with ``create=run``: a run written with
its first events, so a new run costs no transaction of its own); the writer's thread takes every
append queued since its last commit and writes them in one transaction
(``Store.append_many``), then hands each runner its stored events. A runner executes the
commands its events decided only after that await returns, so the write-ahead order holds:
a command never runs before the events that decided it are durable. There is no timer: a
batch is whatever queued while the previous commit ran (bounded by ``max_events``), so an
idle process commits at once and a busy one commits in ever larger batches.

Database calls thereby leave the event loop (``call`` runs any other store call on the
same thread). Futures are created on the caller's loop and completed with
``call_soon_threadsafe``, so one writer serves every event loop of the process (``run_sync``
inside Jupyter runs on a helper thread's loop).

If one append of a batch fails (an unknown run, say), the batch is retried one append at a
time, so only that append's caller sees the error.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from llmflow.engine.events import Event, NewEvent
from llmflow.errors import StoreError

log = logging.getLogger("llmflow.store")


class InlineWriter:
    """For stores that are only memory: appends on the caller's thread, no batching."""

    def __init__(self, store: Any) -> None:
        self.store = store

    async def append(
        self, run_id: str, events: list[NewEvent], now: float, create: Any = None
    ) -> list[Event]:
        return _one(self.store, run_id, events, now, create)

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return fn(*args)

    def close(self) -> None:
        pass


def _one(store: Any, run_id: str, events: list[NewEvent], now: float, create: Any) -> list[Event]:
    """One append on its own (``create``: the run record to write first, in the same transaction)."""
    out: list[Event] = (
        store.create_run(create, events, now) if create is not None else store.append(run_id, events, now)
    )
    return out


def _items(batch: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """``append_many``'s items: (run_id, events, now) or, for a run written with its first
    events, (run_id, events, now, run record)."""
    return [(b[0], b[1], b[2]) if b[3] is None else (b[0], b[1], b[2], b[3]) for b in batch]


class GroupCommitWriter:
    def __init__(self, store: Any, *, max_events: int = 5000) -> None:
        self.store = store
        self.max_events = max_events
        self._queue: deque[tuple[Any, ...]] = deque()
        self._cv = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.commits = 0  # transactions written (for benchmarks)
        self.appends = 0

    # -- callers (any thread, any event loop) ----------------------------------------------
    async def append(
        self, run_id: str, events: list[NewEvent], now: float, create: Any = None
    ) -> list[Event]:
        """``create``: a run record not stored yet; it is written with these events."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[list[Event]] = loop.create_future()
        self._submit(("append", run_id, events, now, loop, fut, create))
        return await fut

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._submit(("call", fn, args, loop, fut))
        return await fut

    def _submit(self, item: tuple[Any, ...]) -> None:
        with self._cv:
            if self._closed:
                raise StoreError(f"the store {self.store.url} is closed")
            self._queue.append(item)
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="llmflow-writer", daemon=True)
                self._thread.start()
            self._cv.notify()

    def close(self) -> None:
        """Write what is queued, then stop the thread."""
        with self._cv:
            self._closed = True
            self._cv.notify()
            t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout=30)

    # -- the writer thread -------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            with self._cv:
                while not self._queue and not self._closed:
                    self._cv.wait()
                if not self._queue and self._closed:
                    return
                batch: list[tuple[Any, ...]] = []
                calls: list[tuple[Any, ...]] = []
                n = 0
                while self._queue and n < self.max_events:
                    item = self._queue.popleft()
                    if item[0] == "append":
                        batch.append(item)
                        n += len(item[2])
                    else:
                        calls.append(item)
                        if batch:  # keep a call after the appends queued before it
                            break
            if batch:
                self._commit(batch)
            for _, fn, args, loop, fut in calls:
                try:
                    result = fn(*args)
                except BaseException as exc:  # noqa: BLE001 - handed to the caller
                    _resolve(loop, fut, None, exc)
                else:
                    _resolve(loop, fut, result, None)

    def _commit(self, batch: list[tuple[Any, ...]]) -> None:
        try:
            results = self.store.append_many(_items([(it[1], it[2], it[3], it[6]) for it in batch]))
        except BaseException as exc:  # noqa: BLE001
            if len(batch) == 1:
                _resolve(batch[0][4], batch[0][5], None, exc)
                return
            for it in batch:  # isolate the failing append
                try:
                    out = _one(self.store, it[1], it[2], it[3], it[6])
                except BaseException as one:  # noqa: BLE001
                    _resolve(it[4], it[5], None, one)
                else:
                    _resolve(it[4], it[5], out, None)
            return
        self.commits += 1
        self.appends += len(batch)
        for it, out in zip(batch, results, strict=True):
            _resolve(it[4], it[5], out, None)


def _resolve(
    loop: asyncio.AbstractEventLoop, fut: asyncio.Future[Any], result: Any, exc: BaseException | None
) -> None:
    def done() -> None:
        if fut.done():
            return
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(result)

    try:
        loop.call_soon_threadsafe(done)
    except RuntimeError:  # the caller's loop is gone: nobody waits for this any more
        log.debug("dropping a store result for a closed event loop")


class LoopGroupWriter:
    """Group commit on the event loop's own thread, for stores whose commit is cheap (SQLite
    in WAL mode: tens of microseconds). The first append of a loop iteration schedules one
    flush with ``call_soon``; every runner that appends before that flush runs - the other
    runners woken in the same iteration - joins the batch. No thread hop, so a lone run pays
    nothing for batching, and a busy process commits in ever larger batches."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self._pending: dict[asyncio.AbstractEventLoop, list[tuple[Any, ...]]] = {}
        self.commits = 0
        self.appends = 0

    async def append(
        self, run_id: str, events: list[NewEvent], now: float, create: Any = None
    ) -> list[Event]:
        """``create``: a run record not stored yet; it is written with these events."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[list[Event]] = loop.create_future()
        batch = self._pending.get(loop)
        if batch is None:
            batch = self._pending[loop] = []
            loop.call_soon(self._flush, loop)
        batch.append((run_id, events, now, create, fut))
        return await fut

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        batch = self._pending.pop(loop, [])
        if not batch:
            return
        try:
            results = self.store.append_many(_items(batch))
        except BaseException as exc:  # noqa: BLE001
            if len(batch) == 1:
                _set(batch[0][4], None, exc)
                return
            for b in batch:  # isolate the failing append
                try:
                    _set(b[4], _one(self.store, b[0], b[1], b[2], b[3]), None)
                except BaseException as one:  # noqa: BLE001
                    _set(b[4], None, one)
            return
        self.commits += 1
        self.appends += len(batch)
        for b, out in zip(batch, results, strict=True):
            _set(b[4], out, None)

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return fn(*args)

    def close(self) -> None:
        pass


def _set(fut: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if fut.done():
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result)


def writer_for(store: Any) -> InlineWriter | LoopGroupWriter | GroupCommitWriter:
    """Memory: inline. A store with a cheap local commit (SQLite): group commit on the loop.
    A database over the network (Postgres): group commit on a writer thread, so database
    calls never block the event loop."""
    if not getattr(store, "shared", True) or not hasattr(store, "append_many"):
        return InlineWriter(store)
    if getattr(store, "local_commit", False):
        return LoopGroupWriter(store)
    return GroupCommitWriter(store)
