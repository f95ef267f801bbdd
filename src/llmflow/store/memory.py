"""An in-memory store: same contract as the durable ones, nothing survives the process."""

from __future__ import annotations

import copy
import threading
from dataclasses import replace
from typing import Any

from llmflow.engine.events import Event, NewEvent
from llmflow.engine.payloads import Payload, as_dict, schema_version_of
from llmflow.engine.states import RUN_TERMINAL, RunStatus
from llmflow.errors import StoreError
from llmflow.store.base import ArtifactRow, AttemptRow, Control, Project, RunRecord
from llmflow.store.batches import MemoryBatches
from llmflow.store.evals import MemoryEvals
from llmflow.store.projection import project
from llmflow.store.threads import MemoryThreads


def _copy(r: RunRecord) -> RunRecord:
    """A shallow copy of a record (``dataclasses.replace(r)`` without its ~27 ``getattr``
    and keyword arguments: RunRecord is a plain dataclass, no ``__post_init__``)."""
    c = object.__new__(RunRecord)
    c.__dict__.update(r.__dict__)
    return c


class MemoryStore(MemoryBatches, MemoryThreads, MemoryEvals):
    url = "memory://"
    shared = False  # no other process can see it: runners need not poll its control mailbox

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._runs: dict[str, RunRecord] = {}
        self._events: dict[str, list[Event]] = {}
        self._all: list[Event] = []
        self._steps: dict[tuple[str, str], dict[str, Any]] = {}
        self._attempts: dict[tuple[str, str, str, int], AttemptRow] = {}
        self._artifacts: dict[str, list[ArtifactRow]] = {}
        self._controls: list[tuple[Control, bool]] = []
        self._projects: list[Project] = []

    def migrate(self) -> None:
        pass

    def close(self) -> None:
        pass

    # runs ----------------------------------------------------------------------------------
    def create_run(self, run: RunRecord, events: list[NewEvent], now: float) -> list[Event]:
        with self._lock:
            if run.id in self._runs:
                raise StoreError(f"run {run.id} already exists")
            self._runs[run.id] = _copy(run)
            self._events[run.id] = []
            return self.append(run.id, events, now) if events else []

    def get_run(self, run_id: str) -> RunRecord | None:
        with self._lock:
            r = self._runs.get(run_id)
            return _copy(r) if r else None  # a shallow copy: callers treat records as read-only

    def _filter(
        self,
        flow: str | None = None,
        status: str | None = None,
        batch_id: str | None = None,
        project_id: int | None = None,
        parent_run_id: str | None = None,
        in_batch: bool | None = None,
    ) -> list[RunRecord]:
        rs = list(self._runs.values())
        if in_batch is not None:
            rs = [r for r in rs if (r.batch_id is not None) == in_batch]
        if flow:
            rs = [r for r in rs if r.flow_name == flow]
        if status:
            rs = [r for r in rs if r.status == status]
        if batch_id:
            rs = [r for r in rs if r.batch_id == batch_id]
        if project_id is not None:
            rs = [r for r in rs if r.project_id == project_id]
        if parent_run_id:
            rs = [r for r in rs if r.parent_run_id == parent_run_id]
        return rs

    def list_runs(
        self,
        *,
        flow: str | None = None,
        status: str | None = None,
        batch_id: str | None = None,
        project_id: int | None = None,
        parent_run_id: str | None = None,
        limit: int = 50,
        offset: int = 0,
        in_batch: bool | None = None,
    ) -> list[RunRecord]:
        with self._lock:
            rs = self._filter(flow, status, batch_id, project_id, parent_run_id, in_batch)
            rs.sort(key=lambda r: (r.created_at, r.id), reverse=True)
            return [_copy(r) for r in rs[offset : offset + limit]]

    def count_runs(
        self,
        *,
        flow: str | None = None,
        status: str | None = None,
        batch_id: str | None = None,
        in_batch: bool | None = None,
    ) -> int:
        with self._lock:
            return len(self._filter(flow, status, batch_id, in_batch=in_batch))

    def update_run(self, run_id: str, **fields: Any) -> None:
        with self._lock:
            r = self._runs.get(run_id)
            if r is None:
                raise StoreError(f"no run {run_id}")
            self._runs[run_id] = replace(r, **fields)

    # events --------------------------------------------------------------------------------
    def append(self, run_id: str, events: list[NewEvent], now: float) -> list[Event]:
        with self._lock:
            run = self._runs.get(run_id)
            if run is None:
                raise StoreError(f"no run {run_id}")
            log = self._events[run_id]
            all_ = self._all
            out: list[Event] = []
            for ne in events:
                p = ne.payload
                if isinstance(p, Payload):  # serialised once, here
                    d, version = p.to_dict(), p.SCHEMA_VERSION
                else:
                    d, version = as_dict(p), schema_version_of(p, ne.type)
                e = Event(
                    run_id,
                    len(log) + 1,
                    str(ne.type),
                    now,
                    ne.message,
                    ne.step_id,
                    ne.unit,
                    ne.attempt,
                    d,
                    len(all_) + 1,
                    version,
                )
                log.append(e)
                all_.append(e)
                self._project(run, e)
                out.append(e)
            return out

    def append_many(self, batch: list[tuple[Any, ...]]) -> list[list[Event]]:
        """(run_id, events, now) items, or (run_id, events, now, run) for a new run."""
        with self._lock:
            return [
                self.create_run(it[3], it[1], it[2]) if len(it) > 3 else self.append(it[0], it[1], it[2])
                for it in batch
            ]

    def _project(self, run: RunRecord, e: Event) -> None:
        ops = project(e)
        fields = ops.run
        if len(fields) == 1:  # most events: only the last sequence number
            run.last_seq = fields["last_seq"]
        else:
            for k, v in fields.items():
                if k == "started_at_if_null":
                    if run.started_at is None:
                        run.started_at = v
                else:
                    setattr(run, k, v)
        for k, v in ops.run_add.items():
            setattr(run, k, getattr(run, k) + (int(v) if k != "cost" else v))
        if ops.step:
            sid, f = ops.step
            self._steps.setdefault((run.id, sid), {}).update(f)
        if ops.attempt:
            (sid, unit, n), f, insert = ops.attempt
            key = (run.id, sid, unit, n)
            row = self._attempts.get(key)
            if row is None and insert is None:
                row = None  # update only: nothing to update
            elif row is None:
                row = AttemptRow(run.id, sid, unit, n, f["status"])
                self._attempts[key] = row
            for k, v in f.items() if row is not None else ():
                setattr(row, k, v)
        if ops.attempt_add:
            (sid, unit, n), add = ops.attempt_add
            row = self._attempts.get((run.id, sid, unit, n))
            if row is not None:
                row.tokens_in += int(add["tokens_in"])
                row.tokens_out += int(add["tokens_out"])
                row.cost += add["cost"]
        if ops.artifact:
            self._artifacts.setdefault(run.id, []).append(ArtifactRow(run_id=run.id, **ops.artifact))

    def events(self, run_id: str, after_seq: int = 0, limit: int | None = None) -> list[Event]:
        with self._lock:
            log = self._events.get(run_id, [])[after_seq:]
            return list(log[:limit] if limit else log)

    def events_since(self, after_id: int, limit: int = 1000) -> list[Event]:
        with self._lock:
            return list(self._all[after_id : after_id + limit])

    def event_by_id(self, event_id: int) -> Event | None:
        with self._lock:
            return self._all[event_id - 1] if 0 < event_id <= len(self._all) else None

    # projections ---------------------------------------------------------------------------
    def attempts(self, run_id: str, step_id: str | None = None) -> list[AttemptRow]:
        with self._lock:
            rows = [
                a
                for k, a in self._attempts.items()
                if k[0] == run_id and (step_id is None or k[1] == step_id)
            ]
            rows.sort(key=lambda a: (a.started_at or 0, a.step_id, a.unit, a.attempt))
            return [copy.deepcopy(a) for a in rows]

    def step_rows(self, run_id: str) -> dict[str, dict[str, Any]]:
        keys = ("status", "output", "error", "started_at", "ended_at")
        with self._lock:
            return {
                sid: {k: v.get(k) for k in keys} for (rid, sid), v in self._steps.items() if rid == run_id
            }

    def wait_for_events(self, run_id: str, after_seq: int, timeout: float) -> list[Event]:
        import time

        deadline = time.monotonic() + timeout
        while True:
            evs = self.events(run_id, after_seq)
            if evs or time.monotonic() >= deadline:
                return evs
            time.sleep(0.02)

    def artifacts(self, run_id: str) -> list[ArtifactRow]:
        with self._lock:
            return list(self._artifacts.get(run_id, []))

    # controls ------------------------------------------------------------------------------
    def put_control(self, run_id: str, action: str, payload: dict[str, Any], now: float) -> int:
        with self._lock:
            c = Control(len(self._controls) + 1, run_id, action, payload, now)
            self._controls.append((c, False))
            return c.id

    def take_controls(self, run_id: str) -> list[Control]:
        with self._lock:
            out = []
            for i, (c, done) in enumerate(self._controls):
                if not done and c.run_id == run_id:
                    out.append(c)
                    self._controls[i] = (c, True)
            return out

    def runs_with_controls(self) -> set[str]:
        with self._lock:
            return {c.run_id for c, done in self._controls if not done}

    # leases --------------------------------------------------------------------------------
    def claim(
        self, owner: str, now: float, lease_seconds: float, run_id: str | None = None
    ) -> RunRecord | None:
        with self._lock:
            cands = (
                [self._runs[run_id]]
                if run_id and run_id in self._runs
                else (
                    sorted(self._runs.values(), key=lambda r: (r.created_at, r.id)) if run_id is None else []
                )
            )
            for r in cands:
                expired = r.owner is None or (r.lease_expires_at or 0) < now
                if run_id is None:  # the queue scan never hands back a live lease, not even ours
                    free = expired
                    ok = r.status in (RunStatus.QUEUED, RunStatus.RUNNING) or (
                        r.status == RunStatus.WAITING and r.wake_at is not None and r.wake_at <= now
                    )
                else:
                    free = expired or r.owner == owner
                    ok = r.status not in RUN_TERMINAL
                if ok and free:
                    r.owner = owner
                    r.lease_expires_at = now + lease_seconds
                    return _copy(r)
            return None

    def claim_many(self, owner: str, now: float, lease_seconds: float, limit: int) -> list[RunRecord]:
        with self._lock:
            out: list[RunRecord] = []
            while len(out) < limit:
                r = self.claim(owner, now, lease_seconds)
                if r is None:
                    break
                out.append(r)
            return out

    def heartbeat(self, run_id: str, owner: str, now: float, lease_seconds: float) -> bool:
        with self._lock:
            r = self._runs.get(run_id)
            if r is None or r.owner != owner:
                return False
            r.lease_expires_at = now + lease_seconds
            return True

    def release(self, run_id: str, owner: str) -> None:
        with self._lock:
            r = self._runs.get(run_id)
            if r is not None and r.owner == owner:
                r.owner = None
                r.lease_expires_at = None

    # projects ------------------------------------------------------------------------------
    def create_project(self, name: str, local_path: str | None, now: float) -> Project:
        with self._lock:
            if any(p.name == name for p in self._projects):
                raise StoreError(f"a project named {name!r} already exists")
            p = Project(len(self._projects) + 1, name, local_path, now)
            self._projects.append(p)
            return p

    def list_projects(self) -> list[Project]:
        with self._lock:
            return list(self._projects)

    def get_project(self, project_id: int) -> Project | None:
        with self._lock:
            return next((p for p in self._projects if p.id == project_id), None)
