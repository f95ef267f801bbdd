"""Microseconds per ``Store.append`` call, for batches of 1 and 5 small events.

    python bench/store_append.py [--n 5000] [--postgres postgresql://user@host/db]

Measures memory and SQLite (a temporary file: WAL, synchronous=NORMAL; and ``sqlite full``,
the same with ``?synchronous=full``: an fsync per commit), and Postgres when a
URL is given (it writes into that URL's search_path schema). Each call is timed on its own;
the median is the number to compare (the mean includes WAL checkpoints and other processes
on the machine). The ``sqlite3 floor`` row issues the bare statements one append needs
(BEGIN IMMEDIATE, UPDATE runs, INSERT events, COMMIT) by hand on the same file: the part of
the cost that is the disk and SQLite, not llmflow.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from llmflow.engine.events import EventType, NewEvent
from llmflow.store.base import RunRecord, Store
from llmflow.store.factory import open_store


def batch(size: int, i: int) -> list[NewEvent]:
    return [
        NewEvent(EventType.LLM_TOKENS, step_id="classify", attempt=1, payload={"text": f"token {i}.{k}"})
        for k in range(size)
    ]


def timed(call: Callable[[int], object], n: int) -> tuple[float, float]:
    """(mean, median) microseconds per call, after a short warm-up."""
    for i in range(max(1, n // 20)):
        call(i)
    lat = []
    for i in range(n):
        t = time.perf_counter()
        call(i)
        lat.append(time.perf_counter() - t)
    return statistics.fmean(lat) * 1e6, statistics.median(lat) * 1e6


def measure_store(store: Store, size: int, n: int) -> tuple[float, float]:
    run_id = f"bench-{size}-{time.time_ns()}"
    store.create_run(RunRecord(id=run_id, flow_name="bench", created_at=time.time()), [], now=time.time())
    batches = [batch(size, i) for i in range(n + n // 20 + 1)]
    return timed(lambda i: store.append(run_id, batches[i], 2.0), n)


def measure_floor(path: str, size: int, n: int) -> tuple[float, float]:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous = NORMAL")
    run_id = f"floor-{size}"
    conn.execute("INSERT INTO runs (id, flow_name) VALUES (?, 'bench')", (run_id,))
    row = "(?, ?, ?, ?, ?, ?, ?, ?, ?)"
    insert = "INSERT INTO events (run_id, seq, type, ts, message, step_id, unit, attempt, payload) VALUES "
    insert += ", ".join([row] * size)
    state = {"seq": 0}

    def append(i: int) -> None:
        conn.execute("BEGIN IMMEDIATE")
        first = state["seq"] + 1
        state["seq"] += size
        conn.execute("UPDATE runs SET last_seq = ? WHERE id = ?", (state["seq"], run_id))
        params: list[object] = []
        for k in range(size):
            params += [
                run_id,
                first + k,
                "LLM_TOKENS",
                2.0,
                "",
                "classify",
                None,
                1,
                json.dumps({"text": f"t {i}.{k}"}),
            ]
        conn.execute(insert, params)
        conn.execute("COMMIT")

    try:
        return timed(append, n)
    finally:
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=5000, help="appends per measurement")
    parser.add_argument("--postgres", help="also measure this Postgres URL")
    args = parser.parse_args()
    print(f"µs per append call, n={args.n}: mean / median")
    print(f"{'store':<16}{'batch of 1':>20}{'batch of 5':>20}")

    def show(name: str, one: tuple[float, float], five: tuple[float, float]) -> None:
        print(f"{name:<16}{one[0]:>11.1f} / {one[1]:<6.1f}{five[0]:>11.1f} / {five[1]:<6.1f}")

    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.db"
        urls = {
            "memory": "memory://",
            "sqlite": f"sqlite:///{db}",
            # an fsync of the WAL per commit: durable across a power loss too
            "sqlite full": f"sqlite:///{Path(tmp) / 'full.db'}?synchronous=full",
        }
        if args.postgres:
            urls["postgres"] = args.postgres
        for name, url in urls.items():
            store = open_store(url)
            n = args.n if name != "postgres" else min(args.n, 1000)
            try:
                show(name, measure_store(store, 1, n), measure_store(store, 5, n))
            finally:
                store.close()
        show("sqlite3 floor", measure_floor(str(db), 1, args.n), measure_floor(str(db), 5, args.n))


if __name__ == "__main__":
    main()
