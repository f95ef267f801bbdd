"""The store protocol: an append-only event log plus projections.

Every backend (memory, sqlite, postgres) implements :class:`Store` and passes the same
contract suite (``tests/store/contract.py``). ``append`` is atomic: the events of one call
get contiguous sequence numbers and the projections (runs, steps/attempts, artifacts) are
updated in the same transaction. Returning from ``append`` means the events are durable:
committed, and readable by every other connection; they survive the process being killed.
Across a power loss: Postgres (synchronous_commit on, its default) and SQLite opened with
``?synchronous=full`` keep them; SQLite's default (``synchronous = NORMAL`` in WAL mode, no
fsync per commit) may lose the last commits, never corrupting the file."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from llmflow.engine.events import Event, NewEvent
from llmflow.engine.states import RunStatus
from llmflow.store.batches import BatchRecord
from llmflow.store.evals import EvalRecord, EvalResult


@dataclass
class RunRecord:
    id: str
    flow_name: str
    status: str = RunStatus.QUEUED.value  # the plain word, as every store reads it back
    created_at: float = 0.0
    started_at: float | None = None
    ended_at: float | None = None
    inputs: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] | None = None
    error: str | None = None
    spec: dict[str, Any] = field(default_factory=dict)  # the resolved flow + provenance record
    fingerprint: str = ""
    options: dict[str, Any] = field(default_factory=dict)  # models, timeout, workspace ...
    metadata: dict[str, Any] = field(default_factory=dict)
    parent_run_id: str | None = None
    batch_id: str | None = None
    project_id: int | None = None
    name: str | None = None
    goal: str | None = None
    run_type: str = "flow"
    owner: str | None = None  # the worker holding the lease
    lease_expires_at: float | None = None
    last_seq: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost: float = 0.0
    wake_at: float | None = None  # a WAITING (parked) run is claimable again from then on

    @property
    def duration(self) -> float | None:
        if self.started_at is None:
            return None
        return (self.ended_at or self.started_at) - self.started_at if self.ended_at else None


@dataclass
class AttemptRow:
    run_id: str
    step_id: str
    unit: str  # "" for a step's single unit
    attempt: int
    status: str
    started_at: float | None = None
    ended_at: float | None = None
    output: Any = None
    error: str | None = None
    model: str | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    cost: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class ArtifactRow:
    run_id: str
    path: str
    size: int
    sha256: str
    step_id: str | None = None
    attempt: int | None = None
    created_at: float = 0.0
    mime: str | None = None


@dataclass
class Control:
    id: int
    run_id: str
    action: str  # cancel | pause | resume | answer | rerun | directive
    payload: dict[str, Any]
    created_at: float


@dataclass
class Project:
    id: int
    name: str
    local_path: str | None
    created_at: float


class Store(Protocol):
    url: str

    def migrate(self) -> None: ...
    def close(self) -> None: ...

    # runs
    def create_run(self, run: RunRecord, events: list[NewEvent], now: float) -> list[Event]: ...
    def get_run(self, run_id: str) -> RunRecord | None: ...
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
        in_batch: bool | None = None,  # False: runs of no batch; True: batch runs only
    ) -> list[RunRecord]: ...
    def count_runs(
        self,
        *,
        flow: str | None = None,
        status: str | None = None,
        batch_id: str | None = None,
        in_batch: bool | None = None,
    ) -> int: ...
    def update_run(self, run_id: str, **fields: Any) -> None: ...

    # events
    def append(self, run_id: str, events: list[NewEvent], now: float) -> list[Event]: ...
    def events(self, run_id: str, after_seq: int = 0, limit: int | None = None) -> list[Event]: ...
    def events_since(self, after_id: int, limit: int = 1000) -> list[Event]: ...
    def event_by_id(
        self, event_id: int
    ) -> Event | None: ...  # any committed event, whatever the stream's horizon
    def wait_for_events(self, run_id: str, after_seq: int, timeout: float) -> list[Event]: ...

    # projections
    def attempts(self, run_id: str, step_id: str | None = None) -> list[AttemptRow]: ...
    def artifacts(self, run_id: str) -> list[ArtifactRow]: ...
    def step_rows(
        self, run_id: str
    ) -> dict[str, dict[str, Any]]: ...  # step_id -> status, output, error, started_at, ended_at

    # run control mailbox (cross-process cancel / pause / answers)
    def put_control(self, run_id: str, action: str, payload: dict[str, Any], now: float) -> int: ...
    def take_controls(self, run_id: str) -> list[Control]: ...
    def runs_with_controls(self) -> set[str]: ...  # the runs whose mailbox is not empty

    # conversation threads (store/threads.py): (run id, created_at, status), oldest first
    def thread_runs(self, name: str) -> list[tuple[str, float, str]]: ...

    # leases (workers)
    def claim(
        self, owner: str, now: float, lease_seconds: float, run_id: str | None = None
    ) -> RunRecord | None: ...
    def claim_many(
        self, owner: str, now: float, lease_seconds: float, limit: int
    ) -> list[RunRecord]: ...  # the queue scan, up to limit runs
    def heartbeat(self, run_id: str, owner: str, now: float, lease_seconds: float) -> bool: ...
    def release(self, run_id: str, owner: str) -> None: ...

    # projects (Agent Runner)
    def create_project(self, name: str, local_path: str | None, now: float) -> Project: ...
    def list_projects(self) -> list[Project]: ...
    def get_project(self, project_id: int) -> Project | None: ...

    # batches (llmflow.store.batches): metadata of `llmflow batch` runs; top-level runs only
    def create_batch(self, batch: BatchRecord) -> None: ...
    def get_batch(self, batch_id: str) -> BatchRecord | None: ...
    def list_batches(self, *, limit: int = 50, offset: int = 0) -> list[BatchRecord]: ...
    def update_batch(self, batch_id: str, **fields: Any) -> None: ...
    def batch_summary(self, batch_id: str) -> dict[str, Any]: ...
    def batch_run_statuses(self, batch_id: str) -> dict[str, str]: ...

    # evaluations (llmflow.store.evals): `llmflow eval` scores; one result row per job
    def create_eval(self, ev: EvalRecord) -> None: ...
    def get_eval(self, eval_id: str) -> EvalRecord | None: ...
    def list_evals(
        self, *, flow: str | None = None, limit: int = 50, offset: int = 0
    ) -> list[EvalRecord]: ...
    def update_eval(self, eval_id: str, **fields: Any) -> None: ...
    def put_eval_result(self, result: EvalResult) -> None: ...
    def eval_results(self, eval_id: str) -> list[EvalResult]: ...
