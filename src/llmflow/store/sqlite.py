"""The SQLite store: the default durable backend, one file per project.

Semantics are exactly those of :class:`llmflow.store.memory.MemoryStore`; the contract suite
(``tests/store/contract.py``) pins them. Several processes may share one database file:
every write runs in a ``BEGIN IMMEDIATE`` transaction (the database write lock), so
sequence numbers, control hand-out and run claims stay atomic across processes.

One connection per store, guarded by a re-entrant lock. ``append`` is the hot path: one
transaction of BEGIN IMMEDIATE, an UPDATE of the run row (which also checks the last seq
this handle remembers), one multi-row INSERT and the projection writes, with SQL strings
built once and cached so the driver keeps them prepared.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from typing import Any

from llmflow.engine.events import Event, NewEvent
from llmflow.engine.payloads import Payload, as_dict
from llmflow.errors import StoreError
from llmflow.store import migrations
from llmflow.store.base import ArtifactRow, AttemptRow, Control, Project, RunRecord
from llmflow.store.batches import SqlBatches
from llmflow.store.evals import SqlEvals
from llmflow.store.projection import project
from llmflow.store.threads import SqlThreads

# --- shared with the postgres store: row mapping and SQL building are dialect-neutral,
# --- parameterised by the placeholder (``?`` or ``%s``).
RUN_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(RunRecord))
RUN_JSON_COLUMNS = frozenset({"inputs", "outputs", "spec", "options", "metadata"})
EVENT_COLUMNS = "id, run_id, seq, type, ts, message, step_id, unit, attempt, payload, schema_version"
ATTEMPT_COLUMNS = "run_id, step_id, unit, attempt, status, started_at, ended_at, output, error, model, tokens_in, tokens_out, cost, info"
ARTIFACT_COLUMNS = "run_id, path, size, sha256, step_id, attempt, created_at, mime"
STEP_FIELDS = ("status", "output", "error", "started_at", "ended_at")
_RUN_SELECT = "SELECT " + ", ".join(RUN_COLUMNS) + " FROM runs"
_JSON_INDEXES = tuple(i for i, c in enumerate(RUN_COLUMNS) if c in RUN_JSON_COLUMNS)


# Same output as json.dumps(value, default=str), without building an encoder per call.
_encode = json.JSONEncoder(default=str).encode
_set = object.__setattr__


def dumps(value: Any) -> str:
    return _encode(value)


def dumps_nullable(value: Any) -> str | None:
    return None if value is None else _encode(value)


def _loads(text: Any) -> Any:
    """SQLite gives JSON columns back as text; psycopg has already decoded JSONB."""
    return json.loads(text) if isinstance(text, str) else text


def run_from_row(row: Any) -> RunRecord:
    values = list(row)
    for i in _JSON_INDEXES:
        if values[i] is not None:
            values[i] = _loads(values[i])
    return RunRecord(*values)


def run_params(run: RunRecord) -> list[Any]:
    out = []
    for c in RUN_COLUMNS:
        v = getattr(run, c)
        out.append((dumps_nullable(v) if c == "outputs" else dumps(v)) if c in RUN_JSON_COLUMNS else v)
    return out


def check_run_fields(run_fields: dict[str, Any]) -> None:
    unknown = sorted(set(run_fields) - set(RUN_COLUMNS))
    if unknown:  # the same error dataclasses.replace gives the memory store
        raise TypeError(f"RunRecord has no field(s) {', '.join(unknown)}")


def event_from_row(row: Any) -> Event:
    id_, run_id, seq, type_, ts, message, step_id, unit, attempt, payload, version = row
    return Event(run_id, seq, type_, ts, message, step_id, unit, attempt, _loads(payload), id_, version)


def attempt_from_row(row: Any) -> AttemptRow:
    values = list(row)
    values[7] = _loads(values[7]) if values[7] is not None else None
    values[13] = _loads(values[13]) if values[13] is not None else {}
    return AttemptRow(*values)


def step_row(row: Any) -> dict[str, Any]:
    status, output, error, started_at, ended_at = row
    return {
        "status": status,
        "output": _loads(output) if output is not None else None,
        "error": error,
        "started_at": started_at,
        "ended_at": ended_at,
    }


def run_filters(
    flow: str | None,
    status: str | None,
    batch_id: str | None,
    project_id: int | None,
    parent_run_id: str | None,
    ph: str,
    in_batch: bool | None = None,
) -> tuple[str, list[Any]]:
    """WHERE clause with the memory store's semantics (empty strings do not filter;
    ``in_batch`` False: only runs of no batch, True: only batch runs)."""
    where, params = [], []
    if in_batch is not None:
        where.append("batch_id IS NOT NULL" if in_batch else "batch_id IS NULL")
    for col, val in (
        ("flow_name", flow),
        ("status", status),
        ("batch_id", batch_id),
        ("parent_run_id", parent_run_id),
    ):
        if val:
            where.append(f"{col} = {ph}")
            params.append(val)
    if project_id is not None:
        where.append(f"project_id = {ph}")
        params.append(project_id)
    return (" WHERE " + " AND ".join(where) if where else ""), params


class RunUpdate:
    """The run-row changes of one ``append`` batch, folded into a single UPDATE.

    Costs are added one by one in SQL (``cost = ((cost + ?) + ?)``) so the float sum is
    bit-for-bit the one the memory store computes.
    """

    __slots__ = ("set", "started_at", "tokens_in", "tokens_out", "costs")

    def __init__(self) -> None:
        self.set: dict[str, Any] = {}
        self.started_at: float | None = None
        self.tokens_in = 0
        self.tokens_out = 0
        self.costs: list[float] = []

    def add(self, run_ops: dict[str, Any], run_add: dict[str, float]) -> None:
        for k, v in run_ops.items():
            if k == "started_at_if_null":
                if self.started_at is None:
                    self.started_at = v
            elif k != "last_seq":  # assigned by the UPDATE itself
                self.set[k] = dumps_nullable(v) if k == "outputs" else v
        if run_add:
            self.tokens_in += int(run_add["tokens_in"])
            self.tokens_out += int(run_add["tokens_out"])
            self.costs.append(run_add["cost"])

    def sql(
        self, last_seq: int, run_id: str, ph: str, cache: dict[Any, str], expect: int | None = None
    ) -> tuple[str, list[Any]]:
        """The UPDATE; with ``expect`` it only matches while ``last_seq`` is still that value."""
        cols = tuple(sorted(self.set))
        key = ("runs", cols, self.started_at is not None, len(self.costs), expect is None)
        text = cache.get(key)
        if text is None:
            parts = [f"last_seq = {ph}"] + [f"{c} = {ph}" for c in cols]
            if self.started_at is not None:
                parts.append(f"started_at = COALESCE(started_at, {ph})")
            if self.costs:
                cost = "cost"
                for _ in self.costs:
                    cost = f"({cost} + {ph})"
                parts.append(f"tokens_in = tokens_in + {ph}, tokens_out = tokens_out + {ph}, cost = {cost}")
            where = f"id = {ph}" if expect is None else f"id = {ph} AND last_seq = {ph}"
            text = cache[key] = f"UPDATE runs SET {', '.join(parts)} WHERE {where}"
        params = [last_seq, *(self.set[c] for c in cols)]
        if self.started_at is not None:
            params.append(self.started_at)
        if self.costs:
            params += [self.tokens_in, self.tokens_out, *self.costs]
        params.append(run_id)
        if expect is not None:
            params.append(expect)
        return text, params


def upsert_sql(table: str, keys: tuple[str, ...], cols: tuple[str, ...], ph: str) -> str:
    allc = keys + cols
    return (
        f"INSERT INTO {table} ({', '.join(allc)}) VALUES ({', '.join([ph] * len(allc))}) "
        f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {', '.join(f'{c} = excluded.{c}' for c in cols)}"
    )


class AppendPlan:
    """Everything one ``append`` writes, given the run's next sequence number: the events,
    their INSERT parameters, the run UPDATE and the step / attempt / artifact statements."""

    __slots__ = ("events", "rows", "run", "writes")

    def __init__(
        self, run_id: str, events: list[NewEvent], now: float, first_seq: int, ph: str, cache: dict[Any, str]
    ) -> None:
        self.events: list[Event] = []
        self.rows: list[Any] = []  # flat INSERT parameters, ROW_WIDTH per event
        self.run = RunUpdate()
        self.writes: list[tuple[str, list[Any]]] = []
        merged = _MergedProjection()
        seq = first_seq
        for ne in events:
            type_ = str(ne.type)
            p = ne.payload
            version = 1
            if type(p) is not dict:
                if isinstance(p, Payload):
                    version = p.SCHEMA_VERSION
                p = as_dict(p)
            e = Event(run_id, seq, type_, now, ne.message, ne.step_id, ne.unit, ne.attempt, p, None, version)
            payload = _encode(p) if p else "{}"  # serialised once, here
            self.rows.extend(
                (run_id, seq, type_, now, ne.message, ne.step_id, ne.unit, ne.attempt, payload, version)
            )
            ops = project(e)
            self.run.add(ops.run, ops.run_add)
            if ops.step or ops.attempt or ops.attempt_add or ops.artifact:
                merged.add(ops)
            self.events.append(e)
            seq += 1
        if merged.any:
            self.writes.extend(merged.writes(run_id, ph, cache))

    def with_ids(self, ids: list[int]) -> list[Event]:
        # The ids exist only once the rows are inserted. Nobody has seen these events yet,
        # so setting the field past ``frozen`` here is safe and saves building them twice.
        for e, id_ in zip(self.events, ids, strict=True):
            _set(e, "id", id_)
        return self.events


class _MergedProjection:
    """The step / attempt / artifact changes of one append, one statement per row: the
    events of a batch often touch the same attempt and step several times (started,
    model chosen, usage, completed), and only the final values need writing."""

    __slots__ = ("steps", "attempts", "adds", "artifacts", "any")

    def __init__(self) -> None:
        self.steps: dict[str, dict[str, Any]] = {}
        self.attempts: dict[tuple[str, str, int], list[Any]] = {}  # key -> [fields, insert?]
        self.adds: dict[tuple[str, str, int], dict[str, float]] = {}
        self.artifacts: list[dict[str, Any]] = []
        self.any = False

    def add(self, ops: Any) -> None:
        self.any = True
        if ops.step:
            sid, f = ops.step
            cur = self.steps.get(sid)
            if cur is None:
                self.steps[sid] = dict(f)
            else:
                cur.update(f)
        if ops.attempt:
            key, f, insert = ops.attempt
            cur = self.attempts.get(key)
            if cur is None:
                self.attempts[key] = [dict(f), insert]
            else:
                cur[0].update(f)
                if insert is not None:
                    cur[1] = bool(cur[1]) or insert
        if ops.attempt_add:
            key, add = ops.attempt_add
            cur = self.adds.get(key)
            if cur is None:
                self.adds[key] = dict(add)
            else:
                for k, v in add.items():
                    cur[k] = cur.get(k, 0) + v
        if ops.artifact:
            self.artifacts.append(ops.artifact)

    def writes(self, run_id: str, ph: str, cache: dict[Any, str]) -> Iterator[tuple[str, list[Any]]]:
        for sid, f in self.steps.items():
            yield from _projection_writes(run_id, _Ops(step=(sid, f)), ph, cache)
        for key, (f, insert) in self.attempts.items():
            yield from _projection_writes(run_id, _Ops(attempt=(key, f, insert)), ph, cache)
        for key, add in self.adds.items():
            yield from _projection_writes(run_id, _Ops(attempt_add=(key, add)), ph, cache)
        for a in self.artifacts:
            yield from _projection_writes(run_id, _Ops(artifact=a), ph, cache)


class _Ops:
    __slots__ = ("step", "attempt", "attempt_add", "artifact")

    def __init__(
        self, step: Any = None, attempt: Any = None, attempt_add: Any = None, artifact: Any = None
    ) -> None:
        self.step, self.attempt, self.attempt_add, self.artifact = step, attempt, attempt_add, artifact


def _projection_writes(
    run_id: str, ops: Any, ph: str, cache: dict[Any, str]
) -> Iterator[tuple[str, list[Any]]]:
    """The step / attempt / artifact statements for one event's projection ops."""
    if ops.step:
        sid, f = ops.step
        cols = tuple(f)
        key = ("steps", cols)
        sql = cache.get(key) or cache.setdefault(key, upsert_sql("steps", ("run_id", "step_id"), cols, ph))
        yield sql, [run_id, sid, *(dumps_nullable(f[c]) if c == "output" else f[c] for c in cols)]
    if ops.attempt:
        (sid, unit, n), f, insert = ops.attempt
        cols = tuple(f)
        vals = [dumps_nullable(f[c]) if c in ("output", "info") else f[c] for c in cols]
        if insert is not None:
            key = ("attempts", cols)
            sql = cache.get(key) or cache.setdefault(
                key, upsert_sql("attempts", ("run_id", "step_id", "unit", "attempt"), cols, ph)
            )
            yield sql, [run_id, sid, unit, n, *vals]
        else:  # insert=None: only update an attempt that exists (no NOT NULL check on a new row)
            key = ("attempts-update", cols)
            sql = cache.get(key) or cache.setdefault(
                key,
                f"UPDATE attempts SET {', '.join(f'{c} = {ph}' for c in cols)} "
                f"WHERE run_id = {ph} AND step_id = {ph} AND unit = {ph} AND attempt = {ph}",
            )
            yield sql, [*vals, run_id, sid, unit, n]
    if ops.attempt_add:
        (sid, unit, n), add = ops.attempt_add
        yield (
            f"UPDATE attempts SET tokens_in = tokens_in + {ph}, tokens_out = tokens_out + {ph}, cost = cost + {ph} "
            f"WHERE run_id = {ph} AND step_id = {ph} AND unit = {ph} AND attempt = {ph}",
            [int(add["tokens_in"]), int(add["tokens_out"]), add["cost"], run_id, sid, unit, n],
        )
    if ops.artifact:
        a = ops.artifact
        yield (
            f"INSERT INTO artifacts ({ARTIFACT_COLUMNS}) VALUES ({', '.join([ph] * 8)})",
            [
                run_id,
                a["path"],
                a["size"],
                a["sha256"],
                a["step_id"],
                a["attempt"],
                a["created_at"],
                a["mime"],
            ],
        )


