"""Leases and ownership: who executes a run, whether that process is still alive, and the
control mailbox the runs this process executes poll.

A run executing somewhere has an ``owner`` ("host:pid:token") and a lease the runner renews
with heartbeats; a claim (``Store.claim``) hands a run to one process at a time. When an
owner dies its lease expires and another process's claim recovers the run from the log;
on the same machine a dead pid is seen at once (:func:`owner_is_dead_here`)."""

from __future__ import annotations

import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llmflow.store.base import RunRecord, Store


class SystemClock:
    def now(self) -> float:
        return time.time()


def new_owner() -> str:
    """This process's owner name: host, pid and a token (two runtimes of one process differ)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(2)}"


def owner_is_dead_here(owner: str | None) -> bool:
    """An owner is "host:pid:token"; on this host, a pid that no longer exists is dead."""
    if not owner:
        return False
    host, _, rest = owner.partition(":")
    pid_s = rest.split(":", 1)[0]
    if host != socket.gethostname() or not pid_s.isdigit():
        return False
    pid = int(pid_s)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:  # a zombie (killed, not yet reaped by its parent) is dead too
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return False


def owned_live(rec: RunRecord, now: float) -> bool:
    """Some process holds the run's lease now."""
    return rec.owner is not None and (rec.lease_expires_at or 0) > now


class ControlMailbox:
    """The control mailbox as the runs this process executes poll it: one query per poll
    interval tells which runs have a control waiting (``Store.runs_with_controls``), and only
    those take theirs - instead of one transaction per run per interval (hundreds a second
    for a busy worker on Postgres). A control is seen within one interval either way."""

    def __init__(self, store: Store, io: Callable[..., Awaitable[Any]], interval: float = 0.1) -> None:
        self.store = store
        self.io = io
        self.interval = interval
        self._pending: set[str] = set()
        self._at = float("-inf")
        self._busy = False

    async def take(self, run_id: str) -> list[Any]:
        if not self._busy and time.monotonic() - self._at >= self.interval:
            self._busy = True  # one look at a time; the others use the last answer meanwhile
            try:
                self._pending = await self.io(self.store.runs_with_controls)
                self._at = time.monotonic()
            finally:
                self._busy = False
        if run_id not in self._pending:
            return []
        self._pending.discard(run_id)
        return list(await self.io(self.store.take_controls, run_id))
