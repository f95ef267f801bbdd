"""Batch metadata in the store: the ``batches`` table and batch-level run queries.

A batch is many runs of one flow over the records of a dataset (``llmflow batch``). Its
runs carry ``batch_id``; this table holds what the runs do not: the flow reference, the
data source, the options the batch was started with, the job total, the driver holding
it (``owner``) and its heartbeat (``updated_at``). Child runs (sub-flows) inherit their
parent's ``batch_id``; the batch queries count top-level runs only.

The SQL is shared by SQLite and Postgres (:class:`SqlBatches`, parameterised by the
placeholder and the JSON cast); :class:`MemoryBatches` mirrors it for the memory store.
The contract suite (``tests/store/contract.py``) pins the semantics.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field, fields, replace
from typing import Any

from llmflow.errors import StoreError


@dataclass
class BatchRecord:
    id: str
    flow_name: str
    status: str = "RUNNING"  # RUNNING | COMPLETED | STOPPED
    created_at: float = 0.0
    updated_at: float = 0.0  # the driver's heartbeat
    ended_at: float | None = None
    total: int | None = None  # jobs, once known
    spec: dict[str, Any] = field(default_factory=dict)  # flow, data, columns, options
    owner: str | None = None  # the driver process (host:pid:nonce)
    metadata: dict[str, Any] = field(default_factory=dict)


BATCH_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(BatchRecord))
_JSON = frozenset({"spec", "metadata"})


def _empty_summary() -> dict[str, Any]:
    return {
        "statuses": {},
        "tokens_in": 0,
        "tokens_out": 0,
        "cost": 0.0,
        "first_started_at": None,
        "last_ended_at": None,
    }


def _check(fields_: dict[str, Any]) -> None:
    unknown = sorted(set(fields_) - set(BATCH_COLUMNS) - {"id"})
    if unknown or "id" in fields_:
        raise TypeError(f"BatchRecord has no updatable field(s) {', '.join(unknown or ['id'])}")


class SqlBatches:
    """Batch methods for the SQL stores. The store provides ``_read(sql, params)`` and
    ``_batch_exec(sql, params) -> rowcount`` (one write transaction)."""

    _ph = "?"
    _json_cast = ""

    def _batch_exec(self, sql: str, params: list[Any]) -> int:  # pragma: no cover - provided by the store
        raise NotImplementedError

    def _read(self, sql: str, params: Any = ()) -> list[Any]:  # pragma: no cover - provided by the store
        raise NotImplementedError

    def _bvalue(self, col: str, v: Any) -> Any:
        return json.dumps(v, default=str) if col in _JSON else v

    def _bslot(self, col: str) -> str:
        return self._ph + (self._json_cast if col in _JSON else "")

    @staticmethod
    def _batch_from_row(row: Any) -> BatchRecord:
        vals = list(row)
        for i, c in enumerate(BATCH_COLUMNS):
            if c in _JSON and isinstance(vals[i], str):
                vals[i] = json.loads(vals[i])
        return BatchRecord(*vals)

    def create_batch(self, batch: BatchRecord) -> None:
        cols = ", ".join(BATCH_COLUMNS)
        slots = ", ".join(self._bslot(c) for c in BATCH_COLUMNS)
        sql = f"INSERT INTO batches ({cols}) VALUES ({slots}) ON CONFLICT (id) DO NOTHING"
        if self._batch_exec(sql, [self._bvalue(c, getattr(batch, c)) for c in BATCH_COLUMNS]) != 1:
            raise StoreError(f"batch {batch.id} already exists")

    def get_batch(self, batch_id: str) -> BatchRecord | None:
        rows = self._read(
            f"SELECT {', '.join(BATCH_COLUMNS)} FROM batches WHERE id = {self._ph}", (batch_id,)
        )
        return self._batch_from_row(rows[0]) if rows else None

    def list_batches(self, *, limit: int = 50, offset: int = 0) -> list[BatchRecord]:
        ph = self._ph
        rows = self._read(
            f"SELECT {', '.join(BATCH_COLUMNS)} FROM batches ORDER BY created_at DESC, id DESC LIMIT {ph} OFFSET {ph}",
            (limit, offset),
        )
        return [self._batch_from_row(r) for r in rows]

    def update_batch(self, batch_id: str, **batch_fields: Any) -> None:
        _check(batch_fields)
        cols = sorted(batch_fields)
        if cols:
            sets = ", ".join(f"{c} = {self._bslot(c)}" for c in cols)
            params = [self._bvalue(c, batch_fields[c]) for c in cols] + [batch_id]
            found = self._batch_exec(f"UPDATE batches SET {sets} WHERE id = {self._ph}", params) > 0
        else:
            found = self.get_batch(batch_id) is not None
        if not found:
            raise StoreError(f"no batch {batch_id}")

    def batch_summary(self, batch_id: str) -> dict[str, Any]:
        """Top-level runs of the batch: count per status, summed tokens and cost, the first
        start and the last end."""
        rows = self._read(
            "SELECT status, COUNT(*), COALESCE(SUM(tokens_in), 0), COALESCE(SUM(tokens_out), 0), "
            f"COALESCE(SUM(cost), 0), MIN(started_at), MAX(ended_at) FROM runs WHERE batch_id = {self._ph} "
            "AND parent_run_id IS NULL GROUP BY status",
            (batch_id,),
        )
        out = _empty_summary()
        for status, n, tin, tout, cost, started, ended in rows:
            out["statuses"][status] = int(n)
            out["tokens_in"] += int(tin)
            out["tokens_out"] += int(tout)
            out["cost"] += float(cost)
            if started is not None and (out["first_started_at"] is None or started < out["first_started_at"]):
                out["first_started_at"] = started
            if ended is not None and (out["last_ended_at"] is None or ended > out["last_ended_at"]):
                out["last_ended_at"] = ended
        return out

    def batch_run_statuses(self, batch_id: str) -> dict[str, str]:
        """run id -> status for every top-level run of the batch."""
        rows = self._read(
            f"SELECT id, status FROM runs WHERE batch_id = {self._ph} AND parent_run_id IS NULL", (batch_id,)
        )
        return {r[0]: r[1] for r in rows}


class MemoryBatches:
    """The same methods over dicts, for the memory store (``self._lock``, ``self._runs``)."""

    def _bstore(self) -> dict[str, BatchRecord]:
        b = self.__dict__.get("_batches")
        if b is None:
            b = self.__dict__["_batches"] = {}
        return b

    def create_batch(self, batch: BatchRecord) -> None:
        with self._lock:  # type: ignore[attr-defined]
            if batch.id in self._bstore():
                raise StoreError(f"batch {batch.id} already exists")
            self._bstore()[batch.id] = copy.deepcopy(batch)

    def get_batch(self, batch_id: str) -> BatchRecord | None:
        with self._lock:  # type: ignore[attr-defined]
            b = self._bstore().get(batch_id)
            return copy.deepcopy(b) if b else None

    def list_batches(self, *, limit: int = 50, offset: int = 0) -> list[BatchRecord]:
        with self._lock:  # type: ignore[attr-defined]
            bs = sorted(self._bstore().values(), key=lambda b: (b.created_at, b.id), reverse=True)
            return [copy.deepcopy(b) for b in bs[offset : offset + limit]]

    def update_batch(self, batch_id: str, **batch_fields: Any) -> None:
        _check(batch_fields)
        with self._lock:  # type: ignore[attr-defined]
            b = self._bstore().get(batch_id)
            if b is None:
                raise StoreError(f"no batch {batch_id}")
            self._bstore()[batch_id] = replace(b, **copy.deepcopy(batch_fields))

    def _batch_runs(self, batch_id: str) -> list[Any]:
        runs = self._runs.values()  # type: ignore[attr-defined]
        return [r for r in runs if r.batch_id == batch_id and r.parent_run_id is None]

    def batch_summary(self, batch_id: str) -> dict[str, Any]:
        with self._lock:  # type: ignore[attr-defined]
            out = _empty_summary()
            for r in self._batch_runs(batch_id):
                out["statuses"][r.status] = out["statuses"].get(r.status, 0) + 1
                out["tokens_in"] += r.tokens_in
                out["tokens_out"] += r.tokens_out
                out["cost"] += r.cost
                if r.started_at is not None and (
                    out["first_started_at"] is None or r.started_at < out["first_started_at"]
                ):
                    out["first_started_at"] = r.started_at
                if r.ended_at is not None and (
                    out["last_ended_at"] is None or r.ended_at > out["last_ended_at"]
                ):
                    out["last_ended_at"] = r.ended_at
            return out

    def batch_run_statuses(self, batch_id: str) -> dict[str, str]:
        with self._lock:  # type: ignore[attr-defined]
            return {r.id: r.status for r in self._batch_runs(batch_id)}
