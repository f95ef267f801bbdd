"""One SQL store under two dialects: what SQLite and Postgres share.

:class:`SqlStore` holds every query whose text differs between the two only by a
:class:`Dialect` detail (the placeholder, a JSON cast, a collation, a JSON column read as
text, the "events since" horizon): run reads and updates, the spec records, events,
projections, controls, leases and projects (rows map to records in
:mod:`llmflow.store.rows`; what an append writes is built by :mod:`llmflow.store.sqlplan`).
Each backend keeps only what truly differs: its connections and transactions, ``append``
(SQLite: the database write lock; Postgres: per-run locks and transaction-id event ids),
claims (Postgres: ``FOR UPDATE SKIP LOCKED``) and waiting for events (polling /
LISTEN-NOTIFY).

Spec records live in the ``specs`` table, keyed by their fingerprint (a hash of the
record's JSON), and runs reference it by ``spec_id``: the run row stays a few hundred
bytes, so the UPDATE every append makes of it does not rewrite kilobytes of provenance.
The key is the record's own hash, not the flow's ``fingerprint``: two runs of one flow can
carry different records (another source path, other overrides). A handle decodes each
spec once (records are read-only, as the memory store's are).

Hand-written SQL rather than SQLAlchemy Core: the append path is a few cached statements
per transaction, and a query-building layer would cost speed there for no gain.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from llmflow.engine.events import Event, NewEvent
from llmflow.errors import StoreError
from llmflow.store.base import ArtifactRow, AttemptRow, Control, Project, RunRecord
from llmflow.store.batches import SqlBatches
from llmflow.store.evals import SqlEvals
from llmflow.store.rows import (
    ATTEMPT_COLUMNS,
    EVENT_COLUMNS,
    RUN_COLUMNS,
    RUN_JSON_COLUMNS,
    RUN_SELECT,
    SPEC_INDEX,
    STEP_FIELDS,
    attempt_from_row,
    check_run_fields,
    column_value,
    event_from_row,
    loads_json,
    run_filters,
    run_from_row,
    spec_key,
    step_row,
)
from llmflow.store.sqlplan import ARTIFACT_COLUMNS, dumps
from llmflow.store.threads import SqlThreads

_SPEC_CACHE = 512  # decoded spec records kept per handle


@dataclass(frozen=True)
class Dialect:
    """What differs in the text of the shared queries."""

    ph: str  # the placeholder: "?" or "%s"
    json_cast: str = ""  # appended to a JSON column's placeholder ("::jsonb")
    collate: str = ""  # makes text ordering by code point, as Python's (' COLLATE "C"')
    json_as_text: str = ""  # appended to a JSON column read back as JSON text ("::text")
    events_horizon: str = ""  # an extra "events since" condition (Postgres' commit-safe horizon)

    def slot(self, col: str) -> str:
        return self.ph + self.json_cast if col in RUN_JSON_COLUMNS else self.ph

    def select_attempts(self) -> str:
        cols = ATTEMPT_COLUMNS.replace("output,", f"output{self.json_as_text},")
        return f"SELECT {cols} FROM attempts WHERE run_id = {self.ph}"


class SqlStore(SqlBatches, SqlThreads, SqlEvals):
    """The queries both SQL stores share. A backend sets ``dialect`` and provides
    ``_read(sql, params)`` (one read), ``_tx(fn)`` (``fn(conn)`` in one write transaction,
    driver errors as :class:`StoreError`) and ``_batch_exec(sql, params) -> rowcount``."""

    dialect: Dialect
    _lease_tx_setup: str = ""  # a statement run first in lease-only transactions

    def _init_sql(self) -> None:
        self._sql_cache: dict[Any, str] = {}
        self._specs: dict[str, dict[str, Any]] = {}  # spec_id -> decoded record
        self._spec_ids: dict[int, tuple[dict[str, Any], str, str]] = {}  # id(record) -> (it, key, text)
        self._specs_stored: set[str] = set()  # spec ids known to be committed
        d = self.dialect
        cols = ", ".join(RUN_COLUMNS)
        self._insert_run_sql = (
            f"INSERT INTO runs ({cols}) VALUES ({', '.join(d.slot(c) for c in RUN_COLUMNS)}) "
            "ON CONFLICT (id) DO NOTHING RETURNING id"
        )
        self._insert_spec_sql = (
            f"INSERT INTO specs (id, record, created_at) VALUES ({d.ph}, {d.ph}{d.json_cast}, {d.ph}) "
            "ON CONFLICT (id) DO NOTHING"
        )

    def _read(self, sql: str, params: Any = ()) -> list[Any]:  # pragma: no cover - the backend's
        raise NotImplementedError

    def _tx(self, fn: Callable[[Any], Any]) -> Any:  # pragma: no cover - the backend's
        raise NotImplementedError

    def _batch_exec(self, sql: str, params: list[Any]) -> int:
        return int(self._tx(lambda conn: conn.execute(sql, params).rowcount))

    # specs ---------------------------------------------------------------------------------
    def _spec_of(self, spec: dict[str, Any]) -> tuple[str, str]:
        """(key, JSON text) of a spec record. The runtime passes the same record object for
        every run of a flow, so it is encoded and hashed once (records are read-only)."""
        hit = self._spec_ids.get(id(spec))
        if hit is not None and hit[0] is spec:
            return hit[1], hit[2]
        text = dumps(spec)
        key = spec_key(text)
        if len(self._spec_ids) > _SPEC_CACHE:
            self._spec_ids.clear()
        self._spec_ids[id(spec)] = (spec, key, text)
        return key, text

    def _put_spec(self, conn: Any, spec: dict[str, Any], now: float, new: set[str]) -> str:
        """Write the spec record unless this handle knows it is stored; its key goes into
        ``new`` until the transaction commits (see :meth:`_specs_committed`)."""
        key, text = self._spec_of(spec)
        if key not in self._specs_stored and key not in new:
            conn.execute(self._insert_spec_sql, (key, text, now))
            new.add(key)
        return key

    def _specs_committed(self, keys: set[str]) -> None:
        self._specs_stored |= keys  # spec rows are never deleted

    def _insert_run(self, conn: Any, run: RunRecord, new_specs: set[str]) -> Any:
        """Issue the INSERT of ``run`` (and its spec); returns the cursor, whose row is None
        when the run already exists."""
        spec_id = self._put_spec(conn, run.spec, run.created_at, new_specs)
        params = [spec_id if c == "spec_id" else column_value(c, getattr(run, c)) for c in RUN_COLUMNS]
        return conn.execute(self._insert_run_sql, params)

    def _runs_from_rows(self, rows: list[Any]) -> list[RunRecord]:
        """Records of run rows, with their specs: from this handle's cache, the rest read in
        one query. (A local map: another thread may clear the cache meanwhile.)"""
        cache = self._specs
        specs: dict[str, dict[str, Any]] = {}
        missing = []
        for key in {r[SPEC_INDEX] for r in rows}:
            hit = cache.get(key)
            if hit is None:
                missing.append(key)
            else:
                specs[key] = hit
        if missing:
            ph = self.dialect.ph
            found = self._read(
                f"SELECT id, record FROM specs WHERE id IN ({', '.join([ph] * len(missing))})", missing
            )
            if len(cache) + len(found) > _SPEC_CACHE:
                cache.clear()
            for key, record in found:
                specs[key] = cache[key] = loads_json(record)
                self._specs_stored.add(key)
        return [run_from_row(r, specs.get(r[SPEC_INDEX], {})) for r in rows]

    # runs ----------------------------------------------------------------------------------
    def append_many(self, batch: list[tuple[Any, ...]]) -> list[list[Event]]:  # pragma: no cover
        raise NotImplementedError  # the backend's

    def create_run(self, run: RunRecord, events: list[NewEvent], now: float) -> list[Event]:
        return self.append_many([(run.id, events, now, run)])[0]

    def append(self, run_id: str, events: list[NewEvent], now: float) -> list[Event]:
        return self.append_many([(run_id, events, now)])[0]

    def get_run(self, run_id: str) -> RunRecord | None:
        rows = self._read(f"{RUN_SELECT} WHERE id = {self.dialect.ph}", (run_id,))
        return self._runs_from_rows(rows)[0] if rows else None

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
        d = self.dialect
        where, params = run_filters(flow, status, batch_id, project_id, parent_run_id, d.ph, in_batch)
        sql = f"{RUN_SELECT}{where} ORDER BY created_at DESC, id{d.collate} DESC LIMIT {d.ph} OFFSET {d.ph}"
        return self._runs_from_rows(self._read(sql, [*params, limit, offset]))

    def count_runs(
        self,
        *,
        flow: str | None = None,
        status: str | None = None,
        batch_id: str | None = None,
        in_batch: bool | None = None,
    ) -> int:
        where, params = run_filters(flow, status, batch_id, None, None, self.dialect.ph, in_batch)
        return int(self._read(f"SELECT COUNT(*) FROM runs{where}", params)[0][0])

    def update_run(self, run_id: str, **run_fields: Any) -> None:
        check_run_fields(run_fields)
        cols = sorted(run_fields)
        ph = self.dialect.ph
        new_specs: set[str] = set()

        def tx(conn: Any) -> None:
            if not cols:
                found = conn.execute(f"SELECT 1 FROM runs WHERE id = {ph}", (run_id,)).fetchone() is not None
            else:
                sets, vals = [], []
                for c in cols:
                    if c == "spec":
                        sets.append(f"spec_id = {ph}")
                        vals.append(self._put_spec(conn, run_fields[c], 0.0, new_specs))
                    else:
                        sets.append(f"{c} = {self.dialect.slot(c)}")
                        vals.append(column_value(c, run_fields[c]))
                sql = f"UPDATE runs SET {', '.join(sets)} WHERE id = {ph}"
                found = conn.execute(sql, [*vals, run_id]).rowcount > 0
            if not found:
                raise StoreError(f"no run {run_id}")

        self._tx(tx)
        self._specs_committed(new_specs)

    # events --------------------------------------------------------------------------------
    def events(self, run_id: str, after_seq: int = 0, limit: int | None = None) -> list[Event]:
        ph = self.dialect.ph
        sql = f"SELECT {EVENT_COLUMNS} FROM events WHERE run_id = {ph} AND seq > {ph} ORDER BY seq"
        params: list[Any] = [run_id, after_seq]
        if limit:
            sql += f" LIMIT {ph}"
            params.append(limit)
        return [event_from_row(r) for r in self._read(sql, params)]

    def events_since(self, after_id: int, limit: int = 1000) -> list[Event]:
        d = self.dialect
        rows = self._read(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE id > {d.ph}{d.events_horizon} ORDER BY id LIMIT {d.ph}",
            (after_id, limit),
        )
        return [event_from_row(r) for r in rows]

    def event_by_id(self, event_id: int) -> Event | None:
        """One event by its store-wide id, as soon as its transaction has committed (the
        global stream, ``events_since``, shows it only once every earlier transaction has
        ended: on Postgres a transaction open anywhere in the cluster holds it back)."""
        rows = self._read(f"SELECT {EVENT_COLUMNS} FROM events WHERE id = {self.dialect.ph}", (event_id,))
        return event_from_row(rows[0]) if rows else None

    # projections ---------------------------------------------------------------------------
    def attempts(self, run_id: str, step_id: str | None = None) -> list[AttemptRow]:
        d = self.dialect
        sql = d.select_attempts()
        params: list[Any] = [run_id]
        if step_id is not None:
            sql += f" AND step_id = {d.ph}"
            params.append(step_id)
        sql += f" ORDER BY COALESCE(started_at, 0), step_id{d.collate}, unit{d.collate}, attempt"
        return [attempt_from_row(r) for r in self._read(sql, params)]

    def artifacts(self, run_id: str) -> list[ArtifactRow]:
        rows = self._read(
            f"SELECT {ARTIFACT_COLUMNS} FROM artifacts WHERE run_id = {self.dialect.ph} ORDER BY id",
            (run_id,),
        )
        return [ArtifactRow(*r) for r in rows]

    def step_rows(self, run_id: str) -> dict[str, dict[str, Any]]:
        d = self.dialect
        cols = ", ".join(f"output{d.json_as_text}" if c == "output" else c for c in STEP_FIELDS)
        rows = self._read(f"SELECT step_id, {cols} FROM steps WHERE run_id = {d.ph}", (run_id,))
        return {r[0]: step_row(r[1:]) for r in rows}

    # controls ------------------------------------------------------------------------------
    def put_control(self, run_id: str, action: str, payload: dict[str, Any], now: float) -> int:
        d = self.dialect
        sql = (
            f"INSERT INTO controls (run_id, action, payload, created_at) "
            f"VALUES ({d.ph}, {d.ph}, {d.ph}{d.json_cast}, {d.ph}) RETURNING id"
        )
        row = self._tx(lambda conn: conn.execute(sql, (run_id, action, dumps(payload), now)).fetchone())
        return int(row[0])

    def take_controls(self, run_id: str) -> list[Control]:
        ph = self.dialect.ph
        # Cheap read first: runners poll this, and an empty mailbox needs no write.
        if not self._read(
            f"SELECT 1 FROM controls WHERE run_id = {ph} AND consumed_at IS NULL LIMIT 1", (run_id,)
        ):
            return []
        # A concurrent taker waits for the write lock (SQLite) or the row locks (Postgres),
        # then re-checks consumed_at: each control is handed out once.
        sql = (
            f"UPDATE controls SET consumed_at = {ph} WHERE run_id = {ph} AND consumed_at IS NULL "
            "RETURNING id, run_id, action, payload, created_at"
        )
        rows = self._tx(lambda conn: conn.execute(sql, (time.time(), run_id)).fetchall())
        return sorted((Control(r[0], r[1], r[2], loads_json(r[3]), r[4]) for r in rows), key=lambda c: c.id)

    def runs_with_controls(self) -> set[str]:
        """The runs with a control waiting: one look for every run a process executes
        (the partial index ``controls_pending`` holds only those rows)."""
        return {r[0] for r in self._read("SELECT DISTINCT run_id FROM controls WHERE consumed_at IS NULL")}

    # leases --------------------------------------------------------------------------------
    def _lease_exec(self, sql: str, params: tuple[Any, ...]) -> int:
        def tx(conn: Any) -> int:
            if self._lease_tx_setup:
                conn.execute(self._lease_tx_setup)
            return int(conn.execute(sql, params).rowcount)

        return int(self._tx(tx))

    def heartbeat(self, run_id: str, owner: str, now: float, lease_seconds: float) -> bool:
        ph = self.dialect.ph
        sql = f"UPDATE runs SET lease_expires_at = {ph} WHERE id = {ph} AND owner = {ph}"
        return self._lease_exec(sql, (now + lease_seconds, run_id, owner)) > 0

    def release(self, run_id: str, owner: str) -> None:
        ph = self.dialect.ph
        sql = f"UPDATE runs SET owner = NULL, lease_expires_at = NULL WHERE id = {ph} AND owner = {ph}"
        self._lease_exec(sql, (run_id, owner))

    # projects ------------------------------------------------------------------------------
    def create_project(self, name: str, local_path: str | None, now: float) -> Project:
        ph = self.dialect.ph
        sql = (
            f"INSERT INTO projects (name, local_path, created_at) VALUES ({ph}, {ph}, {ph}) "
            "ON CONFLICT (name) DO NOTHING RETURNING id"
        )
        row = self._tx(lambda conn: conn.execute(sql, (name, local_path, now)).fetchone())
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
            f"SELECT id, name, local_path, created_at FROM projects WHERE id = {self.dialect.ph}",
            (project_id,),
        )
        return Project(*rows[0]) if rows else None
