"""The SQLite store: the default durable backend, one file per project.

Semantics are exactly those of :class:`llmflow.store.memory.MemoryStore`; the contract suite
(``tests/store/contract.py``) pins them. Several processes may share one database file:
every write runs in a ``BEGIN IMMEDIATE`` transaction (the database write lock), so
sequence numbers, control hand-out and run claims stay atomic across processes.

One connection per store, guarded by a re-entrant lock. ``append`` is the hot path: one
transaction of BEGIN IMMEDIATE, an UPDATE of the run row (a few hundred bytes: the spec
record lives in ``specs``; the UPDATE also checks the last seq this handle remembers), one
multi-row INSERT and the projection writes, with SQL strings built once and cached so the
driver keeps them prepared. The queries the Postgres store shares are in
:mod:`llmflow.store.sql`; this module keeps what only SQLite does.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from llmflow.engine.events import Event, NewEvent
from llmflow.errors import StoreError
from llmflow.store import migrations
from llmflow.store.base import RunRecord
from llmflow.store.rows import RUN_COLUMNS
from llmflow.store.sql import Dialect, SqlStore
from llmflow.store.sqlite_checkpoint import DEFAULT_EVERY, DEFAULT_EVERY_ROWS, Checkpointer
from llmflow.store.sqlplan import EVENT_INSERT_CHUNK, ROW_WIDTH, AppendPlan, grouped_writes, insert_events_sql

_CLAIM_FREE = "(owner IS NULL OR owner = ? OR COALESCE(lease_expires_at, 0) < ?)"
# the queue scan never hands back a run whose lease is live, not even to its own holder
_SCAN_FREE = "(owner IS NULL OR COALESCE(lease_expires_at, 0) < ?)"
# what the queue scan hands out: queued runs, runs whose process died, parked runs whose
# earliest timer is due
_SCAN_STATUS = "(status IN ('QUEUED', 'RUNNING') OR (status = 'WAITING' AND wake_at <= ?))"


DIALECT = Dialect(ph="?")


def _enter_wal_mode(conn: sqlite3.Connection, deadline: float) -> None:
    """Switch the file to WAL mode, waiting for other processes that open it at the same moment.

    SQLite may answer "database is locked" at once, without calling the busy handler, while
    another connection is converting a fresh file or recovering its WAL index (seen in CI:
    four processes opening one new database); such an answer is retried until ``deadline``."""
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


SYNCHRONOUS = ("normal", "full")  # the `synchronous` levels the store accepts (see its URL)


class SqliteStore(SqlStore):
    """Event log and projections in one SQLite file (WAL mode)."""

    dialect = DIALECT
    local_commit = True  # a commit is a local WAL append: group commit runs on the event loop

    def __init__(
        self,
        path: str | Path,
        *,
        busy_timeout: float = 10.0,
        checkpoint_every: int = DEFAULT_EVERY,
        checkpoint_every_rows: int = DEFAULT_EVERY_ROWS,
        synchronous: str = "normal",
    ) -> None:
        sync = synchronous.lower()
        if sync not in SYNCHRONOUS:
            raise StoreError(
                f"synchronous={synchronous!r} is not a SQLite sync level this store supports",
                hint="use synchronous=normal (the default: a commit survives a process crash) or "
                "synchronous=full (also a power loss: one fsync per commit), e.g. sqlite:///llmflow.db?synchronous=full",
            )
        self.synchronous = sync
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
        self._init_sql()
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
            _enter_wal_mode(conn, time.monotonic() + busy_timeout)
            # NORMAL in WAL mode: a commit is durable across a process crash (kill -9) with no
            # fsync; FULL adds an fsync of the WAL per commit, so it survives a power loss too
            conn.execute(f"PRAGMA synchronous = {sync.upper()}")
            conn.execute("PRAGMA foreign_keys = ON")
            if self.path != ":memory:":
                # checkpoints run on a thread of their own (sqlite_checkpoint.py), not in
                # the commit that happens to pass the WAL's threshold
                conn.execute("PRAGMA wal_autocheckpoint = 0")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the SQLite database {self.path}: {exc}") from exc
        self._conn: sqlite3.Connection | None = conn
        self.checkpointer = (
            Checkpointer(
                self.path, every=checkpoint_every, every_rows=checkpoint_every_rows, busy_timeout=busy_timeout
            )
            if self.path != ":memory:"
            else None
        )
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
            if self.checkpointer is not None:
                self.checkpointer.committed(conn)

    def _read(self, sql: str, params: Any = ()) -> list[Any]:
        with self._lock:
            try:
                return self._db.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"read from {self.path} failed: {exc}") from exc

    def _tx(self, fn: Callable[[Any], Any]) -> Any:
        with self._write() as conn:
            return fn(conn)

    def migrate(self) -> None:
        with self._lock:
            try:
                migrations.apply_sqlite(self._db)
            except sqlite3.Error as exc:
                raise StoreError(f"cannot migrate the database {self.path}: {exc}") from exc

    def close(self) -> None:
        if self.checkpointer is not None:
            self.checkpointer.close()  # first: the last connection closed checkpoints the rest
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # runs ----------------------------------------------------------------------------------
    def _create(self, conn: sqlite3.Connection, run: RunRecord, new_specs: set[str]) -> None:
        if self._insert_run(conn, run, new_specs).fetchone() is None:
            raise StoreError(f"run {run.id} already exists")
        self._last_seq[run.id] = 0

    # events --------------------------------------------------------------------------------
    def append_many(self, batch: list[tuple[Any, ...]]) -> list[list[Event]]:
        """Several appends (of any runs) in one transaction: all or none (group commit). An
        item is (run_id, events, now), or (run_id, events, now, run) for a new run written
        with its first events.

        One UPDATE per run, then the events of every run in shared multi-row INSERTs, then
        the projection rows, statements of one shape executed together (``executemany``)."""
        new_specs: set[str] = set()
        with self._lock:
            if len(self._last_seq) > 10_000:
                self._last_seq.clear()
            try:
                with self._write() as conn:
                    plans = []
                    for item in batch:
                        if len(item) > 3:
                            self._create(conn, item[3], new_specs)
                        plans.append(self._plan_in_tx(conn, item[0], item[1], item[2]))
                    out = self._write_plans(conn, plans)
            except BaseException:
                for item in batch:  # rolled back: what we remembered may be wrong now
                    self._last_seq.pop(item[0], None)
                raise
            # committed: remember where each run's log ends, and the spec records stored
            self._specs_committed(new_specs)
            for item, stored in zip(batch, out, strict=True):
                if stored:
                    self._last_seq[item[0]] = stored[-1].seq
            return out

    def _plan_in_tx(
        self, conn: sqlite3.Connection, run_id: str, events: list[NewEvent], now: float
    ) -> AppendPlan | None:
        """The run's UPDATE, issued, and its plan (None for no events)."""
        if not events:
            if conn.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is None:
                raise StoreError(f"no run {run_id}")
            return None
        n, cache = len(events), self._sql_cache
        # Inside the write transaction, so no other process can append meanwhile. The seq we
        # remember from our last append is usually right; the UPDATE checks it (no SELECT),
        # and if another process appended since, we read the real value and plan again.
        known = self._last_seq.get(run_id)
        if known is not None:
            plan = AppendPlan(run_id, events, now, known + 1, "?", cache)
            if conn.execute(*plan.run.sql(known + n, run_id, "?", cache, expect=known)).rowcount == 1:
                return plan
        row = conn.execute("SELECT last_seq FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise StoreError(f"no run {run_id}")
        plan = AppendPlan(run_id, events, now, row[0] + 1, "?", cache)
        conn.execute(*plan.run.sql(row[0] + n, run_id, "?", cache))
        return plan

    def _write_plans(self, conn: sqlite3.Connection, plans: list[AppendPlan | None]) -> list[list[Event]]:
        cache = self._sql_cache
        rows = [v for p in plans if p is not None for v in p.rows]
        total = len(rows) // ROW_WIDTH
        ids: list[int] = []
        for i in range(0, total, EVENT_INSERT_CHUNK):
            k = min(EVENT_INSERT_CHUNK, total - i)
            last_id = int(
                conn.execute(
                    insert_events_sql(k, "?", cache), rows[i * ROW_WIDTH : (i + k) * ROW_WIDTH]
                ).lastrowid
                or 0
            )
            # We hold the write lock and ids are AUTOINCREMENT: one INSERT's ids are contiguous.
            ids += range(last_id - k + 1, last_id + 1)
        for sql, many in grouped_writes(plans):
            if len(many) == 1:
                conn.execute(sql, many[0])
            else:
                conn.executemany(sql, many)
        out: list[list[Event]] = []
        at = 0
        for p in plans:
            if p is None:
                out.append([])
            else:
                out.append(p.with_ids(ids[at : at + len(p.events)]))
                at += len(p.events)
        return out

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
        rows = self._claim(f"= ({sql})", (owner, now + lease_seconds, *params))  # again, under the lock
        return rows[0] if rows else None

    def claim_many(self, owner: str, now: float, lease_seconds: float, limit: int) -> list[RunRecord]:
        """Up to ``limit`` runs of the queue scan at once, oldest first (one transaction)."""
        sql = f"SELECT id FROM runs WHERE {_SCAN_STATUS} AND {_SCAN_FREE} ORDER BY created_at, id LIMIT ?"
        params = (now, now, limit)
        if limit < 1 or not self._read(sql, params):  # nothing to claim: skip the write lock
            return []
        runs = self._claim(f"IN ({sql})", (owner, now + lease_seconds, *params))
        return sorted(runs, key=lambda r: (r.created_at, r.id))

    def _claim(self, target: str, params: tuple[Any, ...]) -> list[RunRecord]:
        sql = f"UPDATE runs SET owner = ?, lease_expires_at = ? WHERE id {target} RETURNING {', '.join(RUN_COLUMNS)}"
        with self._write() as conn:
            rows = conn.execute(sql, params).fetchall()
        return self._runs_from_rows(rows)
