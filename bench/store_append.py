"""Microseconds per ``Store.append`` call, for batches of 1 and 5 small events.

    python bench/store_append.py [--n 5000] [--postgres postgresql://user@host/db]

Memory and SQLite (a temporary file, WAL, synchronous=NORMAL) always; Postgres only when a
URL is given (it writes into that database's search_path schema).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from llmflow.engine.events import EventType, NewEvent
from llmflow.store.base import RunRecord, Store
from llmflow.store.factory import open_store


def batch(size: int, i: int) -> list[NewEvent]:
    return [
        NewEvent(EventType.LLM_TOKENS, step_id="classify", attempt=1, payload={"text": f"token {i}.{k}"})
        for k in range(size)
    ]


def measure(store: Store, size: int, n: int) -> float:
    run_id = f"bench-{size}-{time.time_ns()}"
    store.create_run(RunRecord(id=run_id, flow_name="bench", created_at=time.time()), [], now=time.time())
    batches = [batch(size, i) for i in range(n)]
    for b in batches[: max(1, n // 20)]:  # warm up: statement cache, page cache
        store.append(run_id, b, 1.0)
    start = time.perf_counter()
    for b in batches:
        store.append(run_id, b, 2.0)
    return (time.perf_counter() - start) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=5000, help="appends per measurement")
    parser.add_argument("--postgres", help="also measure this Postgres URL")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        urls = {"memory": "memory://", "sqlite": f"sqlite:///{Path(tmp) / 'bench.db'}"}
        if args.postgres:
            urls["postgres"] = args.postgres
        print(f"{'store':<10}{'batch of 1':>14}{'batch of 5':>14}   (µs per append, n={args.n})")
        for name, url in urls.items():
            store = open_store(url)
            try:
                n = args.n if name != "postgres" else min(args.n, 1000)
                one, five = measure(store, 1, n), measure(store, 5, n)
            finally:
                store.close()
            print(f"{name:<10}{one:>14.1f}{five:>14.1f}")


if __name__ == "__main__":
    main()
