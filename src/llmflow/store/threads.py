"""Threads in the store: which runs belong to a conversation thread.

A run joins a thread when it is created with ``thread=NAME`` (the name is kept in the run's
``metadata.thread``); a thread is the runs carrying its name, oldest first. Nothing else is
stored: a thread's messages are read from those runs' events (the event log stays the one
source of truth). Mixed into the SQL stores and mirrored for the memory store.
"""

from __future__ import annotations

from typing import Any


class SqlThreads:
    """Thread queries for the SQL stores; the store provides ``_read`` and ``_ph``."""

    _ph = "?"

    def _read(self, sql: str, params: Any = ()) -> list[Any]:  # pragma: no cover - provided by the store
        raise NotImplementedError

    def _thread_expr(self) -> str:
        return "metadata->>'thread'" if self._ph == "%s" else "json_extract(metadata, '$.thread')"

    def thread_runs(self, name: str) -> list[tuple[str, float, str]]:
        """(run id, created_at, status) of the thread's runs, oldest first."""
        sql = f"SELECT id, created_at, status FROM runs WHERE {self._thread_expr()} = {self._ph} ORDER BY created_at, id"
        return [(r[0], float(r[1]), r[2]) for r in self._read(sql, (name,))]

    def list_threads(self, *, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
        """Threads, most recently used first: name, runs, first and last run time."""
        t = self._thread_expr()
        sql = (
            f"SELECT {t} AS name, COUNT(*), MIN(created_at), MAX(created_at) FROM runs WHERE {t} IS NOT NULL "
            f"GROUP BY {t} ORDER BY MAX(created_at) DESC LIMIT {self._ph} OFFSET {self._ph}"
        )
        return [
            {"name": r[0], "runs": int(r[1]), "first_at": float(r[2]), "last_at": float(r[3])}
            for r in self._read(sql, (limit, offset))
        ]


class MemoryThreads:
    _runs: dict[str, Any]

    def thread_runs(self, name: str) -> list[tuple[str, float, str]]:
        rows = [r for r in list(self._runs.values()) if (r.metadata or {}).get("thread") == name]
        return [(r.id, r.created_at, r.status) for r in sorted(rows, key=lambda r: (r.created_at, r.id))]

    def list_threads(self, *, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
        by: dict[str, list[Any]] = {}
        for r in list(self._runs.values()):
            name = (r.metadata or {}).get("thread")
            if name:
                by.setdefault(name, []).append(r)
        rows = [
            {
                "name": n,
                "runs": len(rs),
                "first_at": min(r.created_at for r in rs),
                "last_at": max(r.created_at for r in rs),
            }
            for n, rs in by.items()
        ]
        rows.sort(key=lambda d: d["last_at"], reverse=True)
        return rows[offset : offset + limit]
