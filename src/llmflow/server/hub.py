"""Following a run's events for SSE, WebSocket and Buttermilk sessions.

The store is the only source of events: a follower reads them in sequence order, so a
subscriber gets every event once, replay and live alike, with no gap and no duplicate. The
hub only says *when* to look: runners of this process publish every batch they append,
which wakes the followers of that run at once; events written by other processes (workers,
the CLI) are found by polling every ``poll_interval`` seconds.
"""

from __future__ import annotations

import asyncio
from typing import Any

from llmflow.engine.events import Event
from llmflow.engine.events import EventType as E

TERMINAL_EVENTS = frozenset({E.RUN_COMPLETED, E.RUN_FAILED, E.RUN_CANCELED})
TERMINAL_STATUSES = frozenset({"COMPLETED", "FAILED", "CANCELED"})


class EventHub:
    """Wake-ups per run. Used from the event loop's thread only."""

    def __init__(self) -> None:
        self._waiters: dict[str, set[asyncio.Future[None]]] = {}

    def publish(self, event: Event) -> None:
        """A runner subscriber: called for each event a runner of this process stored."""
        self.notify(event.run_id)

    def notify(self, run_id: str) -> None:
        for fut in self._waiters.pop(run_id, ()):
            if not fut.done():
                fut.set_result(None)

    async def wait(self, run_id: str, timeout: float) -> None:
        """Return when ``run_id`` has news, or after ``timeout`` seconds."""
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


class EventFollower:
    """Reads one run's events after a sequence number, in order, as they are stored."""

    def __init__(
        self,
        store: Any,
        hub: EventHub,
        run_id: str,
        after_seq: int = 0,
        *,
        poll_interval: float = 0.5,
        batch: int = 500,
    ) -> None:
        self.store = store
        self.hub = hub
        self.run_id = run_id
        self.seq = max(0, after_seq)
        self.poll_interval = poll_interval
        self.batch = batch
        self.last_type: str | None = None

    def read(self) -> list[Event]:
        """The events stored after the cursor (at most ``batch``), advancing it."""
        events = self.store.events(self.run_id, self.seq, self.batch)
        if events:
            self.seq = events[-1].seq
            self.last_type = events[-1].type
        return events

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
            await self.hub.wait(self.run_id, min(left, self.poll_interval))

    def finished(self) -> bool:
        """True when the last event read ended the run and nothing came after it."""
        if self.last_type not in TERMINAL_EVENTS:
            return False
        rec = self.store.get_run(self.run_id)
        return rec is None or (rec.status in TERMINAL_STATUSES and rec.last_seq <= self.seq)


async def wait_for_status(
    store: Any,
    hub: EventHub,
    run_id: str,
    timeout: float,
    *,
    statuses: frozenset[str] = TERMINAL_STATUSES,
    poll_interval: float = 0.5,
) -> Any:
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
