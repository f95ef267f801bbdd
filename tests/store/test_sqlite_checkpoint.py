"""WAL checkpoints run on the checkpointer's thread, never in the commit of the store's
caller, and they keep the WAL file bounded; closing the store removes it."""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

from llmflow.engine.events import EventType as T
from llmflow.engine.events import NewEvent
from llmflow.store.base import RunRecord
from llmflow.store.sqlite import SqliteStore
from llmflow.store.sqlite_checkpoint import Checkpointer


def _append_steps(store: SqliteStore, run_id: str, commits: int) -> None:
    """``commits`` appends of a step's four events (each its own transaction)."""
    for i in range(commits):
        sid = f"s{i}"
        store.append(
            run_id,
            [
                NewEvent(T.STEP_STARTED, step_id=sid),
                NewEvent(T.ATTEMPT_STARTED, step_id=sid, attempt=1),
                NewEvent(T.ATTEMPT_COMPLETED, step_id=sid, attempt=1, payload={"output": "x" * 200}),
                NewEvent(T.STEP_COMPLETED, step_id=sid, payload={"output": "x" * 200}),
            ],
            float(i),
        )


def _wal(path: Path) -> Path:
    return path.with_name(path.name + "-wal")


def _store_with_run(path: Path, **kw: object) -> SqliteStore:
    store = SqliteStore(path, **kw)  # type: ignore[arg-type]
    store.migrate()
    store.create_run(RunRecord(id="r1", flow_name="f", created_at=1.0), [NewEvent(T.RUN_CREATED)], 1.0)
    return store


def test_the_store_connection_never_checkpoints_on_its_own(tmp_path: Path) -> None:
    store = _store_with_run(tmp_path / "llmflow.db")
    try:
        assert store._db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        assert store.checkpointer is not None
    finally:
        store.close()


def test_checkpoints_keep_the_wal_bounded_and_run_on_their_own_thread(tmp_path: Path) -> None:
    # the same 600 commits without checkpoints: the WAL holds every page written
    unbounded = _store_with_run(tmp_path / "off.db", checkpoint_every=10**9, checkpoint_every_rows=10**9)
    _append_steps(unbounded, "r1", 600)
    grown = _wal(tmp_path / "off.db").stat().st_size
    assert unbounded.checkpointer is not None and unbounded.checkpointer.checkpoints == 0
    unbounded.close()

    path = tmp_path / "on.db"
    store = _store_with_run(path, checkpoint_every=50, checkpoint_every_rows=10**9)
    seen: set[str] = set()
    real = Checkpointer._work

    def work(self: Checkpointer) -> None:
        seen.add(threading.current_thread().name)
        real(self)

    Checkpointer._work = work  # type: ignore[method-assign]
    try:
        _append_steps(store, "r1", 600)  # writes without a pause: checkpoints run meanwhile
    finally:
        Checkpointer._work = real  # type: ignore[method-assign]
    assert store.checkpointer is not None
    assert store.checkpointer.checkpoints >= 3, store.checkpointer.checkpoints
    assert store.checkpointer.finished >= 2  # each finished by a later commit of the writer
    assert seen == {"llmflow-checkpoint"}
    busy, frames, copied = store.checkpointer.last or (1, 0, 0)
    assert busy == 0 and copied == frames  # nothing held it back: every frame was copied
    size = _wal(path).stat().st_size
    assert size * 4 < grown, (size, grown)  # restarted from its start after each checkpoint
    # everything is in the database, as another connection reads it
    other = sqlite3.connect(path)
    try:
        assert other.execute("SELECT count(*) FROM events WHERE run_id = 'r1'").fetchone()[0] == 1 + 600 * 4
    finally:
        other.close()
    store.close()
    assert not _wal(path).exists()  # the last connection closed checkpointed the rest
    assert not any(t.name == "llmflow-checkpoint" for t in threading.enumerate())


def test_a_group_commit_of_many_rows_counts_as_much_as_many_commits(tmp_path: Path) -> None:
    store = _store_with_run(tmp_path / "llmflow.db", checkpoint_every=10**9, checkpoint_every_rows=100)
    try:
        events = [NewEvent(T.LLM_TOKENS, step_id="s", attempt=1, payload={"text": "t"}) for _ in range(60)]
        store.append("r1", events, 2.0)  # 60 event rows + the run row: under 100
        assert store.checkpointer is not None
        assert store.checkpointer.wait(30) and store.checkpointer.checkpoints == 0
        store.append("r1", events, 3.0)  # past 100 rows since the cycle began: one checkpoint
        assert store.checkpointer.wait(30) and store.checkpointer.checkpoints == 1
    finally:
        store.close()


def test_a_store_that_only_reads_starts_no_thread(tmp_path: Path) -> None:
    path = tmp_path / "llmflow.db"
    _store_with_run(path).close()
    before = {t.ident for t in threading.enumerate()}
    store = SqliteStore(path)
    try:
        assert store.get_run("r1") is not None
        assert store.events("r1")
        assert {t.ident for t in threading.enumerate()} == before
    finally:
        store.close()


def test_a_failing_checkpoint_is_logged_and_the_store_writes_on(tmp_path: Path, caplog: object) -> None:
    path = tmp_path / "llmflow.db"
    store = _store_with_run(path, checkpoint_every=1)
    assert store.checkpointer is not None
    store.checkpointer.path = str(tmp_path / "missing-dir" / "x.db")  # its connection cannot open
    _append_steps(store, "r1", 3)
    assert store.checkpointer.wait(30)
    assert store.checkpointer.checkpoints == 0
    assert "WAL checkpoint of" in caplog.text  # type: ignore[attr-defined]
    _append_steps(store, "r1", 2)
    assert len(store.events("r1")) == 1 + 5 * 4
    store.close()


def test_an_in_memory_database_has_no_checkpointer() -> None:
    store = SqliteStore(":memory:")
    try:
        assert store.checkpointer is None
    finally:
        store.close()


def test_wait_without_a_request_returns_at_once(tmp_path: Path) -> None:
    c = Checkpointer(os.fspath(tmp_path / "x.db"))
    assert c.wait(0.1)
    c.close()


_WRITER = r"""
import sys, time
from llmflow.engine.events import NewEvent
from llmflow.store.sqlite import SqliteStore

store = SqliteStore(sys.argv[1], checkpoint_every=5, checkpoint_every_rows=10**9)
i = 0
while True:  # until killed: every line printed is an append that has committed
    evs = store.append("r1", [NewEvent("LLM_TOKENS", payload={"text": "x" * 500, "i": i})], time.time())
    print(evs[-1].seq, store.checkpointer.checkpoints, flush=True)
    i += 1
"""


def test_kill_9_during_background_checkpoints_loses_no_committed_event(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    path = tmp_path / "llmflow.db"
    _store_with_run(path).close()
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    committed, checkpoints = 0, 0
    deadline = time.monotonic() + 120
    try:
        for line in proc.stdout:  # kill it mid-flight once a few dozen checkpoints have run
            committed, checkpoints = (int(x) for x in line.split())
            if checkpoints >= 30 or time.monotonic() > deadline:
                break
        proc.send_signal(signal.SIGKILL)
    finally:
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, err
    assert checkpoints >= 30, (checkpoints, err)
    store = SqliteStore(path)
    try:
        assert store._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        seqs = [e.seq for e in store.events("r1")]
        # every append the writer reported is there, nothing is missing before it
        assert seqs[:committed] == list(range(1, committed + 1))
        assert store.get_run("r1").last_seq == len(seqs) >= committed  # type: ignore[union-attr]
    finally:
        store.close()
