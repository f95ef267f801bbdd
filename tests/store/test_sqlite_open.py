"""Opening a SQLite store while other processes open the same new file: an immediate
"database is locked" from the switch to WAL mode is waited out, a lasting one is reported."""

from __future__ import annotations

import re
import sqlite3
import time
from pathlib import Path

import pytest

from llmflow.engine.events import EventType as T
from llmflow.engine.events import NewEvent
from llmflow.errors import StoreError
from llmflow.store import sqlite as sqlite_store
from llmflow.store.base import RunRecord
from llmflow.store.factory import open_store
from llmflow.store.sqlite import SqliteStore


class Conn:
    """Stands in for a connection whose first ``locked_times`` WAL switches find the file locked."""

    def __init__(self, locked_times: int, message: str = "database is locked") -> None:
        self.locked_times = locked_times
        self.message = message
        self.attempts = 0

    def execute(self, sql: str) -> None:
        assert sql == "PRAGMA journal_mode = WAL"
        self.attempts += 1
        if self.attempts <= self.locked_times:
            raise sqlite3.OperationalError(self.message)


def test_a_lock_that_clears_is_waited_out() -> None:
    conn = Conn(locked_times=3)
    sqlite_store._enter_wal_mode(conn, time.monotonic() + 5)  # type: ignore[arg-type]
    assert conn.attempts == 4


def test_a_lock_that_lasts_past_the_deadline_is_raised() -> None:
    conn = Conn(locked_times=10**9)
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        sqlite_store._enter_wal_mode(conn, time.monotonic() + 0.05)  # type: ignore[arg-type]
    assert conn.attempts >= 2


def test_other_errors_are_not_retried() -> None:
    conn = Conn(locked_times=5, message="disk I/O error")
    with pytest.raises(sqlite3.OperationalError, match="disk I/O"):
        sqlite_store._enter_wal_mode(conn, time.monotonic() + 5)  # type: ignore[arg-type]
    assert conn.attempts == 1


def test_a_store_held_locked_by_another_writer_opens_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "llmflow.db"
    SqliteStore(path).close()  # created and already in WAL mode
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        store = SqliteStore(path, busy_timeout=0.2)
        assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        store.close()
    finally:
        other.execute("ROLLBACK")
        other.close()


def test_a_file_that_is_not_a_database_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "llmflow.db"
    path.write_bytes(b"not a database at all" * 100)
    with pytest.raises(StoreError, match=str(path)):
        SqliteStore(path)


def test_synchronous_full_is_chosen_in_the_url_and_normal_is_the_default(tmp_path: Path) -> None:
    full = open_store("sqlite:///full.db?synchronous=full", tmp_path)
    plain = open_store("sqlite:///plain.db", tmp_path)
    try:
        assert isinstance(full, SqliteStore) and full.path == str(tmp_path / "full.db")
        assert full._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL: fsync per commit
        assert isinstance(plain, SqliteStore) and plain._db.execute("PRAGMA synchronous").fetchone()[0] == 1
        full.create_run(RunRecord(id="r1", flow_name="f", created_at=1.0), [NewEvent(T.RUN_CREATED)], 1.0)
        other = sqlite3.connect(tmp_path / "full.db")
        try:
            assert other.execute("SELECT count(*) FROM events WHERE run_id = 'r1'").fetchone()[0] == 1
        finally:
            other.close()
    finally:
        full.close()
        plain.close()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("sqlite:///x.db?synchronous=off", "synchronous='off'.*synchronous=full"),
        ("sqlite:///x.db?journal=delete", "unknown option 'journal'.*synchronous=full"),
    ],
)
def test_a_wrong_sqlite_url_option_names_it_and_the_fix(tmp_path: Path, url: str, message: str) -> None:
    with pytest.raises(StoreError) as info:
        open_store(url, tmp_path)
    assert re.search(message, f"{info.value.message} {info.value.hint}")
    assert not (tmp_path / "x.db").exists()  # nothing was created
