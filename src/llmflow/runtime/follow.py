"""Following events as they are stored: the one follower behind SSE, the WebSocket,
Buttermilk sessions, ``llmflow runs events --follow``, ``RunHandle.events`` and the
dashboards' all-runs stream.

The store is the only source of events: a follower reads them in order after a cursor, so
a reader gets every event once, replay and live alike, with no gap and no duplicate.
:class:`EventHub` only say *when* to look: the runners of this process publish every batch
they append, which wakes the followers of that run at once; events written by other
processes (workers, the CLI) are found by reading again every ``poll_interval`` seconds.

- :class:`EventFollower` follows one run (cursor: the run's sequence number), async, or
  blocking for the CLI (:meth:`EventFollower.follow_blocking`, over the store's own
  ``wait_for_events``).
- :class:`LogFollower` follows every run (cursor: the store-wide event id).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING

from llmflow.engine.events import RUN_END_EVENTS, Event
from llmflow.engine.states import RUN_TERMINAL

if TYPE_CHECKING:
    from llmflow.store.base import RunRecord, Store

TERMINAL_EVENTS = RUN_END_EVENTS  # the names other modules import
TERMINAL_STATUSES = RUN_TERMINAL
ALL_RUNS = "*"  # EventHub key of the store-wide followers


class EventHub:
    """Wake-ups per run, for followers in this process. Used from one event loop's thread."""

    def __init__(self) -> None:
        self._waiters: dict[str, set[asyncio.Future[None]]] = {}

    def publish(self, event: Event) -> None:
        """A runner subscriber: called for each event a runner of this process stored."""
        self.notify(event.run_id)

    def notify(self, run_id: str) -> None:
        for key in (run_id, ALL_RUNS):
            for fut in self._waiters.pop(key, ()):
                if not fut.done():
                    fut.set_result(None)

    async def wait(self, run_id: str, timeout: float) -> None:
        """Return when ``run_id`` (``ALL_RUNS``: any run) has news, or after ``timeout`` seconds."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiters = self._waiters.setdefault(run_id, set())
        waiters.add(fut)
        try:
            await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            pass
        finally:
            waiters.discard(fut)
            if not waiters and self._waiters.get(run_id) is waiters:
                del self._waiters[run_id]

    def waiting(self) -> int:
        return sum(len(w) for w in self._waiters.values())


class _Follower:
    """Reads events after a cursor, in order, as they are stored; waits between reads."""

    key = ALL_RUNS

    def __init__(self, hub: EventHub | None, *, poll_interval: float, batch: int) -> None:
        self.hub = hub
        self.poll_interval = poll_interval
        self.batch = batch
        self.last_type: str | None = None

    def _read(self) -> list[Event]:
        raise NotImplementedError

    def _advance(self, last: Event) -> None:
        raise NotImplementedError

    def read(self) -> list[Event]:
        """The events stored after the cursor (at most ``batch``), advancing it."""
        events = self._read()
        if events:
            self._advance(events[-1])
            self.last_type = events[-1].type
        return events

    async def wait(self, timeout: float) -> None:
        """Until there may be news: a wake-up, or ``timeout`` (at most one poll interval)."""
        timeout = min(timeout, self.poll_interval)
        if self.hub is not None:
            await self.hub.wait(self.key, timeout)
        else:
            await asyncio.sleep(timeout)

    async def next(self, timeout: float) -> list[Event]:
        """The next events, waiting up to ``timeout`` seconds for some; [] if none came."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            events = self.read()
            if events:
                return events
            left = deadline - loop.time()
            if left <= 0:
                return []
            await self.wait(left)


class EventFollower(_Follower):
    """One run's events after a sequence number."""

    def __init__(
        self,
        store: Store,
        hub: EventHub | None,
        run_id: str,
        after_seq: int = 0,
        *,
        poll_interval: float = 0.5,
        batch: int = 500,
    ) -> None:
        super().__init__(hub, poll_interval=poll_interval, batch=batch)
        self.store = store
        self.run_id = self.key = run_id
        self.seq = max(0, after_seq)

    def _read(self) -> list[Event]:
        return self.store.events(self.run_id, self.seq, self.batch)

    def _advance(self, last: Event) -> None:
        self.seq = last.seq

    def finished(self) -> bool:
        """True when the run has ended and every event of it has been read (the last one
        read ended it, or the cursor started past its end)."""
        if self.last_type is not None and self.last_type not in TERMINAL_EVENTS:
            return False
        rec = self.store.get_run(self.run_id)
        return rec is None or (rec.status in TERMINAL_STATUSES and rec.last_seq <= self.seq)

    async def events(self, *, stop: Callable[[], bool] | None = None) -> AsyncIterator[Event]:
        """Every event, as it is stored, until the run ends (or ``stop()`` says so once
        everything stored has been read)."""
        while True:
            events = await self.next(self.poll_interval)
            for e in events:
                yield e
            if len(events) == self.batch:
                continue
            if self.finished() or (not events and stop is not None and stop()):
                return

    def follow_blocking(self, *, follow: bool = True) -> Iterator[Event]:
        """The same, from sync code (the CLI): blocks in the store's ``wait_for_events``
        between reads. ``follow=False``: what is stored now, then stop."""
        while True:
            events = self.read()
            yield from events
            if len(events) == self.batch:
                continue  # catching up: read on at once
            if not follow or self.finished():
                return
            self.store.wait_for_events(self.run_id, self.seq, self.poll_interval)


class LogFollower(_Follower):
    """Every run's events after a store-wide event id (dashboards)."""

    def __init__(
        self,
        store: Store,
        hub: EventHub | None,
        after_id: int = 0,
        *,
        poll_interval: float = 0.5,
        batch: int = 500,
    ) -> None:
        super().__init__(hub, poll_interval=poll_interval, batch=batch)
        self.store = store
        self.cursor = max(0, after_id)

    def _read(self) -> list[Event]:
        return self.store.events_since(self.cursor, self.batch)

    def _advance(self, last: Event) -> None:
        self.cursor = last.id or self.cursor


async def wait_for_status(
    store: Store,
    hub: EventHub,
    run_id: str,
    timeout: float,
    *,
    statuses: frozenset[str] = TERMINAL_STATUSES,
    poll_interval: float = 0.5,
) -> RunRecord | None:
    """The run record once its status is in ``statuses``, or as it is after ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        rec = store.get_run(run_id)
        if rec is None or rec.status in statuses:
            return rec
        left = deadline - loop.time()
        if left <= 0:
            return rec
        await hub.wait(run_id, min(left, poll_interval))
