"""The Postgres store (psycopg 3): the same schema and semantics as the SQLite store.

``append`` locks the run row (``SELECT ... FOR UPDATE``) to assign sequence numbers, then
takes a transaction-scoped advisory lock before inserting so that event ids (the store-wide
cursor read by ``events_since``) become visible in id order: without it a reader could see
id 11 committed before id 10 and skip 10 for good. After appending, the store sends
``NOTIFY llmflow_events, '<run_id>:<last_seq>'``; ``wait_for_events`` listens for it.

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
    RUN_COLUMNS,
    RUN_JSON_COLUMNS,
    STEP_FIELDS,
    AppendPlan,
    attempt_from_row,
    check_run_fields,
    dumps,
    dumps_nullable,
    event_from_row,
    insert_events_sql,
    run_filters,
    run_from_row,
    run_params,
    step_row,
)
from llmflow.store.threads import SqlThreads

CHANNEL = "llmflow_events"
INSTALL_HINT = "pip install 'llmflow[postgres]'"
_EVENTS_LOCK = 0x6C6D6576  # advisory lock key serialising event-id assignment ("lmev")
_RUN_SELECT = "SELECT " + ", ".join(RUN_COLUMNS) + " FROM runs"
_RUN_RETURNING = " RETURNING " + ", ".join(RUN_COLUMNS)
_JSON_CASTS = {c: "%s::jsonb" for c in RUN_JSON_COLUMNS}
_INSERT_RUN = f"INSERT INTO runs ({', '.join(RUN_COLUMNS)}) VALUES ({', '.join(_JSON_CASTS.get(c, '%s') for c in RUN_COLUMNS)})"
_CLAIM_FREE = "(owner IS NULL OR owner = %s OR COALESCE(lease_expires_at, 0) < %s)"
# the queue scan never hands back a run whose lease is live, not even to its own holder
_SCAN_FREE = "(owner IS NULL OR COALESCE(lease_expires_at, 0) < %s)"


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
        with self._lock:
            try:
                return self._db().execute(sql, params).fetchall()
            except self._pg.Error as exc:
                raise StoreError(f"Postgres store read failed: {exc}") from exc

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

    # runs ----------------------------------------------------------------------------------
    def create_run(self, run: RunRecord, events: list[NewEvent], now: float) -> list[Event]:
        def tx(conn: Any) -> list[Event]:
            cur = conn.execute(f"{_INSERT_RUN} ON CONFLICT (id) DO NOTHING RETURNING id", run_params(run))
            if cur.fetchone() is None:
                raise StoreError(f"run {run.id} already exists")
            return self._append_in_tx(conn, run.id, events, now) if events else []

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
        self, *, flow: str | None = None, status: str | None = None, batch_id: str | None = None, in_batch: bool | None = None
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
        return self._run(self._append_in_tx, run_id, events, now)

    def _append_in_tx(self, conn: Any, run_id: str, events: list[NewEvent], now: float) -> list[Event]:
        # The row lock makes concurrent appenders to one run take turns until commit.
        row = conn.execute("SELECT last_seq FROM runs WHERE id = %s FOR UPDATE", (run_id,)).fetchone()
        if row is None:
            raise StoreError(f"no run {run_id}")
        if not events:
            return []
        cache = self._sql_cache
        last = row[0] + len(events)
        plan = AppendPlan(run_id, events, now, row[0] + 1, "%s", cache)
        conn.execute(*plan.run.sql(last, run_id, "%s", cache))
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_EVENTS_LOCK,))
        by_seq: dict[int, int] = {}
        for i in range(0, len(events), EVENT_INSERT_CHUNK):
            k = min(EVENT_INSERT_CHUNK, len(events) - i)
            sql = insert_events_sql(k, "%s", cache, "::jsonb", " RETURNING seq, id")
            by_seq.update(conn.execute(sql, plan.rows[i * 9 : (i + k) * 9]).fetchall())
        for sql, params in plan.writes:
            conn.execute(sql, params)  # str params are untyped: the server casts JSON text
        conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, f"{run_id}:{last}"))  # delivered at commit
        return plan.with_ids([by_seq[e.seq] for e in plan.events])

    def events(self, run_id: str, after_seq: int = 0, limit: int | None = None) -> list[Event]:
        sql = f"SELECT {EVENT_COLUMNS} FROM events WHERE run_id = %s AND seq > %s ORDER BY seq"
        params: list[Any] = [run_id, after_seq]
        if limit:
            sql += " LIMIT %s"
            params.append(limit)
        return [event_from_row(r) for r in self._read(sql, params)]

    def events_since(self, after_id: int, limit: int = 1000) -> list[Event]:
        rows = self._read(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE id > %s ORDER BY id LIMIT %s", (after_id, limit)
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

    # leases --------------------------------------------------------------------------------
    def claim(
        self, owner: str, now: float, lease_seconds: float, run_id: str | None = None
    ) -> RunRecord | None:
        if run_id is None:
            target = (
                f"(SELECT id FROM runs WHERE status IN ('QUEUED', 'RUNNING') AND {_SCAN_FREE} "
                'ORDER BY created_at, id COLLATE "C" LIMIT 1 FOR UPDATE SKIP LOCKED)'
            )
            params: tuple[Any, ...] = (owner, now + lease_seconds, now)
            cond = f"id = {target}"
        else:
            # Plain UPDATE: it waits for a concurrent claimer, then re-checks the condition.
            cond = f"id = %s AND status NOT IN ('COMPLETED', 'FAILED', 'CANCELED') AND {_CLAIM_FREE}"
            params = (owner, now + lease_seconds, run_id, owner, now)
        sql = f"UPDATE runs SET owner = %s, lease_expires_at = %s WHERE {cond}{_RUN_RETURNING}"
        row = self._run(lambda conn: conn.execute(sql, params).fetchone())
        return run_from_row(row) if row else None

    def heartbeat(self, run_id: str, owner: str, now: float, lease_seconds: float) -> bool:
        n = self._run(
            lambda conn: (
                conn.execute(
                    "UPDATE runs SET lease_expires_at = %s WHERE id = %s AND owner = %s",
                    (now + lease_seconds, run_id, owner),
                ).rowcount
            )
        )
        return n > 0

    def release(self, run_id: str, owner: str) -> None:
        self._run(
            lambda conn: conn.execute(
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
