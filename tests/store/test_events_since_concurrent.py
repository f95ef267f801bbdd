"""The store-wide "events since" cursor under concurrent writers: a follower that reads
``events_since`` the way every all-runs stream does (:class:`llmflow.runtime.follow.LogFollower`,
behind the SSE stream of ``server/live.py``) sees every committed event exactly once, and each
run's events in ``seq`` order, while several writers append at once - each on a store handle
(a database connection) of its own, as several workers are.

On Postgres the writers' transactions get their ids (hence their events' ids) when they take
their runs, and commit in whatever order they finish: a transaction with a lower id often
commits after one with a higher id, which a plain ``id > cursor`` read would skip. The
snapshot horizon in ``events_since`` must hold such events back until they can no longer
appear below the cursor. On SQLite the write lock orders the commits.

Postgres: the test server of test_contract.py, a schema of its own (skipped when unreachable,
failed in CI).
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from tests.support import wait_until

from llmflow.engine.events import Event, NewEvent
from llmflow.engine.events import EventType as T
from llmflow.runtime.follow import LogFollower

from .contract import rec
from .test_contract import opening, pg_schema_url

WRITERS = 3
SHARED_RUNS = 4  # every writer appends to these (runs' locks contend) ...
OWN_RUNS = 2  # ... and to runs it creates while the others write
TRANSACTIONS = 120  # per writer
PAGE = 7  # the follower's page: small, so pages end in the middle of transactions


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'data' / 'llmflow.db'}"
    else:
        yield from pg_schema_url()


@pytest.fixture
def store_factory(store_url: str) -> Iterator[Any]:
    yield from opening(store_url)


def _batch(rng: random.Random, who: int, i: int) -> list[NewEvent]:
    return [
        NewEvent(T.LLM_TOKENS, "tok", payload={"who": who, "i": i, "k": k}) for k in range(rng.randint(1, 4))
    ]


def _write(store: Any, who: int, start: threading.Barrier) -> list[Event]:
    """One writer: TRANSACTIONS transactions of one to three appends (single appends,
    group commits of several runs, new runs written with their first events)."""
    rng = random.Random(1000 + who)
    shared = [f"shared{k}" for k in range(SHARED_RUNS)]
    own: list[str] = []
    stored: list[Event] = []
    start.wait()
    for i in range(TRANSACTIONS):
        if len(own) < OWN_RUNS and i in (TRANSACTIONS // 3, 2 * TRANSACTIONS // 3):
            run_id = f"w{who}-own{len(own)}"
            stored += store.create_run(rec(run_id, created_at=float(i)), _batch(rng, who, i), float(i))
            own.append(run_id)
            continue
        targets = rng.sample(shared + own, rng.randint(1, 3))
        if len(targets) == 1 and rng.random() < 0.5:
            stored += store.append(targets[0], _batch(rng, who, i), float(i))
        else:
            for out in store.append_many([(r, _batch(rng, who, i), float(i)) for r in targets]):
                stored += out
    return stored


@pytest.mark.timeout(120)
def test_the_global_cursor_never_skips_or_repeats_under_concurrent_writers(store_factory: Any) -> None:
    setup = store_factory()
    created: list[Event] = []
    for k in range(SHARED_RUNS):
        created += setup.create_run(rec(f"shared{k}"), [NewEvent(T.RUN_CREATED, "created")], 0.0)

    follower_store = store_factory()
    follower = LogFollower(follower_store, None, 0, batch=PAGE)  # as live_frames / SSE read it
    seen: list[Event] = []
    writing = threading.Event()
    writing.set()
    follower_error: list[BaseException] = []

    def follow() -> None:
        try:
            while writing.is_set():
                seen.extend(follower.read())
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            follower_error.append(exc)

    reader = threading.Thread(target=follow, name="follower")
    reader.start()
    handles = [store_factory() for _ in range(WRITERS)]  # one connection per writer (workers)
    start = threading.Barrier(WRITERS)
    try:
        with ThreadPoolExecutor(WRITERS) as pool:
            futures = [pool.submit(_write, handles[w], w, start) for w in range(WRITERS)]
            written = created + [e for f in futures for e in f.result()]
    finally:
        writing.clear()
        reader.join(30)
    assert not reader.is_alive()
    if follower_error:
        raise follower_error[0]

    # every committed event, as the store finally holds them
    run_ids = [f"shared{k}" for k in range(SHARED_RUNS)] + [
        f"w{w}-own{k}" for w in range(WRITERS) for k in range(OWN_RUNS)
    ]
    final = {r: setup.events(r) for r in run_ids}
    everything = {(e.run_id, e.seq): e for evs in final.values() for e in evs}
    assert len(everything) == len(written)
    assert sorted((e.run_id, e.seq) for e in written) == sorted(everything)
    for r, evs in final.items():
        assert [e.seq for e in evs] == list(range(1, len(evs) + 1)), f"gap or duplicate in {r}'s seqs"

    # drain: on Postgres a transaction open anywhere in the cluster may hold the horizon back
    # for a while (it delays, never skips), so read on until the cursor reaches the last
    # event's id (bounded); an event skipped on the way shows up as missing below
    last_id = max(e.id or 0 for e in everything.values())

    def drained() -> bool:
        seen.extend(follower.read())
        return follower.cursor >= last_id

    wait_until(drained, timeout=60, what=f"the follower's cursor to reach the last event id {last_id}")
    assert follower.read() == []  # nothing beyond what was committed

    keys = [(e.run_id, e.seq) for e in seen]
    duplicates = sorted(k for k, n in Counter(keys).items() if n > 1)
    assert not duplicates, f"the follower saw these events twice: {duplicates[:10]}"
    missing = sorted(set(everything) - set(keys))
    assert not missing, f"the follower skipped {len(missing)} events: {missing[:10]}"
    assert set(keys) == set(everything)
    ids = [e.id for e in seen]
    assert all(i is not None for i in ids)
    assert ids == sorted(ids), "events_since handed events out of id order"
    for e in seen:  # the very events stored, not just the same keys
        assert e == everything[(e.run_id, e.seq)]
    for r in run_ids:
        assert [e.seq for e in seen if e.run_id == r] == [e.seq for e in final[r]], f"{r} out of seq order"