EVENT_INSERT_CHUNK = 32  # rows per multi-row INSERT (bounds the statement cache)
ROW_WIDTH = 10  # INSERT parameters per event


def insert_events_sql(
    n: int, ph: str, cache: dict[Any, str], payload_cast: str = "", suffix: str = ""
) -> str:
    key = ("events", n)
    text = cache.get(key)
    if text is None:
        row = "(" + ", ".join([ph] * 8 + [ph + payload_cast, ph]) + ")"
        text = cache[key] = (
            "INSERT INTO events (run_id, seq, type, ts, message, step_id, unit, attempt, payload, schema_version) VALUES "
            + ", ".join([row] * n)
            + suffix
        )
    return text


_INSERT_RUN = f"INSERT INTO runs ({', '.join(RUN_COLUMNS)}) VALUES ({', '.join('?' * len(RUN_COLUMNS))})"
_CLAIM_FREE = "(owner IS NULL OR owner = ? OR COALESCE(lease_expires_at, 0) < ?)"
# the queue scan never hands back a run whose lease is live, not even to its own holder
_SCAN_FREE = "(owner IS NULL OR COALESCE(lease_expires_at, 0) < ?)"
# what the queue scan hands out: queued runs, runs whose process died, parked runs whose
# earliest timer is due
_SCAN_STATUS = "(status IN ('QUEUED', 'RUNNING') OR (status = 'WAITING' AND wake_at <= ?))"


