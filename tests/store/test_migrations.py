"""A store written before the ``specs`` table (schema version 4, the spec record in the run
row) opens with the current code: its runs read back with their specs, resume and append.

The old schema is built from the shipped migration entries 1-4 (never edited once shipped)
and filled with rows as the store of that time wrote them.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llmflow.engine.events import EventType as T
from llmflow.engine.events import NewEvent
from llmflow.store import migrations
from llmflow.store.base import RunRecord
from llmflow.store.factory import open_store

from .test_contract import PG_URL, _pg_admin, _with_search_path

SPEC = {
    "flow": {"name": "review", "steps": [{"id": "draft", "kind": "llm", "prompt": "héllo"}]},
    "source": "flows/review.yaml",
    "overrides": ["model=fake:echo"],
    "provenance": [{"path": "steps.0.prompt", "file": "flows/review.yaml", "line": 3}],
}
OTHER_SPEC = {"flow": {"name": "other", "steps": []}, "source": "<python>"}

# The runs of the old store: (id, created_at, spec, status, last_seq).
OLD_RUNS = [
    ("old-1", 1.0, SPEC, "COMPLETED", 2),
    ("old-2", 2.0, SPEC, "RUNNING", 2),  # interrupted: a worker resumes it
    ("old-3", 3.0, OTHER_SPEC, "QUEUED", 2),
]


def _old_rows(ph: str, cast: str) -> list[tuple[str, list[Any]]]:
    """The INSERTs the version-4 store made for OLD_RUNS (runs with their spec column)."""
    out = []
    for run_id, created, spec, status, last_seq in OLD_RUNS:
        out.append(
            (
                "INSERT INTO runs (id, flow_name, status, created_at, inputs, spec, fingerprint, options, metadata, last_seq) "
                f"VALUES ({ph}, {ph}, {ph}, {ph}, {ph}{cast}, {ph}{cast}, {ph}, {ph}{cast}, {ph}{cast}, {ph})",
                [
                    run_id,
                    spec["flow"]["name"],
                    status,
                    created,
                    json.dumps({"text": run_id}),
                    json.dumps(spec, default=str),
                    "sha256:" + spec["flow"]["name"],
                    "{}",
                    "{}",
                    last_seq,
                ],
            )
        )
        for seq, type_ in ((1, "RUN_CREATED"), (2, "RUN_STARTED" if status != "QUEUED" else "RUN_QUEUED")):
            out.append(
                (
                    "INSERT INTO events (run_id, seq, type, ts, message, payload) "
                    f"VALUES ({ph}, {ph}, {ph}, {ph}, '', {ph}{cast})",
                    [run_id, seq, type_, created, "{}"],
                )
            )
    return out


def _check_old_store_opens_with_its_specs(url: str) -> None:
    store = open_store(url)  # migrates to the current version
    try:
        runs = {r.id: r for r in store.list_runs()}
        assert set(runs) == {"old-1", "old-2", "old-3"}
        assert runs["old-1"].spec == SPEC and runs["old-2"].spec == SPEC
        assert runs["old-3"].spec == OTHER_SPEC
        assert runs["old-1"].inputs == {"text": "old-1"} and runs["old-1"].fingerprint == "sha256:review"
        got = store.get_run("old-2")
        assert got is not None and got.spec == SPEC and got.status == "RUNNING" and got.last_seq == 2

        # a worker picks the interrupted run up and finishes it: the log continues at 3
        claimed = store.claim("worker-1", time.time(), 60.0, run_id="old-2")
        assert claimed is not None and claimed.spec == SPEC and claimed.owner == "worker-1"
        out = store.append("old-2", [NewEvent(T.RUN_RESUMED), NewEvent(T.RUN_COMPLETED)], now=10.0)
        assert [e.seq for e in out] == [3, 4]
        after = store.get_run("old-2")
        assert after is not None and after.status == "COMPLETED" and after.spec == SPEC
        assert [e.seq for e in store.events("old-2")] == [1, 2, 3, 4]

        # the queue scan hands out the queued old run with its spec
        queued = store.claim("worker-2", time.time(), 60.0)
        assert queued is not None and queued.id == "old-3" and queued.spec == OTHER_SPEC

        # a new run of the same spec, and a spec changed on an old run
        store.create_run(RunRecord(id="new-1", flow_name="review", created_at=20.0, spec=SPEC), [], now=20.0)
        new = store.get_run("new-1")
        assert new is not None and new.spec == SPEC
        store.update_run("old-1", spec=OTHER_SPEC)
        changed = store.get_run("old-1")
        assert changed is not None and changed.spec == OTHER_SPEC
    finally:
        store.close()
    again = open_store(url)  # a fresh handle (no cached specs) reads the same
    try:
        assert {r.id: r.spec for r in again.list_runs()} == {
            "old-1": OTHER_SPEC,
            "old-2": SPEC,
            "old-3": OTHER_SPEC,
            "new-1": SPEC,
        }
    finally:
        again.close()


def test_a_sqlite_store_from_before_the_specs_table_keeps_working(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    for _, statements in migrations.SQLITE[:4]:
        for sql in statements:
            conn.execute(sql)
    conn.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)")
    conn.executemany("INSERT INTO schema_version VALUES (?, 0)", [(v,) for v, _ in migrations.SQLITE[:4]])
    for sql, params in _old_rows("?", ""):
        conn.execute(sql, params)
    conn.close()

    _check_old_store_opens_with_its_specs(f"sqlite:///{path}")

    conn = sqlite3.connect(path)
    try:
        columns = {r[1] for r in conn.execute("PRAGMA table_info(runs)")}
        assert "spec" not in columns and "spec_id" in columns  # the run row no longer carries it
        # one row per distinct record: the old runs and the new run of SPEC share theirs
        assert conn.execute("SELECT COUNT(*) FROM specs").fetchone()[0] == 2
    finally:
        conn.close()


def test_runs_of_one_spec_record_share_one_specs_row(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        for i in range(3):
            store.create_run(RunRecord(id=f"r{i}", flow_name="review", spec=dict(SPEC)), [], now=1.0)
        store.create_run(RunRecord(id="r-other", flow_name="other", spec=OTHER_SPEC), [], now=1.0)
        rows = store._read("SELECT spec_id, COUNT(*) FROM runs GROUP BY spec_id ORDER BY 2")
        assert [n for _, n in rows] == [1, 3]
        assert store._read("SELECT COUNT(*) FROM specs")[0][0] == 2
    finally:
        store.close()


@pytest.fixture
def pg_schema_url() -> Iterator[tuple[Any, str]]:
    admin = _pg_admin()
    schema = f"llmflow_test_{uuid.uuid4().hex[:12]}"
    admin.execute(f"CREATE SCHEMA {schema}")
    try:
        yield admin, schema
    finally:
        admin.execute(f"DROP SCHEMA {schema} CASCADE")
        admin.close()


def test_a_postgres_store_from_before_the_specs_table_keeps_working(pg_schema_url: tuple[Any, str]) -> None:
    import psycopg

    _, schema = pg_schema_url
    url = _with_search_path(PG_URL, schema)
    with psycopg.connect(url, autocommit=True) as conn:
        for _, statements in migrations.POSTGRES[:4]:
            for sql in statements:
                conn.execute(sql)
        conn.execute(
            "CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)"
        )
        for v, _ in migrations.POSTGRES[:4]:
            conn.execute("INSERT INTO schema_version VALUES (%s, 0)", (v,))
        for sql, params in _old_rows("%s", "::jsonb"):
            conn.execute(sql, params)

    _check_old_store_opens_with_its_specs(url)

    with psycopg.connect(url, autocommit=True) as conn:
        columns = {
            r[0]
            for r in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = 'runs'",
                (schema,),
            )
        }
        assert "spec" not in columns and "spec_id" in columns
        # the old runs' two records (md5 keys), plus each once more under the key new code
        # uses: SPEC for new-1, OTHER_SPEC for the update of old-1
        assert conn.execute("SELECT COUNT(*) FROM specs").fetchone()[0] == 4
