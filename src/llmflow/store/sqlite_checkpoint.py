"""WAL checkpoints on a thread of their own, so the writing thread never waits for them.

SQLite in WAL mode appends each commit to ``<db>-wal``; a *checkpoint* copies those pages
back into the database file and, with ``synchronous = NORMAL``, fsyncs it. By default the
connection that commits runs one whenever the WAL passes 1,000 pages: one commit in a
hundred or so then stalls its caller for the copy and the fsync. For the store that caller
is the event loop (group commit runs on it), so every run of the process waited with it.

The store turns that off (``PRAGMA wal_autocheckpoint = 0``) and tells a
:class:`Checkpointer` of each commit; every ``every`` commits or ``every_rows`` rows written
(a group commit may carry hundreds of runs) the checkpointer's thread runs a PASSIVE
checkpoint on its own connection (it never blocks a writer or a reader; pages
a reader still needs are left for the next one): the bulk of the copy and its fsync happen
beside the runs instead of in front of them. Writes go on meanwhile, so that checkpoint
never catches up with the WAL's end, and SQLite restarts the WAL from its beginning only
when a write finds it entirely copied back. So the commit after a finished background
checkpoint *finishes* it on the writer's own connection: a PASSIVE checkpoint of the few
pages written since (measured: ~1 ms, against ~35 ms for the 1,500 pages of an inline
checkpoint), after which the next write restarts the WAL. One cycle runs at a time (a
background checkpoint running while the writer finishes the last one would turn that finish
into a no-op), and the WAL stays bounded by about one cycle's writes. There is no timer: an idle store checkpoints nothing, and closing it
checkpoints what is left (SQLite does so when the last connection closes).

Hand-written because SQLite's checkpointing is a pragma and a thread, not a library.
"""

from __future__ import annotations

import logging
import sqlite3
import threading

log = logging.getLogger("llmflow.store")

DEFAULT_EVERY = 100  # commits between checkpoints (a W1 step's commit writes 8 pages)
DEFAULT_EVERY_ROWS = 2000  # or rows written: a group commit of many runs writes hundreds


class Checkpointer:
    """Runs ``PRAGMA wal_checkpoint(PASSIVE)`` on ``path`` in a daemon thread, once per
    ``every`` commits or ``every_rows`` rows written (whichever comes first: a group commit
    may carry hundreds of runs), as reported by :meth:`committed`. The thread and its connection are
    made at the first checkpoint, so a store that only reads costs nothing."""

    def __init__(
        self,
        path: str,
        *,
        every: int = DEFAULT_EVERY,
        every_rows: int = DEFAULT_EVERY_ROWS,
        busy_timeout: float = 10.0,
    ) -> None:
        self.path = path
        self.every = max(1, every)
        self.every_rows = max(1, every_rows)
        self._rows_mark = 0  # the connection's total_changes when the cycle began
        self.busy_timeout = busy_timeout
        self.checkpoints = 0  # background checkpoints completed (for tests and benchmarks)
        self.finished = 0  # of them finished by a writer's commit
        self.last: tuple[int, int, int] | None = None  # (busy, WAL frames, frames copied)
        self._commits = 0
        self._requested = 0  # checkpoints asked for
        self._done = 0  # checkpoints finished (or failed)
        self._cv = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False
        # the cycle: "idle"; "running" (a background checkpoint was asked for); "finish" (it
        # ended: the next commit finishes it on the writer's connection)
        self._phase = "idle"

    def committed(self, conn: sqlite3.Connection) -> None:
        """One more commit on the database, by ``conn`` (called by the writer, under the
        store's lock, outside any transaction)."""
        if self._phase == "finish":
            self._phase = "idle"
            try:  # the pages written since the background checkpoint began: ~1 ms
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                self.finished += 1
            except sqlite3.Error as exc:
                log.warning("WAL checkpoint of %s failed: %s", self.path, exc)
            self._commits = 0
            self._rows_mark = conn.total_changes
            return
        self._commits += 1
        if self._phase != "idle":
            return
        if self._commits >= self.every or conn.total_changes - self._rows_mark >= self.every_rows:
            # one cycle at a time: a background checkpoint running while the writer finishes
            # the last one would make that finish a no-op (SQLITE_BUSY) and the WAL never restart
            self._phase = "running"
            self.request()

    def request(self) -> None:
        """Ask for a checkpoint as soon as the thread is free (requests made while one runs
        are served by one more checkpoint, not one each)."""
        with self._cv:
            if self._closed:
                return
            self._requested += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="llmflow-checkpoint", daemon=True)
                self._thread.start()
            self._cv.notify_all()

    def wait(self, timeout: float = 30.0) -> bool:
        """Wait until every checkpoint asked for so far has run; False on timeout."""
        with self._cv:
            target = self._requested
            return self._cv.wait_for(lambda: self._done >= target or self._closed, timeout)

    def close(self, timeout: float = 30.0) -> None:
        """Stop the thread (after the checkpoint it is running, if any) and close its
        connection. Call before the store's own connection closes: the last connection to
        close is the one that checkpoints the rest and removes the WAL file."""
        with self._cv:
            self._closed = True
            self._cv.notify_all()
            t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout)

    # -- the thread ----------------------------------------------------------------------------
    def _work(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            while True:
                with self._cv:
                    self._cv.wait_for(lambda: self._closed or self._requested > self._done)
                    if self._closed:
                        return
                    target = self._requested
                try:
                    if conn is None:
                        conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None)
                    row = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    self.last = (int(row[0]), int(row[1]), int(row[2])) if row else None
                    self.checkpoints += 1
                    self._phase = "finish"
                except sqlite3.Error as exc:  # the next cycle tries again
                    log.warning("WAL checkpoint of %s failed: %s", self.path, exc)
                    self._phase = "idle"
                    if conn is not None:
                        conn.close()
                        conn = None
                with self._cv:
                    self._done = max(self._done, target)
                    self._cv.notify_all()
        finally:
            if conn is not None:
                conn.close()
            with self._cv:
                self._done = self._requested
                self._cv.notify_all()