class SqliteStore(SqlBatches, SqlThreads, SqlEvals):
    """Event log and projections in one SQLite file (WAL mode)."""

    local_commit = True  # a commit is a local WAL append: group commit runs on the event loop

    def __init__(self, path: str | Path, *, busy_timeout: float = 10.0) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            p = Path(self.path).expanduser().resolve()
            self.path = str(p)
            try:
                p.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create the directory for the database {p}: {exc}") from exc
        self.url = f"sqlite:///{self.path}"
        self._lock = threading.RLock()
        self._sql_cache: dict[Any, str] = {}
        self._last_seq: dict[str, int] = {}  # run -> last seq this handle committed (a hint)
        try:
            conn = sqlite3.connect(
                self.path,
                timeout=busy_timeout,
                isolation_level=None,
                check_same_thread=False,
                cached_statements=512,
            )
            conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the SQLite database {self.path}: {exc}") from exc
        self._conn: sqlite3.Connection | None = conn
        self._ident = self._file_ident()

    def _file_ident(self) -> tuple[int, int] | None:
        if self.path == ":memory:":
            return None
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_dev, st.st_ino)

    def _check_file(self) -> None:
        """The database file must still be the one this handle opened: writing on after it
        was deleted or replaced would 'succeed' into a file nobody can read any more."""
        if self._ident is None:
            return
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            raise StoreError(
                f"the database file {self.path} was deleted while llmflow was using it; nothing more can be recorded",
                hint="restore the file (or start over); do not delete .llmflow/llmflow.db while runs execute",
            ) from None
        except OSError as exc:
            raise StoreError(f"cannot check the database file {self.path}: {exc}") from None
        if (st.st_dev, st.st_ino) != self._ident:
            raise StoreError(
                f"the database file {self.path} was replaced by another file while llmflow was using it; nothing more can be recorded",
                hint="do not move, copy over or delete .llmflow/llmflow.db while runs execute",
            )

    def __repr__(self) -> str:
        return f"SqliteStore({self.path!r})"

    # plumbing ------------------------------------------------------------------------------
    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"the store {self.url} is closed")
        return self._conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction holding the database write lock (across processes)."""
        with self._lock:
            conn = self._db
            self._check_file()
            try:
                conn.execute("BEGIN IMMEDIATE")  # waits up to busy_timeout for other writers
            except sqlite3.Error as exc:
                raise StoreError(
                    f"cannot write to {self.path}: {exc}", hint="another process holds the database lock"
                ) from exc
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise StoreError(f"write to {self.path} failed: {exc}") from exc
                raise

    def _read(self, sql: str, params: Any = ()) -> list[Any]:
        with self._lock:
            try:
                return self._db.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"read from {self.path} failed: {exc}") from exc

    def _batch_exec(self, sql: str, params: list[Any]) -> int:
        with self._write() as conn:
            return conn.execute(sql, params).rowcount

    def migrate(self) -> None:
        with self._lock:
            try:
                migrations.apply_sqlite(self._db)
            except sqlite3.Error as exc:
                raise StoreError(f"cannot migrate the database {self.path}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # runs ----------------------------------------------------------------------------------
    def _insert_run(self, conn: sqlite3.Connection, run: RunRecord) -> None:
        try:
            conn.execute(_INSERT_RUN, run_params(run))
        except sqlite3.IntegrityError as exc:
            if "UNIQUE" in str(exc):
                raise StoreError(f"run {run.id} already exists") from exc
            raise StoreError(f"cannot create run {run.id}: {exc}") from exc
        self._last_seq[run.id] = 0

    def create_run(self, run: RunRecord, events: list[NewEvent], now: float) -> list[Event]:
        with self._write() as conn:
            self._insert_run(conn, run)
            out = self._append_in_tx(conn, run.id, events, now) if events else []
        if out:
            self._last_seq[run.id] = out[-1].seq
        return out

    def get_run(self, run_id: str) -> RunRecord | None:
        rows = self._read(_RUN_SELECT + " WHERE id = ?", (run_id,))
        return run_from_row(rows[0]) if rows else None

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
        where, params = run_filters(flow, status, batch_id, project_id, parent_run_id, "?", in_batch)
        sql = f"{_RUN_SELECT}{where} ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?"
        return [run_from_row(r) for r in self._read(sql, [*params, limit, offset])]

    def count_runs(
        self,
        *,
        flow: str | None = None,
        status: str | None = None,
        batch_id: str | None = None,
        in_batch: bool | None = None,
    ) -> int:
        where, params = run_filters(flow, status, batch_id, None, None, "?", in_batch)
        return int(self._read(f"SELECT COUNT(*) FROM runs{where}", params)[0][0])

    def update_run(self, run_id: str, **run_fields: Any) -> None:
        check_run_fields(run_fields)
        cols = sorted(run_fields)
        with self._write() as conn:
            if not cols:
                found = conn.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is not None
            else:
                vals = [
                    (dumps_nullable(run_fields[c]) if c == "outputs" else dumps(run_fields[c]))
                    if c in RUN_JSON_COLUMNS
                    else run_fields[c]
                    for c in cols
                ]
                sets = ", ".join(f"{c} = ?" for c in cols)
                found = conn.execute(f"UPDATE runs SET {sets} WHERE id = ?", [*vals, run_id]).rowcount > 0
            if not found:
                raise StoreError(f"no run {run_id}")

    # events --------------------------------------------------------------------------------
    def append(self, run_id: str, events: list[NewEvent], now: float) -> list[Event]:
        return self.append_many([(run_id, events, now)])[0]

    def append_many(self, batch: list[tuple[Any, ...]]) -> list[list[Event]]:
        """Several appends (of any runs) in one transaction: all or none (group commit). An
        item is (run_id, events, now), or (run_id, events, now, run) for a new run written
        with its first events."""
        with self._lock:
            if len(self._last_seq) > 10_000:
                self._last_seq.clear()
            try:
                with self._write() as conn:
                    out = []
                    for item in batch:
                        if len(item) > 3:
                            self._insert_run(conn, item[3])
                        out.append(self._append_in_tx(conn, item[0], item[1], item[2]))
            except BaseException:
                for item in batch:  # rolled back: what we remembered may be wrong now
                    self._last_seq.pop(item[0], None)
                raise
            # committed: remember where each run's log ends
            for item, stored in zip(batch, out, strict=True):
                if stored:
                    self._last_seq[item[0]] = stored[-1].seq
            return out

    def _append_in_tx(
        self, conn: sqlite3.Connection, run_id: str, events: list[NewEvent], now: float
    ) -> list[Event]:
        if not events:
            if conn.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is None:
                raise StoreError(f"no run {run_id}")
            return []
        n, cache = len(events), self._sql_cache
        # Inside the write transaction, so no other process can append meanwhile. The seq we
        # remember from our last append is usually right; the UPDATE checks it (no SELECT),
        # and if another process appended since, we read the real value and plan again.
        known = self._last_seq.get(run_id)
        plan = None
        if known is not None:
            plan = AppendPlan(run_id, events, now, known + 1, "?", cache)
            if conn.execute(*plan.run.sql(known + n, run_id, "?", cache, expect=known)).rowcount != 1:
                plan = None
        if plan is None:
            row = conn.execute("SELECT last_seq FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise StoreError(f"no run {run_id}")
            known = row[0]
            plan = AppendPlan(run_id, events, now, known + 1, "?", cache)
            conn.execute(*plan.run.sql(known + n, run_id, "?", cache))
        ids: list[int] = []
        for i in range(0, n, EVENT_INSERT_CHUNK):
            k = min(EVENT_INSERT_CHUNK, n - i)
            last_id = conn.execute(
                insert_events_sql(k, "?", cache), plan.rows[i * ROW_WIDTH : (i + k) * ROW_WIDTH]
            ).lastrowid
            # We hold the write lock and ids are AUTOINCREMENT: one INSERT's ids are contiguous.
            ids += range(last_id - k + 1, last_id + 1)
        for sql, params in plan.writes:
            conn.execute(sql, params)
        return plan.with_ids(ids)

    def events(self, run_id: str, after_seq: int = 0, limit: int | None = None) -> list[Event]:
        sql = f"SELECT {EVENT_COLUMNS} FROM events WHERE run_id = ? AND seq > ? ORDER BY seq"
        params: list[Any] = [run_id, after_seq]
        if limit:
            sql += " LIMIT ?"
            params.append(limit)
        return [event_from_row(r) for r in self._read(sql, params)]

    def events_since(self, after_id: int, limit: int = 1000) -> list[Event]:
        rows = self._read(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit)
        )
        return [event_from_row(r) for r in rows]

    def wait_for_events(self, run_id: str, after_seq: int, timeout: float) -> list[Event]:
        """Block until ``run_id`` has events after ``after_seq`` (polling every 50 ms) or
        ``timeout`` seconds pass; returns the new events ([] on timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            last = self._read("SELECT last_seq FROM runs WHERE id = ?", (run_id,))
            if last and last[0][0] > after_seq:
                return self.events(run_id, after_seq)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            time.sleep(min(0.05, remaining))

    # projections ---------------------------------------------------------------------------
    def attempts(self, run_id: str, step_id: str | None = None) -> list[AttemptRow]:
        sql = f"SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE run_id = ?"
        params: list[Any] = [run_id]
        if step_id is not None:
            sql += " AND step_id = ?"
            params.append(step_id)
        sql += " ORDER BY COALESCE(started_at, 0), step_id, unit, attempt"
        return [attempt_from_row(r) for r in self._read(sql, params)]

    def artifacts(self, run_id: str) -> list[ArtifactRow]:
        rows = self._read(f"SELECT {ARTIFACT_COLUMNS} FROM artifacts WHERE run_id = ? ORDER BY id", (run_id,))
        return [ArtifactRow(*r) for r in rows]

    def step_rows(self, run_id: str) -> dict[str, dict[str, Any]]:
        rows = self._read(f"SELECT step_id, {', '.join(STEP_FIELDS)} FROM steps WHERE run_id = ?", (run_id,))
        return {r[0]: step_row(r[1:]) for r in rows}

    # controls ------------------------------------------------------------------------------
    def put_control(self, run_id: str, action: str, payload: dict[str, Any], now: float) -> int:
        with self._write() as conn:
            cur = conn.execute(
                "INSERT INTO controls (run_id, action, payload, created_at) VALUES (?, ?, ?, ?)",
                (run_id, action, dumps(payload), now),
            )
            return int(cur.lastrowid or 0)

    def take_controls(self, run_id: str) -> list[Control]:
        # Cheap read first: runners poll this, and an empty mailbox needs no write lock.
        if not self._read(
            "SELECT 1 FROM controls WHERE run_id = ? AND consumed_at IS NULL LIMIT 1", (run_id,)
        ):
            return []
        with self._write() as conn:
            rows = conn.execute(
                "UPDATE controls SET consumed_at = ? WHERE run_id = ? AND consumed_at IS NULL "
                "RETURNING id, run_id, action, payload, created_at",
                (time.time(), run_id),
            ).fetchall()
        return sorted((Control(r[0], r[1], r[2], _loads(r[3]), r[4]) for r in rows), key=lambda c: c.id)

    def runs_with_controls(self) -> set[str]:
        """The runs with a control waiting: one look for every run a process executes
        (the partial index ``controls_pending`` holds only those rows)."""
        return {r[0] for r in self._read("SELECT DISTINCT run_id FROM controls WHERE consumed_at IS NULL")}

    # leases --------------------------------------------------------------------------------
    def claim(
        self, owner: str, now: float, lease_seconds: float, run_id: str | None = None
    ) -> RunRecord | None:
        if run_id is None:
            where = f"{_SCAN_STATUS} AND {_SCAN_FREE} ORDER BY created_at, id LIMIT 1"
            params: tuple[Any, ...] = (now, now)
        else:
            where = f"id = ? AND status NOT IN ('COMPLETED', 'FAILED', 'CANCELED') AND {_CLAIM_FREE}"
            params = (run_id, owner, now)
        sql = f"SELECT id FROM runs WHERE {where}"
        if not self._read(sql, params):  # nothing to claim: skip the write lock
            return None
        with self._write() as conn:
            row = conn.execute(sql, params).fetchone()  # again, under the lock
            if row is None:
                return None
            conn.execute(
                "UPDATE runs SET owner = ?, lease_expires_at = ? WHERE id = ?",
                (owner, now + lease_seconds, row[0]),
            )
            return run_from_row(conn.execute(_RUN_SELECT + " WHERE id = ?", (row[0],)).fetchone())

    def claim_many(self, owner: str, now: float, lease_seconds: float, limit: int) -> list[RunRecord]:
        """Up to ``limit`` runs of the queue scan at once, oldest first (one transaction)."""
        sql = f"SELECT id FROM runs WHERE {_SCAN_STATUS} AND {_SCAN_FREE} ORDER BY created_at, id LIMIT ?"
        params = (now, now, limit)
        if limit < 1 or not self._read(sql, params):  # nothing to claim: skip the write lock
            return []
        with self._write() as conn:
            ids = [r[0] for r in conn.execute(sql, params).fetchall()]  # again, under the lock
            for rid in ids:
                conn.execute(
                    "UPDATE runs SET owner = ?, lease_expires_at = ? WHERE id = ?",
                    (owner, now + lease_seconds, rid),
                )
            rows = [conn.execute(_RUN_SELECT + " WHERE id = ?", (rid,)).fetchone() for rid in ids]
        return [run_from_row(r) for r in rows]

    def heartbeat(self, run_id: str, owner: str, now: float, lease_seconds: float) -> bool:
        with self._write() as conn:
            cur = conn.execute(
                "UPDATE runs SET lease_expires_at = ? WHERE id = ? AND owner = ?",
                (now + lease_seconds, run_id, owner),
            )
            return cur.rowcount > 0

    def release(self, run_id: str, owner: str) -> None:
        with self._write() as conn:
            conn.execute(
                "UPDATE runs SET owner = NULL, lease_expires_at = NULL WHERE id = ? AND owner = ?",
                (run_id, owner),
            )

    # projects ------------------------------------------------------------------------------
    def create_project(self, name: str, local_path: str | None, now: float) -> Project:
        with self._write() as conn:
            try:
                cur = conn.execute(
                    "INSERT INTO projects (name, local_path, created_at) VALUES (?, ?, ?)",
                    (name, local_path, now),
                )
            except sqlite3.IntegrityError as exc:
                raise StoreError(f"a project named {name!r} already exists") from exc
            return Project(int(cur.lastrowid or 0), name, local_path, now)

    def list_projects(self) -> list[Project]:
        return [
            Project(*r)
            for r in self._read("SELECT id, name, local_path, created_at FROM projects ORDER BY id")
        ]

    def get_project(self, project_id: int) -> Project | None:
        rows = self._read("SELECT id, name, local_path, created_at FROM projects WHERE id = ?", (project_id,))
        return Project(*rows[0]) if rows else None
