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
per-run streams) until it ends. Right after an append commits, the store sends ``NOTIFY
llmflow_events, '<run_id>:<last_seq>'`` per run (in a transaction of its own: see
``_NOTIFY``); ``wait_for_events`` listens for it.

psycopg is imported when a store is opened, never when this module is imported.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from llmflow.engine.events import Event
from llmflow.errors import StoreError
from llmflow.store import migrations
from llmflow.store.base import RunRecord
from llmflow.store.rows import RUN_COLUMNS
from llmflow.store.sql import Dialect, SqlStore
from llmflow.store.sqlplan import ROW_WIDTH, AppendPlan, dumps, grouped_writes

CHANNEL = "llmflow_events"
QUEUE_CHANNEL = "llmflow_queue"  # a new run's id, once it is committed: wakes idle workers
INSTALL_HINT = "pip install 'llmflow[postgres]'"
MAX_READERS = 3  # reader connections per store handle (beyond: reads share the main one)
ID_SHIFT = 20  # event id = transaction id << ID_SHIFT | counter (a million events per transaction)
_XID = "pg_current_xact_id()::text::bigint"
_HORIZON = f"(pg_snapshot_xmin(pg_current_snapshot())::text::bigint << {ID_SHIFT})"
_RUN_RETURNING = " RETURNING " + ", ".join(RUN_COLUMNS)
_LOCK_RUNS = "SELECT pg_advisory_xact_lock(k) FROM unnest(%s::bigint[]) AS k"
_LAST_SEQS = "SELECT id, last_seq FROM runs WHERE id = ANY(%s) FOR UPDATE"
# Every event of a transaction in one INSERT, its rows sent as one JSON array of arrays
# (id, run_id, seq, type, ts, message, step_id, unit, attempt, payload text, schema
# version): one statement text whatever the count, so it is parsed and prepared once, and
# one parameter encoded by the C JSON encoder. psycopg's own parameter dumping costs ~5x
# more client CPU per event (measured: 50 events, 110-200 us against ~650 us for one array
# per column and ~900 us for multi-row VALUES, which psycopg also re-parses per call).
_INSERT_EVENTS = (
    "INSERT INTO events (id, run_id, seq, type, ts, message, step_id, unit, attempt, payload, schema_version) "
    "SELECT (e->>0)::bigint, e->>1, (e->>2)::bigint, e->>3, (e->>4)::float8, e->>5, e->>6, e->>7, "
    "(e->>8)::int, (e->>9)::jsonb, (e->>10)::int FROM jsonb_array_elements(%s::jsonb) AS e"
)
# The wake-ups are sent in a transaction of their own, right after the append's COMMIT (same
# pipeline, no extra round trip): a transaction that notifies holds a cluster-wide lock
# from its pre-commit until it has ended, so notifying inside the append would serialise
# every appender's commit and WAL flush behind one another. Sent after the commit, a
# wake-up never precedes its events; one lost to a crash in between only delays a
# listener until its next timeout (``wait_for_events`` reads again then).
_NOTIFY = "SELECT pg_notify(%s, n) FROM unnest(%s::text[]) AS n"
# psycopg decodes JSONB, so a JSON string output would come back as a bare str and be
# decoded a second time: output columns are read as text. events_since is commit-safe:
# only ids below the snapshot's horizon (see the module docstring).
DIALECT = Dialect(
    ph="%s",
    json_cast="::jsonb",
    collate=' COLLATE "C"',
    json_as_text="::text",
    events_horizon=f" AND id < {_HORIZON}",
)
# A lease change (claim, heartbeat, release) commits without waiting for the WAL flush: it
# is flushed with the next durable commit, and the run's first append is one - no event is
# ever written under a claim that a crash could undo. A claim a crash loses leaves the run
# queued, as if never claimed.
_LEASE_SETUP = "SET LOCAL synchronous_commit = off"
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


