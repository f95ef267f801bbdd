"""The Postgres store (psycopg 3): the same schema and semantics as the SQLite store.

Appends take no database-wide lock. ``append`` (and ``append_many``, the group commit of
one process) locks only the runs it appends to (a per-run advisory lock, then the run row
``FOR UPDATE``: their sequence numbers are contiguous and gap-free), and gives every event
a store-wide id made of the appending transaction's id and a counter:
``id = xid << 20 | n``; the transaction gets its id only once it holds its runs, so within a
run ids grow with ``seq``.

The "events since" cursor (``events_since``, the global SSE stream) reads in commit-safe
order with transaction snapshots: it returns only events whose transaction id is below the
snapshot's ``xmin`` - every transaction below it has finished, and every transaction that
has not finished, or has not started, has an id at or above it, so no event can later
appear below the cursor. Ids are therefore never skipped, with no lock on the write path.
Why this design and not per-run cursors plus NOTIFY: the cursor stays one integer (what
the API and SSE clients already hold, and JS-safe below 2^53), reads stay one indexed
range scan, and per-run followers keep their gap-free per-run ``seq``. The price: a
transaction left open anywhere in the cluster holds the global stream back (never the
per-run streams) until it ends. After appending, the store sends ``NOTIFY llmflow_events,
'<run_id>:<last_seq>'`` per run; ``wait_for_events`` listens for it.

psycopg is imported when a store is opened, never when this module is imported.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from llmflow.engine.events import Event, NewEvent
from llmflow.errors import StoreError
from llmflow.store import migrations
from llmflow.store.base import ArtifactRow, AttemptRow, Control, Project, RunRecord
from llmflow.store.batches import SqlBatches
from llmflow.store.evals import SqlEvals
from llmflow.store.sqlite import (
    ARTIFACT_COLUMNS,
    ATTEMPT_COLUMNS,
    EVENT_COLUMNS,
    EVENT_INSERT_CHUNK,
    ROW_WIDTH,
    RUN_COLUMNS,
    RUN_JSON_COLUMNS,
    STEP_FIELDS,
    AppendPlan,
    attempt_from_row,
    check_run_fields,
    dumps,
    dumps_nullable,
    event_from_row,
    run_filters,
    run_from_row,
    run_params,
    step_row,
)
from llmflow.store.threads import SqlThreads

CHANNEL = "llmflow_events"
INSTALL_HINT = "pip install 'llmflow[postgres]'"
MAX_READERS = 3  # reader connections per store handle (beyond: reads share the main one)
ID_SHIFT = 20  # event id = transaction id << ID_SHIFT | counter (a million events per transaction)
_XID = "pg_current_xact_id()::text::bigint"
_HORIZON = f"(pg_snapshot_xmin(pg_current_snapshot())::text::bigint << {ID_SHIFT})"
_RUN_SELECT = "SELECT " + ", ".join(RUN_COLUMNS) + " FROM runs"
_RUN_RETURNING = " RETURNING " + ", ".join(RUN_COLUMNS)
_JSON_CASTS = {c: "%s::jsonb" for c in RUN_JSON_COLUMNS}
_INSERT_RUN = f"INSERT INTO runs ({', '.join(RUN_COLUMNS)}) VALUES ({', '.join(_JSON_CASTS.get(c, '%s') for c in RUN_COLUMNS)})"
_CLAIM_FREE = "(owner IS NULL OR owner = %s OR COALESCE(lease_expires_at, 0) < %s)"
# the queue scan never hands back a run whose lease is live, not even to its own holder
_SCAN_FREE = "(owner IS NULL OR COALESCE(lease_expires_at, 0) < %s)"
_SCAN_STATUS = "(status IN ('QUEUED', 'RUNNING') OR (status = 'WAITING' AND wake_at <= %s))"


def _import_psycopg() -> Any:
    try:
        import psycopg
    except ImportError as exc:
        raise StoreError(
            f"the Postgres store needs psycopg 3, which is not installed; install it with: {INSTALL_HINT}",
            hint=INSTALL_HINT,
        ) from exc
    return psycopg


class PostgresStore(SqlBatches, SqlThreads, SqlEvals):
    """Event log and projections in a Postgres database (tables in the search_path schema)."""

    def __init__(self, url: str, *, connect_timeout: float = 10.0) -> None:
        self._pg = _import_psycopg()
        self.url = url
        self._connect_timeout = connect_timeout
        self._lock = threading.RLock()
        self._sql_cache: dict[Any, str] = {}
        self._listeners: list[Any] = []  # idle LISTEN connections for wait_for_events
        self._listeners_lock = threading.Lock()
        self._readers: list[Any] = []  # idle autocommit connections for reads (see _read)
        self._n_readers = 0
        self._readers_lock = threading.Lock()
        self._closed = False
        self._conn: Any = self._connect()

    def __repr__(self) -> str:
        return "PostgresStore(...)"  # the URL may carry a password

    # plumbing ------------------------------------------------------------------------------
    def _connect(self) -> Any:
        try:
            return self._pg.connect(
                self.url, autocommit=True, connect_timeout=max(1, int(self._connect_timeout))
            )
        except self._pg.Error as exc:
            raise StoreError(f"cannot connect to the Postgres store: {exc}".strip()) from exc

    def _db(self) -> Any:
        if self._closed:
            raise StoreError("the Postgres store is closed")
        if self._conn.closed:  # the server dropped us: reconnect once
            self._conn = self._connect()
        return self._conn

    def _run(self, fn: Any, *args: Any) -> Any:
        """Run ``fn(conn, *args)`` in one transaction; driver errors become StoreError."""
        with self._lock:
            conn = self._db()
            try:
                with conn.transaction():
                    return fn(conn, *args)
            except self._pg.Error as exc:
                raise StoreError(f"Postgres store operation failed: {exc}") from exc

    def _read(self, sql: str, params: Any = ()) -> list[Any]:
        """One read statement (autocommit), on an idle reader connection when there is one:
        reads never wait behind the writer's commits on the main connection."""
        conn = self._reader()
        if conn is None:
            with self._lock:
                try:
                    return self._db().execute(sql, params).fetchall()
                except self._pg.Error as exc:
                    raise StoreError(f"Postgres store read failed: {exc}") from exc
        try:
            rows = conn.execute(sql, params).fetchall()
        except self._pg.Error as exc:
            conn.close()
            raise StoreError(f"Postgres store read failed: {exc}") from exc
        finally:
            self._give_reader(conn)
        return rows

    def _reader(self) -> Any:
        with self._readers_lock:
            if self._closed:
                raise StoreError("the Postgres store is closed")
            if self._readers:
                return self._readers.pop()
            if self._n_readers >= MAX_READERS:
                return None
            self._n_readers += 1
        try:
            return self._connect()
        except StoreError:
            with self._readers_lock:
                self._n_readers -= 1
            return None

    def _give_reader(self, conn: Any) -> None:
        with self._readers_lock:
            if self._closed or conn.closed:
                self._n_readers -= 1
                conn.close()
            else:
                self._readers.append(conn)

    _ph = "%s"
    _json_cast = "::jsonb"

    def _batch_exec(self, sql: str, params: list[Any]) -> int:
        return self._run(lambda conn: conn.execute(sql, params).rowcount)

    def migrate(self) -> None:
        with self._lock:
            try:
                migrations.apply_postgres(self._db())
            except self._pg.Error as exc:
                raise StoreError(f"cannot migrate the Postgres store: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._conn.close()
        with self._listeners_lock:
            for c in self._listeners:
                c.close()
            self._listeners.clear()
        with self._readers_lock:
            for c in self._readers:
                c.close()
            self._readers.clear()

    # runs ----------------------------------------------------------------------------------
    def create_run(self, run: RunRecord, events: list[NewEvent], now: float) -> list[Event]:
        def tx(conn: Any) -> list[Event]:
            cur = conn.execute(f"{_INSERT_RUN} ON CONFLICT (id) DO NOTHING RETURNING id", run_params(run))
            if cur.fetchone() is None:
                raise StoreError(f"run {run.id} already exists")
            out = self._append_in_tx(conn, run.id, events, now) if events else []
            if out:
                conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, f"{run.id}:{out[-1].seq}"))
            return out

        return self._run(tx)

    def get_run(self, run_id: str) -> RunRecord | None:
        rows = self._read(_RUN_SELECT + " WHERE id = %s", (run_id,))
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
        where, params = run_filters(flow, status, batch_id, project_id, parent_run_id, "%s", in_batch)
        # COLLATE "C": order ids by code point, as Python (and the other stores) do
        sql = f'{_RUN_SELECT}{where} ORDER BY created_at DESC, id COLLATE "C" DESC LIMIT %s OFFSET %s'
        return [run_from_row(r) for r in self._read(sql, [*params, limit, offset])]

    def count_runs(
        self,
        *,
        flow: str | None = None,
        status: str | None = None,
        batch_id: str | None = None,
        in_batch: bool | None = None,
    ) -> int:
        where, params = run_filters(flow, status, batch_id, None, None, "%s", in_batch)
        return int(self._read(f"SELECT COUNT(*) FROM runs{where}", params)[0][0])

    def update_run(self, run_id: str, **run_fields: Any) -> None:
        check_run_fields(run_fields)
        cols = sorted(run_fields)

        def tx(conn: Any) -> None:
            if not cols:
                found = conn.execute("SELECT 1 FROM runs WHERE id = %s", (run_id,)).fetchone() is not None
            else:
                vals = [
                    (dumps_nullable(run_fields[c]) if c == "outputs" else dumps(run_fields[c]))
                    if c in RUN_JSON_COLUMNS
                    else run_fields[c]
                    for c in cols
                ]
                sets = ", ".join(f"{c} = {_JSON_CASTS.get(c, '%s')}" for c in cols)
                found = conn.execute(f"UPDATE runs SET {sets} WHERE id = %s", [*vals, run_id]).rowcount > 0
            if not found:
                raise StoreError(f"no run {run_id}")

        self._run(tx)

    # events --------------------------------------------------------------------------------
    def append(self, run_id: str, events: list[NewEvent], now: float) -> list[Event]:
        return self.append_many([(run_id, events, now)])[0]

    def append_many(self, batch: list[tuple[Any, ...]]) -> list[list[Event]]:
        """Several appends (of any runs) in one transaction: all or none (group commit). An
        item is (run_id, events, now), or (run_id, events, now, run) for a new run written
        with its first events.

        Two round trips whatever the batch size (psycopg pipeline mode): one inserts the new
        runs, takes the runs' locks and reads their last seq and the transaction id, the
        other writes every run update, every event and every projection row, and the
        notifications."""
        creates = [it[3] for it in batch if len(it) > 3]
        batch = [(it[0], it[1], it[2]) for it in batch]

        def tx(conn: Any) -> list[list[Event]]:
            cache = self._sql_cache
            run_ids = list(dict.fromkeys(r for r, _, _ in batch))
            # per-run locks first, before the transaction has an id: a run's appenders take
            # turns, and each gets its transaction id only once it holds the run - so within
            # a run, event ids grow with seq (sorted: no cycle between two batches)
            keys = sorted({_run_lock_key(r) for r, e, _ in batch if e})
            with conn.pipeline():
                if keys:
                    conn.execute("SELECT pg_advisory_xact_lock(k) FROM unnest(%s::bigint[]) AS k", (keys,))
                # new runs after the locks: inserting gives the transaction its id
                inserted = [
                    conn.execute(f"{_INSERT_RUN} ON CONFLICT (id) DO NOTHING RETURNING id", run_params(run))
                    for run in creates
                ]
                rows = conn.execute("SELECT id, last_seq FROM runs WHERE id = ANY(%s) FOR UPDATE", (run_ids,))
                xid_cur = conn.execute(f"SELECT {_XID}")
                last = dict(rows.fetchall())
                xid = int(xid_cur.fetchone()[0])
            for run, cur in zip(creates, inserted, strict=True):
                if cur.fetchone() is None:
                    raise StoreError(f"run {run.id} already exists")
            for r in run_ids:
                if r not in last:
                    raise StoreError(f"no run {r}")
            next_id = (xid << ID_SHIFT) + 1
            out: list[list[Event]] = []
            statements: list[tuple[str, list[Any]]] = []
            event_rows: list[list[Any]] = []
            notes: dict[str, int] = {}
            for run_id, events, now in batch:
                if not events:
                    out.append([])
                    continue
                first_seq = last[run_id] + 1
                last[run_id] += len(events)
                plan = AppendPlan(run_id, events, now, first_seq, "%s", cache)
                statements.append(plan.run.sql(last[run_id], run_id, "%s", cache))
                ids = list(range(next_id, next_id + len(events)))
                next_id += len(events)
                for j, id_ in enumerate(ids):
                    event_rows.append([id_, *plan.rows[j * ROW_WIDTH : (j + 1) * ROW_WIDTH]])
                statements.extend(plan.writes)
                notes[run_id] = last[run_id]
                out.append(plan.with_ids(ids))
            if next_id - (xid << ID_SHIFT) >= 1 << ID_SHIFT:
                raise StoreError(f"one transaction may append at most {(1 << ID_SHIFT) - 1} events")
            with conn.pipeline():
                for sql, params in statements[: len(statements)]:
                    if sql.startswith("UPDATE runs"):
                        conn.execute(sql, params)
                for i in range(0, len(event_rows), EVENT_INSERT_CHUNK):
                    chunk = event_rows[i : i + EVENT_INSERT_CHUNK]
                    conn.execute(_insert_with_ids(len(chunk), cache), [v for row in chunk for v in row])
                for sql, params in statements:
                    if not sql.startswith("UPDATE runs"):
                        conn.execute(sql, params)  # str params are untyped: the server casts JSON text
                for run_id, seq in notes.items():
                    conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, f"{run_id}:{seq}"))  # at commit
            return out

        return self._run(tx)

    def _append_in_tx(
        self, conn: Any, run_id: str, events: list[NewEvent], now: float, ids: _IdSource | None = None
    ) -> list[Event]:
        # The row lock makes concurrent appenders to one run take turns until commit.
        row = conn.execute("SELECT last_seq FROM runs WHERE id = %s FOR UPDATE", (run_id,)).fetchone()
        if row is None:
            raise StoreError(f"no run {run_id}")
        if not events:
            return []
        ids = ids or _IdSource(conn)
        cache = self._sql_cache
        last = row[0] + len(events)
        plan = AppendPlan(run_id, events, now, row[0] + 1, "%s", cache)
        conn.execute(*plan.run.sql(last, run_id, "%s", cache))
        first_id = ids.take(len(events))
        rows = plan.rows
        for i in range(0, len(events), EVENT_INSERT_CHUNK):
            k = min(EVENT_INSERT_CHUNK, len(events) - i)
            params: list[Any] = []
            for j in range(i, i + k):
                params.append(first_id + j)
                params.extend(rows[j * ROW_WIDTH : (j + 1) * ROW_WIDTH])
            conn.execute(_insert_with_ids(k, cache), params)
        for sql, params in plan.writes:
            conn.execute(sql, params)  # str params are untyped: the server casts JSON text
        return plan.with_ids([first_id + j for j in range(len(events))])

    def events(self, run_id: str, after_seq: int = 0, limit: int | None = None) -> list[Event]:
        sql = f"SELECT {EVENT_COLUMNS} FROM events WHERE run_id = %s AND seq > %s ORDER BY seq"
        params: list[Any] = [run_id, after_seq]
        if limit:
            sql += " LIMIT %s"
            params.append(limit)
        return [event_from_row(r) for r in self._read(sql, params)]

    def events_since(self, after_id: int, limit: int = 1000) -> list[Event]:
        # commit-safe: only ids below the snapshot's horizon (see the module docstring)
        rows = self._read(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE id > %s AND id < {_HORIZON} ORDER BY id LIMIT %s",
            (after_id, limit),
        )
        return [event_from_row(r) for r in rows]

    def wait_for_events(self, run_id: str, after_seq: int, timeout: float) -> list[Event]:
        """Block until ``run_id`` has events after ``after_seq`` (LISTEN/NOTIFY) or ``timeout``
        seconds pass; returns the new events ([] on timeout)."""
        deadline = time.monotonic() + timeout
        listener = self._take_listener()
        try:
            while True:
                # LISTEN is already active, so an append committed after this read still
                # wakes us: no lost wake-up between the check and the wait.
                found = self.events(run_id, after_seq)
                remaining = deadline - time.monotonic()
                if found or remaining <= 0:
                    return found
                try:
                    for note in listener.notifies(timeout=remaining):
                        rid, _, last = note.payload.rpartition(":")
                        if rid == run_id and last.isdigit() and int(last) > after_seq:
                            break
                except self._pg.Error as exc:
                    listener.close()
                    raise StoreError(f"waiting for events of run {run_id} failed: {exc}") from exc
        finally:
            self._give_back_listener(listener)

    def _take_listener(self) -> Any:
        with self._listeners_lock:
            if self._closed:
                raise StoreError("the Postgres store is closed")
            pooled = self._listeners.pop() if self._listeners else None
        if pooled is not None:
            try:
                pooled.execute(f"LISTEN {CHANNEL}")
                return pooled
            except self._pg.Error:  # went stale while idle: use a fresh one
                pooled.close()
        conn = self._connect()
        try:
            conn.execute(f"LISTEN {CHANNEL}")
        except self._pg.Error as exc:
            conn.close()
            raise StoreError(f"cannot listen for events: {exc}") from exc
        return conn

    def _give_back_listener(self, conn: Any) -> None:
        # Idle connections must not stay subscribed: a listener that never reads holds
        # back the server's notification queue for everyone.
        try:
            if not conn.closed:
                conn.execute("UNLISTEN *")
        except self._pg.Error:
            conn.close()
        with self._listeners_lock:
            if self._closed or conn.closed or len(self._listeners) >= 4:
                conn.close()
            else:
                self._listeners.append(conn)

    # projections ---------------------------------------------------------------------------
    def attempts(self, run_id: str, step_id: str | None = None) -> list[AttemptRow]:
        # output::text: psycopg decodes JSONB, so a JSON string output would come back as a
        # bare str and be decoded a second time by attempt_from_row; text keeps it JSON
        sql = f"SELECT {ATTEMPT_COLUMNS.replace('output,', 'output::text,')} FROM attempts WHERE run_id = %s"
        params: list[Any] = [run_id]
        if step_id is not None:
            sql += " AND step_id = %s"
            params.append(step_id)
        sql += ' ORDER BY COALESCE(started_at, 0), step_id COLLATE "C", unit COLLATE "C", attempt'
        return [attempt_from_row(r) for r in self._read(sql, params)]

    def artifacts(self, run_id: str) -> list[ArtifactRow]:
        rows = self._read(
            f"SELECT {ARTIFACT_COLUMNS} FROM artifacts WHERE run_id = %s ORDER BY id", (run_id,)
        )
        return [ArtifactRow(*r) for r in rows]

    def step_rows(self, run_id: str) -> dict[str, dict[str, Any]]:
        cols = ", ".join("output::text" if c == "output" else c for c in STEP_FIELDS)  # as in attempts()
        rows = self._read(f"SELECT step_id, {cols} FROM steps WHERE run_id = %s", (run_id,))
        return {r[0]: step_row(r[1:]) for r in rows}

    # controls ------------------------------------------------------------------------------
    def put_control(self, run_id: str, action: str, payload: dict[str, Any], now: float) -> int:
        rows = self._run(
            lambda conn: conn.execute(
                "INSERT INTO controls (run_id, action, payload, created_at) VALUES (%s, %s, %s::jsonb, %s) RETURNING id",
                (run_id, action, dumps(payload), now),
            ).fetchone()
        )
        return int(rows[0])

    def take_controls(self, run_id: str) -> list[Control]:
        # A concurrent taker blocks on the row locks, then re-checks consumed_at: each
        # control is handed out once.
        rows = self._run(
            lambda conn: conn.execute(
                "UPDATE controls SET consumed_at = %s WHERE run_id = %s AND consumed_at IS NULL "
                "RETURNING id, run_id, action, payload, created_at",
                (time.time(), run_id),
            ).fetchall()
        )
        return sorted((Control(*r) for r in rows), key=lambda c: c.id)

    def runs_with_controls(self) -> set[str]:
        """The runs with a control waiting: one look for every run a process executes
        (the partial index ``controls_pending`` holds only those rows)."""
        return {r[0] for r in self._read("SELECT DISTINCT run_id FROM controls WHERE consumed_at IS NULL")}

    # leases --------------------------------------------------------------------------------
    def claim(
        self, owner: str, now: float, lease_seconds: float, run_id: str | None = None
    ) -> RunRecord | None:
        if run_id is None:
            target = (
                f"(SELECT id FROM runs WHERE {_SCAN_STATUS} AND {_SCAN_FREE} "
                'ORDER BY created_at, id COLLATE "C" LIMIT 1 FOR UPDATE SKIP LOCKED)'
            )
            params: tuple[Any, ...] = (owner, now + lease_seconds, now, now)
            cond = f"id = {target}"
        else:
            # Plain UPDATE: it waits for a concurrent claimer, then re-checks the condition.
            cond = f"id = %s AND status NOT IN ('COMPLETED', 'FAILED', 'CANCELED') AND {_CLAIM_FREE}"
            params = (owner, now + lease_seconds, run_id, owner, now)
        sql = f"UPDATE runs SET owner = %s, lease_expires_at = %s WHERE {cond}{_RUN_RETURNING}"
        row = self._run(lambda conn: _lease_write(conn).execute(sql, params).fetchone())
        return run_from_row(row) if row else None

    def claim_many(self, owner: str, now: float, lease_seconds: float, limit: int) -> list[RunRecord]:
        """Up to ``limit`` runs of the queue scan in one statement (``FOR UPDATE SKIP
        LOCKED``: concurrent claimers take different runs), oldest first."""
        if limit < 1:
            return []
        sql = (
            f"UPDATE runs SET owner = %s, lease_expires_at = %s WHERE id IN (SELECT id FROM runs WHERE {_SCAN_STATUS} AND {_SCAN_FREE} "
            f'ORDER BY created_at, id COLLATE "C" LIMIT %s FOR UPDATE SKIP LOCKED){_RUN_RETURNING}'
        )
        rows = self._run(
            lambda conn: (
                _lease_write(conn).execute(sql, (owner, now + lease_seconds, now, now, limit)).fetchall()
            )
        )
        return sorted((run_from_row(r) for r in rows), key=lambda r: (r.created_at, r.id.encode()))

    def heartbeat(self, run_id: str, owner: str, now: float, lease_seconds: float) -> bool:
        n = self._run(
            lambda conn: (
                _lease_write(conn)
                .execute(
                    "UPDATE runs SET lease_expires_at = %s WHERE id = %s AND owner = %s",
                    (now + lease_seconds, run_id, owner),
                )
                .rowcount
            )
        )
        return n > 0

    def release(self, run_id: str, owner: str) -> None:
        self._run(
            lambda conn: _lease_write(conn).execute(
                "UPDATE runs SET owner = NULL, lease_expires_at = NULL WHERE id = %s AND owner = %s",
                (run_id, owner),
            )
        )

    # projects ------------------------------------------------------------------------------
    def create_project(self, name: str, local_path: str | None, now: float) -> Project:
        row = self._run(
            lambda conn: conn.execute(
                "INSERT INTO projects (name, local_path, created_at) VALUES (%s, %s, %s) "
                "ON CONFLICT (name) DO NOTHING RETURNING id",
                (name, local_path, now),
            ).fetchone()
        )
        if row is None:
            raise StoreError(f"a project named {name!r} already exists")
        return Project(int(row[0]), name, local_path, now)

    def list_projects(self) -> list[Project]:
        return [
            Project(*r)
            for r in self._read("SELECT id, name, local_path, created_at FROM projects ORDER BY id")
        ]

    def get_project(self, project_id: int) -> Project | None:
        rows = self._read(
            "SELECT id, name, local_path, created_at FROM projects WHERE id = %s", (project_id,)
        )
        return Project(*rows[0]) if rows else None


