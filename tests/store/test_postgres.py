"""What only the Postgres store does on its write path (the contract suite covers the rest):
a batch's events written as one JSON array, a failed transaction ended on the connection,
and the wake-up sent once the events are committed.

Needs the Postgres test server (see test_contract.py); each test gets its own schema.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from llmflow.engine.events import EventType as T
from llmflow.engine.events import NewEvent
from llmflow.errors import StoreError
from llmflow.store.factory import open_store

from .contract import rec
from .test_contract import pg_schema_url


@pytest.fixture
def url() -> Iterator[str]:
    yield from pg_schema_url()


@pytest.fixture
def store(url: str) -> Iterator[Any]:
    s = open_store(url)
    yield s
    s.close()


ODD_TEXT = [
    "quotes \" and ' and a backslash \\ and \\u0041 as text",
    "lines\nand\ttabs\r\n",
    "unicode: é ß 中文 🙂 (an astral character)",
    "",
    "[1, 2] looks like JSON",
]


def test_events_of_any_text_and_payload_round_trip_exactly(store: Any) -> None:
    store.create_run(rec("r1"), [NewEvent(T.RUN_CREATED, "created")], 1.0)
    payloads: list[dict[str, Any]] = [
        {"text": t, "n": 2**53, "f": 0.1 + 0.2, "neg": -1e-300, "nested": {"a": [None, True, t]}}
        for t in ODD_TEXT
    ]
    now = 1764300000.1234567  # a float that needs all 17 digits
    new = [
        NewEvent(
            T.DIRECTIVE,
            msg,
            step_id=(None if i % 2 else f"s{i}"),
            unit=(None if i % 3 else "u"),
            attempt=(None if i % 2 else i),
            payload=p,
        )
        for i, (msg, p) in enumerate(zip(ODD_TEXT, payloads, strict=True))
    ]
    stored = store.append("r1", new, now)
    read = store.events("r1", 1)
    assert [e.to_dict() for e in read] == [e.to_dict() for e in stored]
    for e, n in zip(read, new, strict=True):
        assert (e.message, e.step_id, e.unit, e.attempt, e.payload, e.ts) == (
            n.message,
            n.step_id,
            n.unit,
            n.attempt,
            n.payload,
            now,
        )
    assert [e.seq for e in read] == [2, 3, 4, 5, 6]
    ids = [e.id for e in read]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    # one transaction's ids (events_since is left to the contract suite: its horizon depends
    # on every transaction of the cluster, other test runs' included)
    assert len({i >> 20 for i in ids}) == 1


def test_a_failed_batch_writes_nothing_and_leaves_the_connection_usable(store: Any) -> None:
    store.create_run(rec("r1"), [NewEvent(T.RUN_CREATED, "created")], 1.0)
    batch = [("r1", [NewEvent(T.DIRECTIVE, "kept?")], 2.0), ("nope", [NewEvent(T.DIRECTIVE, "x")], 2.0)]
    with pytest.raises(StoreError, match="no run nope"):
        store.append_many(batch)
    with pytest.raises(StoreError, match="already exists"):
        store.create_run(rec("r1"), [NewEvent(T.RUN_CREATED, "again")], 3.0)
    # neither failure left a transaction open on the store's connection
    assert store._conn.info.transaction_status == store._pg.pq.TransactionStatus.IDLE
    assert [e.message for e in store.events("r1")] == ["created"]
    assert store.get_run("r1").last_seq == 1
    assert [e.seq for e in store.append("r1", [NewEvent(T.DIRECTIVE, "next")], 4.0)] == [2]
    # a database error inside the transaction (a NUL Postgres text cannot hold) is a StoreError too
    with pytest.raises(StoreError):
        store.append("r1", [NewEvent(T.DIRECTIVE, "nul \x00 here")], 5.0)
    assert store._conn.info.transaction_status == store._pg.pq.TransactionStatus.IDLE
    assert [e.seq for e in store.append("r1", [NewEvent(T.DIRECTIVE, "after")], 6.0)] == [3]


def test_the_wake_up_comes_after_the_commit_and_names_the_last_seq(store: Any, url: str) -> None:
    import psycopg

    # the channel is database-wide: other schemas' tests notify on it too, so the run ids
    # are unique and foreign wake-ups are skipped
    r1, r2 = f"wake-{uuid.uuid4().hex}", f"wake-{uuid.uuid4().hex}"
    store.create_run(rec(r1), [NewEvent(T.RUN_CREATED, "created")], 1.0)
    store.create_run(rec(r2), [NewEvent(T.RUN_CREATED, "created")], 1.0)
    got = []
    with psycopg.connect(url, autocommit=True) as listener, psycopg.connect(url, autocommit=True) as other:
        listener.execute("LISTEN llmflow_events")
        store.append_many(
            [
                (r1, [NewEvent(T.DIRECTIVE, "a"), NewEvent(T.DIRECTIVE, "b")], 2.0),
                (r2, [NewEvent(T.DIRECTIVE, "c")], 2.0),
            ]
        )
        for note in listener.notifies(timeout=10):
            run_id, _, seq = note.payload.rpartition(":")
            if run_id not in (r1, r2):
                continue
            # the events are visible to another connection by the time the wake-up arrives
            last = other.execute("SELECT max(seq) FROM events WHERE run_id = %s", (run_id,)).fetchone()
            got.append((run_id, int(seq), last[0]))
            if len(got) == 2:
                break
    assert sorted(got) == sorted([(r1, 3, 3), (r2, 2, 2)])
    assert [e.message for e in store.wait_for_events(r1, 1, timeout=1)] == ["a", "b"]


def test_lease_writes_answer_in_one_round_trip_with_the_same_results(store: Any) -> None:
    store.create_run(rec("r1", created_at=1.0), [NewEvent(T.RUN_CREATED, "created")], 1.0)
    store.create_run(rec("r2", created_at=2.0), [NewEvent(T.RUN_CREATED, "created")], 2.0)
    claimed = store.claim_many("w1", now=10.0, lease_seconds=5.0, limit=5)
    assert [r.id for r in claimed] == ["r1", "r2"] and all(r.owner == "w1" for r in claimed)
    assert store.claim("w2", now=11.0, lease_seconds=5.0) is None  # both leases live
    assert store.heartbeat("r1", "w2", now=12.0, lease_seconds=5.0) is False
    assert store.heartbeat("r1", "w1", now=12.0, lease_seconds=5.0) is True
    store.release("r2", "w1")
    again = store.claim("w2", now=13.0, lease_seconds=5.0)
    assert again is not None and again.id == "r2" and again.owner == "w2"
    assert store._conn.info.transaction_status == store._pg.pq.TransactionStatus.IDLE


def test_an_event_is_found_by_its_id_while_an_open_transaction_holds_the_stream_back(
    store: Any, url: str
) -> None:
    # Agent Runner's GET /runs/{n} names a run by the id of its first event: a transaction
    # open elsewhere in the cluster (a slow writer, another tenant) holds events_since back,
    # and the run must not answer 404 meanwhile
    import psycopg

    other = psycopg.connect(url)  # not autocommit: the SELECT below leaves it in a transaction
    try:
        other.execute("SELECT txid_current()")  # an assigned transaction id: the horizon stops here
        created = store.create_run(rec("r1"), [NewEvent(T.RUN_CREATED, "created")], 1.0)
        assert store.events_since(0) == []  # held back, as documented
        assert store.event_by_id(created[0].id) == created[0]
    finally:
        other.close()
    assert store.event_by_id(created[0].id + 1) is None