class PostgresStore(SqlStore):
    """Event log and projections in a Postgres database (tables in the search_path schema)."""

    def __init__(self, url: str, *, connect_timeout: float = 10.0) -> None:
        self._pg = _import_psycopg()
        self.url = url
        self._connect_timeout = connect_timeout
        self._lock = threading.RLock()
        self._init_sql()
        self._listeners: list[Any] = []  # idle LISTEN connections for wait_for_events
        self._queue_listener: Any = None  # wait_for_queued's connection (LISTEN for its life)
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

    def _tx(self, fn: Callable[[Any], Any]) -> Any:
        """Run ``fn(conn)`` in one transaction; driver errors become StoreError."""
        with self._lock:
            conn = self._db()
            try:
                with conn.transaction():
                    return fn(conn)
            except self._pg.Error as exc:
                raise StoreError(f"Postgres store operation failed: {exc}") from exc

    def _piped_tx(self, fn: Callable[[Any], Any]) -> Any:
        """``fn(conn)`` in one transaction sent as one pipeline (BEGIN, the statements,
        COMMIT: one round trip). ``fn`` only queues statements; it returns their cursors,
        whose rows are read once the pipeline has synced."""
        with self._lock:
            conn = self._db()
            with self._rolled_back_on_failure(conn):
                with conn.pipeline():
                    conn.execute("BEGIN")
                    out = fn(conn)
                    conn.execute("COMMIT")
                return out

    @contextmanager
    def _rolled_back_on_failure(self, conn: Any) -> Iterator[None]:
        """A failure inside ends the transaction it left open; a driver error becomes StoreError."""
        try:
            yield
        except self._pg.Error as exc:
            self._rollback(conn)
            raise StoreError(f"Postgres store operation failed: {exc}") from exc
        except BaseException:
            self._rollback(conn)
            raise

    def _rollback(self, conn: Any) -> None:
        """End a transaction a failure left open (the connection is autocommit: the next
        statement must not run inside it)."""
        try:
            if not conn.closed and conn.info.transaction_status != self._pg.pq.TransactionStatus.IDLE:
                conn.execute("ROLLBACK")
        except self._pg.Error:
            conn.close()  # reconnected by the next _db()

    def _read(self, sql: str, params: Any = ()) -> list[Any]:
        """One read statement (autocommit), on an idle reader connection when there is one:
        reads never wait behind the writer's commits on the main connection."""
        conn = self._reader()
        if conn is None:
            with self._lock:
                try:
                    found: list[Any] = self._db().execute(sql, params).fetchall()
                    return found
                except self._pg.Error as exc:
                    raise StoreError(f"Postgres store read failed: {exc}") from exc
        try:
            rows: list[Any] = conn.execute(sql, params).fetchall()
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

    dialect = DIALECT
    _ph = "%s"
    _json_cast = "::jsonb"
    _lease_tx_setup = _LEASE_SETUP

    def migrate(self) -> None:
        with self._lock:
            try:
                migrations.apply_postgres(self._db())
            except self._pg.Error as exc:
                diag = getattr(exc, "diag", None)
                reason = (diag.message_primary if diag is not None else None) or str(exc)
                from llmflow.store.factory import _redact

                raise StoreError(
                    f"cannot migrate the Postgres store {_redact(self.url)}: {reason}",
                    hint="the database and the schema its search_path names must exist, and the user may create tables in it",
                ) from exc

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

    # events --------------------------------------------------------------------------------
    def append_many(self, batch: list[tuple[Any, ...]]) -> list[list[Event]]:
        """Several appends (of any runs) in one transaction: all or none (group commit). An
        item is (run_id, events, now), or (run_id, events, now, run) for a new run written
        with its first events.

        Two round trips whatever the batch size (psycopg pipeline mode): one begins the
        transaction, inserts the new runs, takes the runs' locks and reads their last seq
        and the transaction id; the other writes every run update, every event (one
        statement, whatever the count) and every projection row, commits, and then sends
        the notifications."""
        creates = [it[3] for it in batch if len(it) > 3]
        batch = [(it[0], it[1], it[2]) for it in batch]
        new_specs: set[str] = set()
        with self._lock:
            conn = self._db()
            with self._rolled_back_on_failure(conn):
                out = self._append_tx(conn, batch, creates, new_specs)
        self._specs_committed(new_specs)
        return out

    def _append_tx(
        self, conn: Any, batch: list[tuple[Any, ...]], creates: list[RunRecord], new_specs: set[str]
    ) -> list[list[Event]]:
        cache = self._sql_cache
        run_ids = list(dict.fromkeys(r for r, _, _ in batch))
        # per-run locks first, before the transaction has an id: a run's appenders take
        # turns, and each gets its transaction id only once it holds the run - so within
        # a run, event ids grow with seq (sorted: no cycle between two batches)
        keys = sorted({_run_lock_key(r) for r, e, _ in batch if e})
        with conn.pipeline():
            conn.execute("BEGIN")
            if keys:
                conn.execute(_LOCK_RUNS, (keys,))
            # new runs after the locks: inserting gives the transaction its id
            inserted = [self._insert_run(conn, run, new_specs) for run in creates]
            seqs = conn.execute(_LAST_SEQS, (run_ids,))
            xid_cur = conn.execute(f"SELECT {_XID}")
        last = dict(seqs.fetchall())
        xid = int(xid_cur.fetchone()[0])
        for run, cur in zip(creates, inserted, strict=True):
            if cur.fetchone() is None:
                raise StoreError(f"run {run.id} already exists")
        for r in run_ids:
            if r not in last:
                raise StoreError(f"no run {r}")
        next_id = (xid << ID_SHIFT) + 1
        out: list[list[Event]] = []
        plans: list[AppendPlan | None] = []
        updates: list[tuple[str, list[Any]]] = []
        rows: list[list[Any]] = []  # the events' rows: id, then the plan's ROW_WIDTH values
        notes: dict[str, int] = {}
        for run_id, events, now in batch:
            if not events:
                out.append([])
                continue
            first_seq = last[run_id] + 1
            last[run_id] += len(events)
            plan = AppendPlan(run_id, events, now, first_seq, "%s", cache)
            plans.append(plan)
            updates.append(plan.run.sql(last[run_id], run_id, "%s", cache))
            mine = list(range(next_id, next_id + len(events)))
            next_id += len(events)
            r = plan.rows
            rows += [
                [id_, *r[j : j + ROW_WIDTH]] for id_, j in zip(mine, range(0, len(r), ROW_WIDTH), strict=True)
            ]
            notes[run_id] = last[run_id]
            out.append(plan.with_ids(mine))
        if next_id - (xid << ID_SHIFT) >= 1 << ID_SHIFT:
            raise StoreError(f"one transaction may append at most {(1 << ID_SHIFT) - 1} events")
        with conn.pipeline():
            for sql, params in updates:
                conn.execute(sql, params)
            if rows:
                conn.execute(_INSERT_EVENTS, (dumps(rows),))
            # str params are untyped: the server casts JSON text
            for sql, many in grouped_writes(plans):
                if len(many) == 1:
                    conn.execute(sql, many[0])
                else:
                    conn.cursor().executemany(sql, many)
            conn.execute("COMMIT")
            if notes:  # after the commit, in the same round trip (see _NOTIFY)
                conn.execute(_NOTIFY, (CHANNEL, [f"{r}:{seq}" for r, seq in notes.items()]))
            if creates:
                conn.execute(_NOTIFY, (QUEUE_CHANNEL, [run.id for run in creates]))
        return out

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

    def wait_for_queued(self, timeout: float) -> bool:
        """Block until a run is created on this database by any process (True: a claim may
        find it) or ``timeout`` seconds pass (False): an idle ``llmflow worker`` wakes on it
        instead of waiting for its next poll. One caller at a time (a worker's listening
        thread); its connection stays subscribed between calls, so a run created between two
        calls still wakes the next one."""
        conn = self._queue_listener
        if conn is None or conn.closed:
            if self._closed:
                raise StoreError("the Postgres store is closed")
            conn = self._queue_listener = self._listening(QUEUE_CHANNEL, "queued runs")
        try:
            woke = any(True for _ in conn.notifies(timeout=timeout, stop_after=1))
        except self._pg.Error as exc:
            conn.close()
            raise StoreError(f"waiting for queued runs failed: {exc}") from exc
        if self._closed:  # closed meanwhile: this thread owns the connection, so it closes it
            conn.close()
        return woke

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
        return self._listening(CHANNEL, "events")

    def _listening(self, channel: str, what: str) -> Any:
        """A new connection subscribed to ``channel``."""
        conn = self._connect()
        try:
            conn.execute(f"LISTEN {channel}")
        except self._pg.Error as exc:
            conn.close()
            raise StoreError(f"cannot listen for {what}: {exc}") from exc
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

    # leases --------------------------------------------------------------------------------
    def _lease_tx(self, sql: str, params: tuple[Any, ...]) -> Any:
        """One lease statement in its own transaction, committed without waiting for the
        WAL flush (see ``_LEASE_SETUP``), in one round trip; returns its cursor."""

        def tx(conn: Any) -> Any:
            conn.execute(_LEASE_SETUP)
            return conn.execute(sql, params)

        return self._piped_tx(tx)

    def _lease_exec(self, sql: str, params: tuple[Any, ...]) -> int:
        return int(self._lease_tx(sql, params).rowcount)

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
        row = self._lease_tx(sql, params).fetchone()
        return self._runs_from_rows([row])[0] if row else None

    def claim_many(self, owner: str, now: float, lease_seconds: float, limit: int) -> list[RunRecord]:
        """Up to ``limit`` runs of the queue scan in one statement (``FOR UPDATE SKIP
        LOCKED``: concurrent claimers take different runs), oldest first."""
        if limit < 1:
            return []
        sql = (
            f"UPDATE runs SET owner = %s, lease_expires_at = %s WHERE id IN (SELECT id FROM runs WHERE {_SCAN_STATUS} AND {_SCAN_FREE} "
            f'ORDER BY created_at, id COLLATE "C" LIMIT %s FOR UPDATE SKIP LOCKED){_RUN_RETURNING}'
        )
        rows = self._lease_tx(sql, (owner, now + lease_seconds, now, now, limit)).fetchall()
        return sorted(self._runs_from_rows(rows), key=lambda r: (r.created_at, r.id.encode()))


def _run_lock_key(run_id: str) -> int:
    import hashlib

    return int.from_bytes(hashlib.blake2b(run_id.encode(), digest_size=8).digest(), "big", signed=True)