def _lease_write(conn: Any) -> Any:
    """A lease change (claim, heartbeat, release) commits without waiting for the WAL flush:
    it is flushed with the next durable commit, and the run's first append is one - no
    event is ever written under a claim that a crash could undo. A claim a crash loses
    leaves the run queued, as if never claimed."""
    conn.execute("SET LOCAL synchronous_commit = off")
    return conn


class _IdSource:
    """Event ids of one transaction: its transaction id shifted, then a counter."""

    __slots__ = ("conn", "base", "n")

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.base: int | None = None
        self.n = 0

    def take(self, k: int) -> int:
        if self.base is None:
            self.base = int(self.conn.execute(f"SELECT {_XID}").fetchone()[0]) << ID_SHIFT
        if self.n + k >= 1 << ID_SHIFT:
            raise StoreError(f"one transaction may append at most {(1 << ID_SHIFT) - 1} events")
        first = self.base + self.n + 1
        self.n += k
        return first


def _insert_with_ids(n: int, cache: dict[Any, str]) -> str:
    key = ("events-ids", n)
    text = cache.get(key)
    if text is None:
        row = "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s)"
        text = cache[key] = (
            "INSERT INTO events (id, run_id, seq, type, ts, message, step_id, unit, attempt, payload, schema_version) VALUES "
            + ", ".join([row] * n)
        )
    return text


def _run_lock_key(run_id: str) -> int:
    import hashlib

    return int.from_bytes(hashlib.blake2b(run_id.encode(), digest_size=8).digest(), "big", signed=True)
