"""Versioned schema migrations for the durable stores.

Each dialect has an ordered list of ``(version, [sql statements])``. The applied versions
are recorded in ``schema_version``. Applying is idempotent (already applied versions are
skipped) and safe when several processes start at once: SQLite takes the database write
lock (``BEGIN IMMEDIATE``) and Postgres a transaction-scoped advisory lock before reading
the current version, so exactly one process applies each migration.

To change the schema, append a new ``(version, statements)`` entry to both lists; never
edit an entry that has shipped.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any

# Arbitrary constant: the Postgres advisory lock key that serialises migrations.
_PG_MIGRATE_LOCK = 0x6C6D666C  # "lmfl"

SQLITE: list[tuple[int, list[str]]] = [
    (
        1,
        [
            """CREATE TABLE IF NOT EXISTS runs (
                id TEXT PRIMARY KEY,
                flow_name TEXT NOT NULL,
                status TEXT NOT NULL DEFAULT 'QUEUED',
                created_at REAL NOT NULL DEFAULT 0,
                started_at REAL,
                ended_at REAL,
                inputs TEXT NOT NULL DEFAULT '{}',
                outputs TEXT,
                error TEXT,
                spec TEXT NOT NULL DEFAULT '{}',
                fingerprint TEXT NOT NULL DEFAULT '',
                options TEXT NOT NULL DEFAULT '{}',
                metadata TEXT NOT NULL DEFAULT '{}',
                parent_run_id TEXT,
                batch_id TEXT,
                project_id INTEGER,
                name TEXT,
                goal TEXT,
                run_type TEXT NOT NULL DEFAULT 'flow',
                owner TEXT,
                lease_expires_at REAL,
                last_seq INTEGER NOT NULL DEFAULT 0,
                tokens_in INTEGER NOT NULL DEFAULT 0,
                tokens_out INTEGER NOT NULL DEFAULT 0,
                cost REAL NOT NULL DEFAULT 0
            )""",
            "CREATE INDEX IF NOT EXISTS runs_created ON runs (created_at, id)",
            "CREATE INDEX IF NOT EXISTS runs_status ON runs (status, created_at, id)",
            "CREATE INDEX IF NOT EXISTS runs_flow ON runs (flow_name, created_at)",
            "CREATE INDEX IF NOT EXISTS runs_batch ON runs (batch_id)",
            "CREATE INDEX IF NOT EXISTS runs_parent ON runs (parent_run_id)",
            "CREATE INDEX IF NOT EXISTS runs_project ON runs (project_id)",
            # AUTOINCREMENT: the store-wide cursor must never reuse an id.
            # UNIQUE (run_id, seq) is also the (run_id, seq) index the reads use.
            """CREATE TABLE IF NOT EXISTS events (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
                seq INTEGER NOT NULL,
                type TEXT NOT NULL,
                ts REAL NOT NULL,
                message TEXT NOT NULL DEFAULT '',
                step_id TEXT,
                unit TEXT,
                attempt INTEGER,
                payload TEXT NOT NULL DEFAULT '{}',
                UNIQUE (run_id, seq)
            )""",
            """CREATE TABLE IF NOT EXISTS steps (
                run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
                step_id TEXT NOT NULL,
                status TEXT NOT NULL,
                output TEXT,
                error TEXT,
                started_at REAL,
                ended_at REAL,
                PRIMARY KEY (run_id, step_id)
            )""",
            """CREATE TABLE IF NOT EXISTS attempts (
                run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
                step_id TEXT NOT NULL,
                unit TEXT NOT NULL DEFAULT '',
                attempt INTEGER NOT NULL,
                status TEXT NOT NULL,
                started_at REAL,
                ended_at REAL,
                output TEXT,
                error TEXT,
                model TEXT,
                tokens_in INTEGER NOT NULL DEFAULT 0,
                tokens_out INTEGER NOT NULL DEFAULT 0,
                cost REAL NOT NULL DEFAULT 0,
                info TEXT NOT NULL DEFAULT '{}',
                PRIMARY KEY (run_id, step_id, unit, attempt)
            )""",
            """CREATE TABLE IF NOT EXISTS artifacts (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
                path TEXT NOT NULL,
                size INTEGER NOT NULL DEFAULT 0,
                sha256 TEXT NOT NULL DEFAULT '',
                step_id TEXT,
                attempt INTEGER,
                created_at REAL NOT NULL DEFAULT 0,
                mime TEXT
            )""",
            "CREATE INDEX IF NOT EXISTS artifacts_run ON artifacts (run_id, id)",
            # No foreign key on run_id: like the memory store, a control may be posted for a
            # run this process has not seen yet.
            """CREATE TABLE IF NOT EXISTS controls (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                run_id TEXT NOT NULL,
                action TEXT NOT NULL,
                payload TEXT NOT NULL DEFAULT '{}',
                created_at REAL NOT NULL,
                consumed_at REAL
            )""",
            "CREATE INDEX IF NOT EXISTS controls_pending ON controls (run_id, id) WHERE consumed_at IS NULL",
            """CREATE TABLE IF NOT EXISTS projects (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                name TEXT NOT NULL UNIQUE,
                local_path TEXT,
                created_at REAL NOT NULL
            )""",
        ],
    ),
    (
        2,
        [
            # batch metadata (llmflow.store.batches); runs keep batch_id
            """CREATE TABLE IF NOT EXISTS batches (
                id TEXT PRIMARY KEY,
                flow_name TEXT NOT NULL,
                status TEXT NOT NULL DEFAULT 'RUNNING',
                created_at REAL NOT NULL DEFAULT 0,
                updated_at REAL NOT NULL DEFAULT 0,
                ended_at REAL,
                total INTEGER,
                spec TEXT NOT NULL DEFAULT '{}',
                owner TEXT,
                metadata TEXT NOT NULL DEFAULT '{}'
            )""",
            "CREATE INDEX IF NOT EXISTS batches_created ON batches (created_at, id)",
            "CREATE INDEX IF NOT EXISTS runs_batch_status ON runs (batch_id, status)",
        ],
    ),
    (
        3,
        [
            # evaluations (llmflow.store.evals); an evaluation's runs are a batch's
            """CREATE TABLE IF NOT EXISTS evals (
                id TEXT PRIMARY KEY,
                flow_name TEXT NOT NULL,
                status TEXT NOT NULL DEFAULT 'RUNNING',
                created_at REAL NOT NULL DEFAULT 0,
                updated_at REAL NOT NULL DEFAULT 0,
                ended_at REAL,
                batch_id TEXT,
                spec TEXT NOT NULL DEFAULT '{}',
                summary TEXT NOT NULL DEFAULT '{}',
                metadata TEXT NOT NULL DEFAULT '{}'
            )""",
            "CREATE INDEX IF NOT EXISTS evals_created ON evals (created_at, id)",
            """CREATE TABLE IF NOT EXISTS eval_results (
                eval_id TEXT NOT NULL REFERENCES evals (id) ON DELETE CASCADE,
                job_key TEXT NOT NULL,
                record_id TEXT NOT NULL,
                variant TEXT NOT NULL DEFAULT '',
                parameters TEXT NOT NULL DEFAULT '{}',
                run_id TEXT NOT NULL,
                run_seq INTEGER NOT NULL DEFAULT 0,
                status TEXT NOT NULL DEFAULT '',
                score REAL NOT NULL DEFAULT 0,
                passed INTEGER NOT NULL DEFAULT 0,
                scores TEXT NOT NULL DEFAULT '{}',
                reason TEXT,
                expected TEXT,
                output TEXT,
                tokens INTEGER NOT NULL DEFAULT 0,
                cost REAL NOT NULL DEFAULT 0,
                latency REAL,
                created_at REAL NOT NULL DEFAULT 0,
                PRIMARY KEY (eval_id, job_key)
            )""",
        ],
    ),
    (
        4,
        [
            # the schema version of each stored payload (llmflow.engine.payloads)
            "ALTER TABLE events ADD COLUMN schema_version INTEGER NOT NULL DEFAULT 1",
            # a parked (WAITING) run is picked up again when its earliest timer is due
            "ALTER TABLE runs ADD COLUMN wake_at REAL",
            "CREATE INDEX IF NOT EXISTS runs_wake ON runs (wake_at) WHERE status = 'WAITING'",
        ],
    ),
    (
        5,
        [
            # spec records move out of the run row, stored once per fingerprint (llmflow.store.sql):
            # every append rewrites the run row, which carried kilobytes of provenance
            """CREATE TABLE IF NOT EXISTS specs (
                id TEXT PRIMARY KEY,
                record TEXT NOT NULL,
                created_at REAL NOT NULL DEFAULT 0
            )""",
            "ALTER TABLE runs ADD COLUMN spec_id TEXT NOT NULL DEFAULT ''",
            # llmflow_spec_key: llmflow.store.rows.spec_key, registered by apply_sqlite; the
            # stored text is what the store encodes, so old and new runs share their rows
            "INSERT OR IGNORE INTO specs (id, record, created_at) "
            "SELECT llmflow_spec_key(spec), spec, MIN(created_at) FROM runs GROUP BY spec",
            "UPDATE runs SET spec_id = llmflow_spec_key(spec)",
            "ALTER TABLE runs DROP COLUMN spec",
        ],
    ),
]

POSTGRES: list[tuple[int, list[str]]] = [
    (
        1,
        [
            """CREATE TABLE IF NOT EXISTS runs (
                id TEXT PRIMARY KEY,
                flow_name TEXT NOT NULL,
                status TEXT NOT NULL DEFAULT 'QUEUED',
                created_at DOUBLE PRECISION NOT NULL DEFAULT 0,
                started_at DOUBLE PRECISION,
                ended_at DOUBLE PRECISION,
                inputs JSONB NOT NULL DEFAULT '{}',
                outputs JSONB,
                error TEXT,
                spec JSONB NOT NULL DEFAULT '{}',
                fingerprint TEXT NOT NULL DEFAULT '',
                options JSONB NOT NULL DEFAULT '{}',
                metadata JSONB NOT NULL DEFAULT '{}',
                parent_run_id TEXT,
                batch_id TEXT,
                project_id BIGINT,
                name TEXT,
                goal TEXT,
                run_type TEXT NOT NULL DEFAULT 'flow',
                owner TEXT,
                lease_expires_at DOUBLE PRECISION,
                last_seq BIGINT NOT NULL DEFAULT 0,
                tokens_in BIGINT NOT NULL DEFAULT 0,
                tokens_out BIGINT NOT NULL DEFAULT 0,
                cost DOUBLE PRECISION NOT NULL DEFAULT 0
            )""",
            'CREATE INDEX IF NOT EXISTS runs_created ON runs (created_at, id COLLATE "C")',
            'CREATE INDEX IF NOT EXISTS runs_status ON runs (status, created_at, id COLLATE "C")',
            "CREATE INDEX IF NOT EXISTS runs_flow ON runs (flow_name, created_at)",
            "CREATE INDEX IF NOT EXISTS runs_batch ON runs (batch_id)",
            "CREATE INDEX IF NOT EXISTS runs_parent ON runs (parent_run_id)",
            "CREATE INDEX IF NOT EXISTS runs_project ON runs (project_id)",
            """CREATE TABLE IF NOT EXISTS events (
                id BIGSERIAL PRIMARY KEY,
                run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
                seq BIGINT NOT NULL,
                type TEXT NOT NULL,
                ts DOUBLE PRECISION NOT NULL,
                message TEXT NOT NULL DEFAULT '',
                step_id TEXT,
                unit TEXT,
                attempt INTEGER,
                payload JSONB NOT NULL DEFAULT '{}',
                UNIQUE (run_id, seq)
            )""",
            """CREATE TABLE IF NOT EXISTS steps (
                run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
                step_id TEXT NOT NULL,
                status TEXT NOT NULL,
                output JSONB,
                error TEXT,
                started_at DOUBLE PRECISION,
                ended_at DOUBLE PRECISION,
                PRIMARY KEY (run_id, step_id)
            )""",
            """CREATE TABLE IF NOT EXISTS attempts (
                run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
                step_id TEXT NOT NULL,
                unit TEXT NOT NULL DEFAULT '',
                attempt INTEGER NOT NULL,
                status TEXT NOT NULL,
                started_at DOUBLE PRECISION,
                ended_at DOUBLE PRECISION,
                output JSONB,
                error TEXT,
                model TEXT,
                tokens_in BIGINT NOT NULL DEFAULT 0,
                tokens_out BIGINT NOT NULL DEFAULT 0,
                cost DOUBLE PRECISION NOT NULL DEFAULT 0,
                info JSONB NOT NULL DEFAULT '{}',
                PRIMARY KEY (run_id, step_id, unit, attempt)
            )""",
            """CREATE TABLE IF NOT EXISTS artifacts (
                id BIGSERIAL PRIMARY KEY,
                run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
                path TEXT NOT NULL,
                size BIGINT NOT NULL DEFAULT 0,
                sha256 TEXT NOT NULL DEFAULT '',
                step_id TEXT,
                attempt INTEGER,
                created_at DOUBLE PRECISION NOT NULL DEFAULT 0,
                mime TEXT
            )""",
            "CREATE INDEX IF NOT EXISTS artifacts_run ON artifacts (run_id, id)",
            """CREATE TABLE IF NOT EXISTS controls (
                id BIGSERIAL PRIMARY KEY,
                run_id TEXT NOT NULL,
                action TEXT NOT NULL,
                payload JSONB NOT NULL DEFAULT '{}',
                created_at DOUBLE PRECISION NOT NULL,
                consumed_at DOUBLE PRECISION
            )""",
            "CREATE INDEX IF NOT EXISTS controls_pending ON controls (run_id, id) WHERE consumed_at IS NULL",
            """CREATE TABLE IF NOT EXISTS projects (
                id BIGSERIAL PRIMARY KEY,
                name TEXT NOT NULL UNIQUE,
                local_path TEXT,
                created_at DOUBLE PRECISION NOT NULL
            )""",
        ],
    ),
    (
        2,
        [
            # batch metadata (llmflow.store.batches); runs keep batch_id
            """CREATE TABLE IF NOT EXISTS batches (
                id TEXT PRIMARY KEY,
                flow_name TEXT NOT NULL,
                status TEXT NOT NULL DEFAULT 'RUNNING',
                created_at DOUBLE PRECISION NOT NULL DEFAULT 0,
                updated_at DOUBLE PRECISION NOT NULL DEFAULT 0,
                ended_at DOUBLE PRECISION,
                total BIGINT,
                spec JSONB NOT NULL DEFAULT '{}',
                owner TEXT,
                metadata JSONB NOT NULL DEFAULT '{}'
            )""",
            "CREATE INDEX IF NOT EXISTS batches_created ON batches (created_at, id)",
            "CREATE INDEX IF NOT EXISTS runs_batch_status ON runs (batch_id, status)",
        ],
    ),
    (
        3,
        [
            # evaluations (llmflow.store.evals); an evaluation's runs are a batch's
            """CREATE TABLE IF NOT EXISTS evals (
                id TEXT PRIMARY KEY,
                flow_name TEXT NOT NULL,
                status TEXT NOT NULL DEFAULT 'RUNNING',
                created_at DOUBLE PRECISION NOT NULL DEFAULT 0,
                updated_at DOUBLE PRECISION NOT NULL DEFAULT 0,
                ended_at DOUBLE PRECISION,
                batch_id TEXT,
                spec JSONB NOT NULL DEFAULT '{}',
                summary JSONB NOT NULL DEFAULT '{}',
                metadata JSONB NOT NULL DEFAULT '{}'
            )""",
            "CREATE INDEX IF NOT EXISTS evals_created ON evals (created_at, id)",
            """CREATE TABLE IF NOT EXISTS eval_results (
                eval_id TEXT NOT NULL REFERENCES evals (id) ON DELETE CASCADE,
                job_key TEXT NOT NULL,
                record_id TEXT NOT NULL,
                variant TEXT NOT NULL DEFAULT '',
                parameters JSONB NOT NULL DEFAULT '{}',
                run_id TEXT NOT NULL,
                run_seq BIGINT NOT NULL DEFAULT 0,
                status TEXT NOT NULL DEFAULT '',
                score DOUBLE PRECISION NOT NULL DEFAULT 0,
                passed INTEGER NOT NULL DEFAULT 0,
                scores JSONB NOT NULL DEFAULT '{}',
                reason TEXT,
                expected JSONB,
                output JSONB,
                tokens BIGINT NOT NULL DEFAULT 0,
                cost DOUBLE PRECISION NOT NULL DEFAULT 0,
                latency DOUBLE PRECISION,
                created_at DOUBLE PRECISION NOT NULL DEFAULT 0,
                PRIMARY KEY (eval_id, job_key)
            )""",
        ],
    ),
    (
        4,
        [
            "ALTER TABLE events ADD COLUMN IF NOT EXISTS schema_version INTEGER NOT NULL DEFAULT 1",
            "ALTER TABLE runs ADD COLUMN IF NOT EXISTS wake_at DOUBLE PRECISION",
            "CREATE INDEX IF NOT EXISTS runs_wake ON runs (wake_at) WHERE status = 'WAITING'",
        ],
    ),
    (
        5,
        [
            """CREATE TABLE IF NOT EXISTS specs (
                id TEXT PRIMARY KEY,
                record JSONB NOT NULL,
                created_at DOUBLE PRECISION NOT NULL DEFAULT 0
            )""",
            "ALTER TABLE runs ADD COLUMN IF NOT EXISTS spec_id TEXT NOT NULL DEFAULT ''",
            # JSONB has its own text form, so the records of older runs get md5 keys: a run
            # created from now on stores its record again under its own key, once
            "INSERT INTO specs (id, record, created_at) "
            "SELECT 'md5:' || md5(spec::text), spec, MIN(created_at) FROM runs GROUP BY spec "
            "ON CONFLICT (id) DO NOTHING",
            "UPDATE runs SET spec_id = 'md5:' || md5(spec::text)",
            "ALTER TABLE runs DROP COLUMN IF EXISTS spec",
        ],
    ),
]

LATEST = max(v for v, _ in SQLITE)
assert LATEST == max(v for v, _ in POSTGRES), "both dialects must reach the same schema version"

_VERSION_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at {real} NOT NULL)"
)


def _sqlite_version(conn: sqlite3.Connection) -> int:
    try:
        row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
    except sqlite3.OperationalError:  # no schema_version table yet
        return 0
    return int(row[0] or 0)


def apply_sqlite(conn: sqlite3.Connection) -> int:
    """Bring a SQLite database up to date; returns the schema version.

    ``conn`` must be in autocommit mode (``isolation_level=None``): this function manages
    its own transaction.
    """
    if _sqlite_version(conn) >= LATEST:  # fast path, no write lock
        return LATEST
    from llmflow.store.rows import spec_key

    conn.create_function("llmflow_spec_key", 1, spec_key, deterministic=True)
    conn.execute("BEGIN IMMEDIATE")  # the database write lock: one migrator at a time
    try:
        conn.execute(_VERSION_TABLE.format(real="REAL"))
        current = _sqlite_version(conn)
        for version, statements in SQLITE:
            if version <= current:
                continue
            for sql in statements:
                conn.execute(sql)
            conn.execute(
                "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)", (version, time.time())
            )
            current = version
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return current


def apply_postgres(conn: Any) -> int:
    """Bring a Postgres schema (the connection's search_path) up to date; returns the version.

    ``conn`` is a psycopg 3 connection in autocommit mode.
    """
    with conn.transaction():
        # Taken before touching schema_version: concurrent CREATE TABLE IF NOT EXISTS can
        # otherwise fail with a unique violation on the catalog.
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_PG_MIGRATE_LOCK,))
        conn.execute(_VERSION_TABLE.format(real="DOUBLE PRECISION"))
        row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
        current = int(row[0] or 0)
        for version, statements in POSTGRES:
            if version <= current:
                continue
            for sql in statements:
                conn.execute(sql)
            conn.execute(
                "INSERT INTO schema_version (version, applied_at) VALUES (%s, %s)", (version, time.time())
            )
            current = version
    return current
