"""The store contract: every backend (memory, sqlite, postgres) must pass these tests.

A backend's test class inherits :class:`StoreContract` and provides a ``store_factory``
fixture: a callable returning an open, migrated handle on one shared database (a second
call gives a second connection to the same data; the memory store returns itself).
Durable backends that several processes can share also inherit :class:`MultiProcessContract`
and provide ``store_url``, a URL ``open_store`` accepts in a child process.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from llmflow.engine.events import EventType as T
from llmflow.engine.events import NewEvent
from llmflow.errors import StoreError
from llmflow.store.base import RunRecord
from llmflow.store.memory import MemoryStore

STEP_FIELDS = ("status", "output", "error", "started_at", "ended_at")


def rec(run_id: str, created_at: float = 1.0, **kw: Any) -> RunRecord:
    return RunRecord(id=run_id, flow_name=kw.pop("flow_name", "review"), created_at=created_at, **kw)


def ev(type_: str, **kw: Any) -> NewEvent:
    return NewEvent(type=type_, **kw)


def step_rows_full(rows: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Step rows with all five fields (a field no event has set yet reads as None)."""
    return {sid: {f: row.get(f) for f in STEP_FIELDS} for sid, row in rows.items()}


def _random_batch(rng: random.Random, types: list[str], b: int) -> list[NewEvent]:
    """1-4 events of random types, steps, units, attempts and payload fields."""
    batch: list[NewEvent] = []
    for _ in range(rng.randint(1, 4)):
        payload: dict[str, Any] = {}
        for key, value in (
            ("model", rng.choice(["m1", "m2", ""])),
            ("output", rng.choice([None, "text", {"k": [1, 2]}, 3])),
            ("error", rng.choice(["boom", ""])),
            ("outputs", {"o": b}),
            ("usage", {"input_tokens": rng.randint(0, 9), "output_tokens": rng.randint(0, 9)}),
            ("cost", rng.choice([0.1, 0.2, 0.3, 1e-7])),
            ("path", f"f{b}.txt"),
            ("size", rng.randint(0, 99)),
            ("prompt", "p"),
        ):
            if rng.random() < 0.4:
                payload[key] = value
        batch.append(
            ev(
                rng.choice(types),
                message=rng.choice(["", "msg"]),
                step_id=rng.choice([None, "a", "b"]),
                unit=rng.choice([None, None, "u1"]),
                attempt=rng.choice([None, 1, 2]),
                payload=payload,
            )
        )
    return batch


class StoreContract:
    @pytest.fixture
    def store(self, store_factory: Any) -> Any:
        return store_factory()

    # runs ----------------------------------------------------------------------------------
    def test_create_run_then_get_run_returns_an_equal_record(self, store: Any) -> None:
        run = RunRecord(
            id="r-full",
            flow_name="review",
            status="QUEUED",
            created_at=10.5,
            inputs={"text": "héllo", "n": [1, 2.5, None, True]},
            outputs={"report": {"score": 3}},
            error="earlier",
            spec={"name": "review", "steps": [{"id": "a"}]},
            fingerprint="sha256:abc",
            options={"model": "fake:echo", "timeout": 30},
            metadata={"tags": ["x"]},
            parent_run_id="r-parent",
            batch_id="b1",
            project_id=7,
            name="nice name",
            goal="the goal",
            run_type="task",
        )
        assert store.create_run(run, [], now=11.0) == []
        assert store.get_run("r-full") == run

    def test_create_run_with_events_numbers_them_from_one(self, store: Any) -> None:
        out = store.create_run(rec("r1"), [ev(T.RUN_CREATED, message="created"), ev(T.RUN_QUEUED)], now=2.0)
        assert [(e.seq, e.type, e.ts, e.run_id) for e in out] == [
            (1, "RUN_CREATED", 2.0, "r1"),
            (2, "RUN_QUEUED", 2.0, "r1"),
        ]
        assert store.get_run("r1").last_seq == 2
        assert store.events("r1") == out

    def test_get_run_of_an_unknown_id_is_none(self, store: Any) -> None:
        assert store.get_run("nope") is None

    def test_creating_a_run_twice_raises_store_error_and_keeps_the_first(self, store: Any) -> None:
        store.create_run(rec("r1", flow_name="first"), [ev(T.RUN_CREATED)], now=1.0)
        with pytest.raises(StoreError, match="r1"):
            store.create_run(rec("r1", flow_name="second"), [ev(T.RUN_CREATED)], now=2.0)
        assert store.get_run("r1").flow_name == "first"
        assert len(store.events("r1")) == 1

    def test_list_runs_is_newest_first_and_paginates(self, store: Any) -> None:
        for i in range(5):
            store.create_run(rec(f"r{i}", created_at=float(i)), [], now=float(i))
        store.create_run(rec("r4b", created_at=4.0), [], now=4.0)  # same created_at: id breaks the tie
        assert [r.id for r in store.list_runs()] == ["r4b", "r4", "r3", "r2", "r1", "r0"]
        assert [r.id for r in store.list_runs(limit=2)] == ["r4b", "r4"]
        assert [r.id for r in store.list_runs(limit=2, offset=2)] == ["r3", "r2"]
        assert [r.id for r in store.list_runs(limit=10, offset=5)] == ["r0"]
        assert store.list_runs(offset=6) == []

    def test_list_and_count_runs_filter(self, store: Any) -> None:
        store.create_run(rec("a", 1.0, flow_name="f1", batch_id="b1", project_id=1), [], now=1.0)
        store.create_run(rec("b", 2.0, flow_name="f1", status="RUNNING", parent_run_id="a"), [], now=2.0)
        store.create_run(rec("c", 3.0, flow_name="f2", batch_id="b1", project_id=2), [], now=3.0)

        def ids(**kw: Any) -> list[str]:
            return [r.id for r in store.list_runs(**kw)]

        assert ids(flow="f1") == ["b", "a"]
        assert ids(status="QUEUED") == ["c", "a"]
        assert ids(batch_id="b1") == ["c", "a"]
        assert ids(project_id=2) == ["c"]
        assert ids(parent_run_id="a") == ["b"]
        assert ids(flow="f1", status="QUEUED") == ["a"]
        assert ids(flow="", status="") == ["c", "b", "a"]  # empty strings do not filter
        assert ids(flow="none") == []
        assert store.count_runs() == 3
        assert store.count_runs(flow="f1") == 2
        assert store.count_runs(status="RUNNING") == 1
        assert store.count_runs(batch_id="b1", flow="f2") == 1

    def test_update_run_sets_fields_including_json_ones(self, store: Any) -> None:
        store.create_run(rec("r1", outputs={"x": 1}), [], now=1.0)
        store.update_run(
            "r1", status="RUNNING", metadata={"k": ["v"]}, outputs=None, name="renamed", cost=1.5
        )
        r = store.get_run("r1")
        assert (r.status, r.metadata, r.outputs, r.name, r.cost) == (
            "RUNNING",
            {"k": ["v"]},
            None,
            "renamed",
            1.5,
        )
        store.update_run("r1", outputs={"y": [1, 2]})
        assert store.get_run("r1").outputs == {"y": [1, 2]}
        store.update_run("r1")  # nothing to change is fine

    def test_update_run_of_an_unknown_run_raises_store_error(self, store: Any) -> None:
        with pytest.raises(StoreError, match="nope"):
            store.update_run("nope", status="RUNNING")
        with pytest.raises(StoreError, match="nope"):
            store.update_run("nope")

    def test_update_run_rejects_an_unknown_field(self, store: Any) -> None:
        store.create_run(rec("r1"), [], now=1.0)
        with pytest.raises(TypeError):
            store.update_run("r1", colour="red")

    # events --------------------------------------------------------------------------------
    def test_append_assigns_contiguous_seq_from_one(self, store: Any) -> None:
        store.create_run(rec("r1"), [], now=1.0)
        a = store.append("r1", [ev(T.RUN_STARTED)], now=2.0)
        b = store.append("r1", [ev(T.LLM_TOKENS, payload={"text": str(i)}) for i in range(5)], now=3.0)
        c = store.append("r1", [ev(T.RUN_COMPLETED)], now=4.0)
        assert [e.seq for e in a + b + c] == list(range(1, 8))
        assert [e.seq for e in store.events("r1")] == list(range(1, 8))
        assert store.get_run("r1").last_seq == 7

    def test_event_ids_increase_across_runs(self, store: Any) -> None:
        store.create_run(rec("r1"), [], now=1.0)
        store.create_run(rec("r2"), [], now=1.0)
        ids = []
        for i in range(3):
            ids += [e.id for e in store.append("r1", [ev(T.LLM_TOKENS), ev(T.LLM_TOKENS)], now=2.0 + i)]
            ids += [e.id for e in store.append("r2", [ev(T.LLM_TOKENS)], now=2.0 + i)]
        assert all(isinstance(i, int) for i in ids)
        assert ids == sorted(ids) and len(set(ids)) == len(ids)
        assert [e.seq for e in store.events("r2")] == [1, 2, 3]

    def test_append_returns_exactly_what_events_reads_back(self, store: Any) -> None:
        store.create_run(rec("r1"), [], now=1.0)
        out = store.append(
            "r1",
            [
                ev(
                    T.ATTEMPT_STARTED,
                    message="go",
                    step_id="s",
                    unit="item-1",
                    attempt=2,
                    payload={"model": "m"},
                ),
                ev("CUSTOM_TYPE", payload={"nested": {"list": [1, "two", None, 3.25, False]}, "ü": "ñ"}),
            ],
            now=5.5,
        )
        assert store.events("r1") == out
        first = out[0]
        assert (first.type, first.ts, first.message, first.step_id, first.unit, first.attempt) == (
            "ATTEMPT_STARTED",
            5.5,
            "go",
            "s",
            "item-1",
            2,
        )
        assert type(first.type) is str
        assert first.attempt_id == "s[item-1]#2"
        assert out[1].payload == {"nested": {"list": [1, "two", None, 3.25, False]}, "ü": "ñ"}

    def test_append_to_an_unknown_run_raises_and_writes_nothing(self, store: Any) -> None:
        with pytest.raises(StoreError, match="nope"):
            store.append("nope", [ev(T.RUN_STARTED)], now=1.0)
        assert store.events("nope") == []
        assert store.events_since(0) == []

    def test_append_of_no_events_returns_nothing(self, store: Any) -> None:
        store.create_run(rec("r1"), [], now=1.0)
        assert store.append("r1", [], now=2.0) == []
        assert store.get_run("r1").last_seq == 0
        with pytest.raises(StoreError):
            store.append("nope", [], now=2.0)

    def test_events_after_seq_and_limit(self, store: Any) -> None:
        store.create_run(rec("r1"), [ev(T.LLM_TOKENS, payload={"i": i}) for i in range(10)], now=1.0)
        assert [e.seq for e in store.events("r1", after_seq=7)] == [8, 9, 10]
        assert [e.seq for e in store.events("r1", after_seq=2, limit=3)] == [3, 4, 5]
        assert [e.seq for e in store.events("r1", limit=2)] == [1, 2]
        assert store.events("r1", after_seq=10) == []
        assert store.events("unknown") == []

    def test_events_since_pages_through_all_runs_in_id_order(self, store: Any) -> None:
        store.create_run(rec("r1"), [ev(T.RUN_CREATED)], now=1.0)
        store.create_run(rec("r2"), [ev(T.RUN_CREATED)], now=1.0)
        store.append("r1", [ev(T.RUN_STARTED), ev(T.RUN_COMPLETED)], now=2.0)
        store.append("r2", [ev(T.RUN_STARTED)], now=2.0)
        # The global cursor may hold events back while a transaction anywhere in the database
        # is still open (Postgres: commit-ordered reads): it delays, never skips. Wait for the
        # horizon to pass (bounded), then everything is there, in order.
        deadline = time.monotonic() + 30
        everything = store.events_since(0)
        while len(everything) < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
            everything = store.events_since(0)
        assert [(e.run_id, e.seq) for e in everything] == [
            ("r1", 1),
            ("r2", 1),
            ("r1", 2),
            ("r1", 3),
            ("r2", 2),
        ]
        first = store.events_since(0, limit=2)
        rest = store.events_since(first[-1].id, limit=10)
        assert first + rest == everything
        assert store.events_since(everything[-1].id) == []

    def test_event_by_id_finds_any_committed_event(self, store: Any) -> None:
        a = store.create_run(rec("r1"), [ev(T.RUN_CREATED)], now=1.0)
        b = store.create_run(rec("r2"), [ev(T.RUN_CREATED)], now=1.0)
        c = store.append("r1", [ev(T.RUN_STARTED), ev(T.RUN_COMPLETED)], now=2.0)
        for e in a + b + c:
            assert store.event_by_id(e.id) == e
        assert store.event_by_id(0) is None
        assert store.event_by_id(-1) is None
        assert store.event_by_id(max(e.id for e in c) + 1000) is None

    # projections: runs ---------------------------------------------------------------------
    def test_run_status_follows_run_events_and_started_at_is_set_once(self, store: Any) -> None:
        store.create_run(rec("r1"), [ev(T.RUN_CREATED), ev(T.RUN_QUEUED)], now=1.0)
        r = store.get_run("r1")
        assert (r.status, r.started_at, r.ended_at) == ("QUEUED", None, None)
        store.append("r1", [ev(T.RUN_STARTED)], now=2.0)
        assert (store.get_run("r1").status, store.get_run("r1").started_at) == ("RUNNING", 2.0)
        store.append("r1", [ev(T.RUN_PAUSED)], now=3.0)
        assert store.get_run("r1").status == "PAUSED"
        store.append("r1", [ev(T.RUN_RESUMED)], now=4.0)
        store.append("r1", [ev(T.RUN_STARTED)], now=5.0)  # a second start keeps the first time
        r = store.get_run("r1")
        assert (r.status, r.started_at, r.ended_at) == ("RUNNING", 2.0, None)
        store.append("r1", [ev(T.RUN_COMPLETED, payload={"outputs": {"report": "ok"}})], now=6.0)
        r = store.get_run("r1")
        assert (r.status, r.started_at, r.ended_at, r.outputs, r.error, r.last_seq) == (
            "COMPLETED",
            2.0,
            6.0,
            {"report": "ok"},
            None,
            7,
        )

    def test_run_failed_records_the_error_from_payload_or_message(self, store: Any) -> None:
        store.create_run(rec("r1"), [ev(T.RUN_STARTED)], now=1.0)
        store.append("r1", [ev(T.RUN_FAILED, message="step a failed", payload={"error": "boom"})], now=2.0)
        r = store.get_run("r1")
        assert (r.status, r.error, r.ended_at) == ("FAILED", "boom", 2.0)
        store.create_run(rec("r2"), [ev(T.RUN_STARTED)], now=1.0)
        store.append("r2", [ev(T.RUN_FAILED, message="step a failed")], now=2.0)
        assert store.get_run("r2").error == "step a failed"

    def test_run_canceled_ends_the_run(self, store: Any) -> None:
        store.create_run(rec("r1"), [ev(T.RUN_STARTED), ev(T.RUN_CANCEL_REQUESTED)], now=1.0)
        assert store.get_run("r1").status == "RUNNING"
        store.append("r1", [ev(T.RUN_CANCELED)], now=3.0)
        r = store.get_run("r1")
        assert (r.status, r.ended_at) == ("CANCELED", 3.0)

    def test_step_rerun_reopens_a_finished_run(self, store: Any) -> None:
        store.create_run(rec("r1"), [ev(T.RUN_STARTED), ev(T.RUN_FAILED, payload={"error": "x"})], now=1.0)
        store.append("r1", [ev(T.STEP_RERUN, step_id="a")], now=2.0)
        r = store.get_run("r1")
        assert (r.status, r.ended_at, r.error, r.started_at) == ("RUNNING", None, None, 1.0)

    def test_one_batch_is_folded_in_order(self, store: Any) -> None:
        store.create_run(rec("r1"), [], now=1.0)
        store.append(
            "r1",
            [
                ev(T.RUN_STARTED),
                ev(T.RUN_FAILED, payload={"error": "x", "outputs": {"partial": 1}}),
                ev(T.STEP_RERUN, step_id="a"),
                ev(T.RUN_STARTED),
            ],
            now=3.0,
        )
        r = store.get_run("r1")
        assert (r.status, r.started_at, r.ended_at, r.error, r.outputs, r.last_seq) == (
            "RUNNING",
            3.0,
            None,
            None,
            {"partial": 1},
            4,
        )

    def test_informational_events_only_move_last_seq(self, store: Any) -> None:
        store.create_run(rec("r1"), [ev(T.RUN_STARTED)], now=1.0)
        before = store.get_run("r1")
        store.append(
            "r1", [ev(T.LLM_TOKENS, step_id="a", attempt=1), ev(T.SHELL_OUTPUT, step_id="b")], now=2.0
        )
        after = store.get_run("r1")
        assert after.last_seq == 3
        assert asdict(after) | {"last_seq": 1} == asdict(before)
        assert store.step_rows("r1") == {} and store.attempts("r1") == [] and store.artifacts("r1") == []

    # projections: steps, attempts, artifacts ------------------------------------------------
    def test_step_rows_follow_step_events(self, store: Any) -> None:
        store.create_run(rec("r1"), [ev(T.RUN_STARTED)], now=1.0)
        store.append("r1", [ev(T.STEP_STARTED, step_id="a"), ev(T.STEP_STARTED, step_id="b")], now=2.0)
        store.append(
            "r1", [ev(T.STEP_COMPLETED, step_id="a", payload={"output": {"label": "news"}})], now=3.0
        )
        store.append("r1", [ev(T.STEP_FAILED, step_id="b", message="b broke")], now=4.0)
        store.append("r1", [ev(T.STEP_SKIPPED, step_id="c")], now=5.0)
        rows = step_rows_full(store.step_rows("r1"))
        assert rows == {
            "a": {
                "status": "COMPLETED",
                "output": {"label": "news"},
                "error": None,
                "started_at": 2.0,
                "ended_at": 3.0,
            },
            "b": {"status": "FAILED", "output": None, "error": "b broke", "started_at": 2.0, "ended_at": 4.0},
            "c": {"status": "SKIPPED", "output": None, "error": None, "started_at": None, "ended_at": 5.0},
        }
        # stale keeps the old times and output; a restart clears error and ended_at
        store.append("r1", [ev(T.STEP_STALE, step_id="a"), ev(T.STEP_STARTED, step_id="b")], now=6.0)
        rows = step_rows_full(store.step_rows("r1"))
        assert rows["a"] == {
            "status": "STALE",
            "output": {"label": "news"},
            "error": None,
            "started_at": 2.0,
            "ended_at": 3.0,
        }
        assert rows["b"] == {
            "status": "RUNNING",
            "output": None,
            "error": None,
            "started_at": 6.0,
            "ended_at": None,
        }
        store.append("r1", [ev(T.STEP_FAILED, step_id="b", payload={"error": "again"})], now=7.0)
        assert store.step_rows("r1")["b"]["error"] == "again"
        assert store.step_rows("other") == {}

    def test_attempt_rows_follow_attempt_events(self, store: Any) -> None:
        store.create_run(rec("r1"), [ev(T.RUN_STARTED)], now=1.0)
        store.append(
            "r1",
            [
                ev(
                    T.ATTEMPT_STARTED,
                    step_id="a",
                    attempt=1,
                    payload={"model": "fake:m", "prompt": "p", "junk": 1},
                ),
                ev(T.ATTEMPT_STARTED, step_id="b", unit="x", attempt=1, payload={"item": {"k": 1}}),
            ],
            now=2.0,
        )
        store.append(
            "r1", [ev(T.ATTEMPT_FAILED, step_id="a", attempt=1, payload={"error": "rate limited"})], now=3.0
        )
        store.append(
            "r1", [ev(T.ATTEMPT_STARTED, step_id="a", attempt=2, payload={"model": "fake:m"})], now=4.0
        )
        store.append(
            "r1", [ev(T.ATTEMPT_COMPLETED, step_id="a", attempt=2, payload={"output": ["ok", 1]})], now=5.0
        )
        store.append(
            "r1", [ev(T.ATTEMPT_INTERRUPTED, step_id="b", unit="x", attempt=1, message="died")], now=6.0
        )
        rows = store.attempts("r1")
        got = [
            (a.step_id, a.unit, a.attempt, a.status, a.started_at, a.ended_at, a.output, a.error, a.model)
            for a in rows
        ]
        assert got == [
            ("a", "", 1, "FAILED", 2.0, 3.0, None, "rate limited", "fake:m"),
            ("b", "x", 1, "INTERRUPTED", 2.0, 6.0, None, "died", None),
            ("a", "", 2, "COMPLETED", 4.0, 5.0, ["ok", 1], None, "fake:m"),
        ]
        assert rows[0].info == {"model": "fake:m", "prompt": "p"}
        assert rows[1].info == {"item": {"k": 1}}
        assert [a.attempt for a in store.attempts("r1", step_id="a")] == [1, 2]
        assert store.attempts("r1", step_id="zzz") == []

    def test_attempt_event_without_a_start_still_creates_the_row(self, store: Any) -> None:
        store.create_run(rec("r1"), [ev(T.ATTEMPT_CANCELED, step_id="a", attempt=1)], now=2.0)
        (a,) = store.attempts("r1")
        assert (a.status, a.started_at, a.ended_at, a.error, a.info, a.tokens_in, a.cost) == (
            "CANCELED",
            None,
            2.0,
            "",
            {},
            0,
            0.0,
        )

    def test_llm_done_adds_tokens_and_cost_to_the_attempt_and_the_run(self, store: Any) -> None:
        store.create_run(rec("r1"), [ev(T.RUN_STARTED)], now=1.0)

        def done(step: str, n: int, tin: int, tout: int, cost: float) -> NewEvent:
            usage = {"input_tokens": tin, "output_tokens": tout}
            return ev(T.LLM_DONE, step_id=step, attempt=n, payload={"usage": usage, "cost": cost})

        store.append(
            "r1",
            [ev(T.ATTEMPT_STARTED, step_id="a", attempt=1), ev(T.ATTEMPT_STARTED, step_id="b", attempt=1)],
            now=2.0,
        )
        store.append("r1", [done("a", 1, 10, 5, 0.1), done("a", 1, 1, 2, 0.2)], now=3.0)
        store.append("r1", [done("b", 1, 100, 50, 0.7)], now=4.0)
        store.append("r1", [done("zzz", 9, 1000, 0, 0.0)], now=5.0)  # no attempt row: the run still counts
        store.append("r1", [ev(T.LLM_DONE, payload={})], now=6.0)  # no usage at all
        a, b = store.attempts("r1")
        assert (a.tokens_in, a.tokens_out, a.cost) == (11, 7, 0.1 + 0.2)
        assert (b.tokens_in, b.tokens_out, b.cost) == (100, 50, 0.7)
        r = store.get_run("r1")
        assert (r.tokens_in, r.tokens_out, r.cost) == (1111, 57, 0.0 + 0.1 + 0.2 + 0.7 + 0.0 + 0.0)
        assert [x.step_id for x in store.attempts("r1")] == ["a", "b"]

    def test_artifact_created_adds_an_artifact_row(self, store: Any) -> None:
        store.create_run(rec("r1"), [ev(T.RUN_STARTED)], now=1.0)
        store.append(
            "r1",
            [
                ev(
                    T.ARTIFACT_CREATED,
                    step_id="save",
                    attempt=1,
                    payload={
                        "path": "reports/r1.md",
                        "size": 42,
                        "sha256": "ab" * 32,
                        "mime": "text/markdown",
                    },
                ),
                ev(T.ARTIFACT_CREATED, payload={"path": "other.bin"}),
            ],
            now=2.0,
        )
        arts = store.artifacts("r1")
        assert [
            (a.run_id, a.path, a.size, a.sha256, a.step_id, a.attempt, a.created_at, a.mime) for a in arts
        ] == [
            ("r1", "reports/r1.md", 42, "ab" * 32, "save", 1, 2.0, "text/markdown"),
            ("r1", "other.bin", 0, "", None, None, 2.0, None),
        ]
        assert store.artifacts("other") == []

    def test_projections_agree_with_the_memory_store(self, store: Any) -> None:
        """Random event streams give exactly the memory store's projections."""
        rng = random.Random(20240611)
        ref = MemoryStore()
        types = [t.value for t in T] + ["CUSTOM"]
        for r in range(3):
            run_id = f"rand-{r}"
            for s in (store, ref):
                s.create_run(rec(run_id, created_at=float(r)), [ev(T.RUN_CREATED)], now=0.5)
            for b in range(40):
                batch = _random_batch(rng, types, b)
                now = 1.0 + b * 0.25
                got, want = store.append(run_id, batch, now), ref.append(run_id, batch, now)
                assert [(e.seq, e.type, e.payload) for e in got] == [(e.seq, e.type, e.payload) for e in want]
            assert store.get_run(run_id) == ref.get_run(run_id)
            assert store.attempts(run_id) == ref.attempts(run_id)
            assert store.artifacts(run_id) == ref.artifacts(run_id)
            assert step_rows_full(store.step_rows(run_id)) == step_rows_full(ref.step_rows(run_id))
            strip = [
                (e.run_id, e.seq, e.type, e.ts, e.message, e.step_id, e.unit, e.attempt, e.payload)
                for e in ref.events(run_id)
            ]
            assert [
                (e.run_id, e.seq, e.type, e.ts, e.message, e.step_id, e.unit, e.attempt, e.payload)
                for e in store.events(run_id)
            ] == strip

    def test_group_commits_of_several_runs_agree_with_the_memory_store(self, store: Any) -> None:
        """append_many of random batches over three runs (every other commit holds one run
        twice) gives the projections of appending one by one."""
        rng = random.Random(20261127)
        ref = MemoryStore()
        types = [t.value for t in T] + ["CUSTOM"]
        runs = [f"group-{r}" for r in range(3)]
        for r, run_id in enumerate(runs):
            for s in (store, ref):
                s.create_run(rec(run_id, created_at=float(r)), [ev(T.RUN_CREATED)], now=0.5)
        for b in range(60):
            items = [(run_id, _random_batch(rng, types, b), 1.0 + b) for run_id in runs]
            if b % 2 == 0:
                items.append((runs[0], _random_batch(rng, types, b), 1.0 + b))
            got = store.append_many(items)
            want = [ref.append(*item) for item in items]
            assert [[(e.run_id, e.seq, e.type) for e in evs] for evs in got] == [
                [(e.run_id, e.seq, e.type) for e in evs] for evs in want
            ]
        for run_id in runs:
            assert store.get_run(run_id) == ref.get_run(run_id)
            assert store.attempts(run_id) == ref.attempts(run_id)
            assert store.artifacts(run_id) == ref.artifacts(run_id)
            assert step_rows_full(store.step_rows(run_id)) == step_rows_full(ref.step_rows(run_id))

    # controls ------------------------------------------------------------------------------
    def test_controls_are_taken_exactly_once_in_order(self, store: Any) -> None:
        store.create_run(rec("r1"), [], now=1.0)
        c1 = store.put_control("r1", "pause", {}, now=2.0)
        c2 = store.put_control("r2", "cancel", {"reason": "user"}, now=2.5)
        c3 = store.put_control("r1", "answer", {"text": "yes", "n": [1]}, now=3.0)
        assert c1 < c2 < c3
        taken = store.take_controls("r1")
        assert [(c.id, c.run_id, c.action, c.payload, c.created_at) for c in taken] == [
            (c1, "r1", "pause", {}, 2.0),
            (c3, "r1", "answer", {"text": "yes", "n": [1]}, 3.0),
        ]
        assert store.take_controls("r1") == []
        assert [(c.id, c.action, c.payload) for c in store.take_controls("r2")] == [
            (c2, "cancel", {"reason": "user"})
        ]
        c4 = store.put_control("r1", "resume", {}, now=4.0)
        assert [c.id for c in store.take_controls("r1")] == [c4]

    def test_append_many_writes_new_runs_with_their_first_events_all_or_nothing(self, store: Any) -> None:
        store.create_run(rec("old"), [ev("RUN_CREATED")], now=1.0)
        out = store.append_many(
            [
                ("old", [ev("RUN_STARTED")], 2.0),
                ("new", [ev("RUN_CREATED"), ev("RUN_STARTED")], 2.0, rec("new", created_at=2.0)),
            ]
        )
        assert [[(e.run_id, e.seq, e.type) for e in evs] for evs in out] == [
            [("old", 2, "RUN_STARTED")],
            [("new", 1, "RUN_CREATED"), ("new", 2, "RUN_STARTED")],
        ]
        assert store.get_run("new").status == "RUNNING" and store.get_run("new").last_seq == 2
        assert [e.seq for e in store.events("new")] == [1, 2]
        if isinstance(store, MemoryStore):
            return  # memory appends one item at a time (it is never group-committed)
        with pytest.raises(StoreError, match="already exists"):
            store.append_many(
                [("old", [ev("DIRECTIVE")], 3.0), ("new", [ev("RUN_CREATED")], 3.0, rec("new"))]
            )
        assert [e.seq for e in store.events("old")] == [1, 2]  # the whole batch was rolled back
        assert store.append("old", [ev("DIRECTIVE")], 4.0)[0].seq == 3

    def test_runs_with_controls_lists_the_runs_whose_mailbox_is_not_empty(self, store: Any) -> None:
        store.create_run(rec("r1"), [], now=1.0)
        assert store.runs_with_controls() == set()
        store.put_control("r1", "pause", {}, now=2.0)
        store.put_control("r2", "cancel", {}, now=2.5)
        assert store.runs_with_controls() == {"r1", "r2"}
        store.take_controls("r1")
        assert store.runs_with_controls() == {"r2"}

    def test_concurrent_takers_never_get_the_same_control(self, store_factory: Any) -> None:
        writer = store_factory()
        ids = {writer.put_control("r1", "directive", {"i": i}, now=1.0) for i in range(50)}
        handles = [store_factory() for _ in range(4)]
        got: list[list[int]] = [[] for _ in handles]
        start = threading.Barrier(len(handles))

        def take(i: int) -> None:
            start.wait()
            for _ in range(20):
                got[i] += [c.id for c in handles[i].take_controls("r1")]

        threads = [threading.Thread(target=take, args=(i,)) for i in range(len(handles))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        flat = [c for g in got for c in g]
        assert sorted(flat) == sorted(ids)

    def test_threads_appending_to_one_run_leave_no_gaps(self, store_factory: Any) -> None:
        first = store_factory()
        first.create_run(rec("r1"), [], now=1.0)
        handles = [first, first, store_factory(), store_factory()]  # shared and separate handles
        start = threading.Barrier(len(handles))

        def work(who: int) -> None:
            start.wait()
            for i in range(25):
                batch = [
                    ev(T.LLM_TOKENS, payload={"who": who, "i": i}),
                    ev(T.LLM_TOKENS, payload={"who": -1}),
                ]
                handles[who].append("r1", batch, now=2.0)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(len(handles))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        events = first.events("r1")
        assert [e.seq for e in events] == list(range(1, 201))
        for who in range(len(handles)):
            assert [e.payload["i"] for e in events if e.payload["who"] == who] == list(range(25))
        assert first.get_run("r1").last_seq == 200

    # leases --------------------------------------------------------------------------------
    def test_claim_takes_the_oldest_queued_run_and_sets_the_lease(self, store: Any) -> None:
        store.create_run(rec("new", created_at=5.0), [], now=5.0)
        store.create_run(rec("old", created_at=1.0), [], now=1.0)
        store.create_run(rec("done", created_at=0.5, status="COMPLETED"), [], now=0.5)
        got = store.claim("w1", now=10.0, lease_seconds=30.0)
        assert (got.id, got.owner, got.lease_expires_at, got.status) == ("old", "w1", 40.0, "QUEUED")
        r = store.get_run("old")
        assert (r.owner, r.lease_expires_at) == ("w1", 40.0)
        assert store.claim("w2", now=10.0, lease_seconds=30.0).id == "new"
        assert store.claim("w3", now=10.0, lease_seconds=30.0) is None

    def test_a_live_lease_keeps_other_owners_out_until_it_expires(self, store: Any) -> None:
        store.create_run(rec("r1"), [ev(T.RUN_STARTED)], now=1.0)
        assert store.claim("w1", now=10.0, lease_seconds=5.0).id == "r1"
        assert store.claim("w2", now=14.9, lease_seconds=5.0) is None
        assert store.claim("w2", now=14.9, lease_seconds=5.0, run_id="r1") is None
        got = store.claim("w2", now=15.1, lease_seconds=5.0)  # expired: recovered by another worker
        assert (got.id, got.owner, got.lease_expires_at, got.status) == ("r1", "w2", 20.1, "RUNNING")

    def test_the_queue_scan_never_hands_a_live_lease_back_to_its_own_holder(self, store: Any) -> None:
        store.create_run(rec("r1"), [], now=1.0)
        assert store.claim("w1", now=2.0, lease_seconds=30.0).id == "r1"
        assert store.claim("w1", now=3.0, lease_seconds=30.0) is None  # a worker would run it twice
        assert store.claim("w1", now=3.0, lease_seconds=30.0, run_id="r1").id == "r1"  # by id: yes

    def test_claim_many_takes_the_oldest_claimable_runs_once(self, store: Any) -> None:
        for i, t in enumerate((3.0, 1.0, 2.0, 4.0)):
            store.create_run(rec(f"r{i}", created_at=t), [], now=t)
        store.update_run("r3", status="PAUSED")
        got = store.claim_many("w1", now=10.0, lease_seconds=30.0, limit=2)
        assert [(r.id, r.owner, r.lease_expires_at) for r in got] == [("r1", "w1", 40.0), ("r2", "w1", 40.0)]
        assert [r.id for r in store.claim_many("w2", now=11.0, lease_seconds=30.0, limit=5)] == ["r0"]
        assert store.claim_many("w3", now=12.0, lease_seconds=30.0, limit=5) == []
        assert [r.id for r in store.claim_many("w3", now=50.0, lease_seconds=30.0, limit=5)] == [
            "r1",
            "r2",
            "r0",
        ]  # leases expired

    def test_a_running_run_without_owner_is_claimable(self, store: Any) -> None:
        store.create_run(rec("r1"), [ev(T.RUN_STARTED)], now=1.0)
        assert store.claim("w1", now=2.0, lease_seconds=5.0).owner == "w1"
        store.update_run("r1", owner="w9", lease_expires_at=None)  # owner but no lease time: expired
        assert store.claim("w2", now=3.0, lease_seconds=5.0).owner == "w2"

    def test_paused_runs_are_claimed_only_by_id(self, store: Any) -> None:
        store.create_run(rec("r1"), [ev(T.RUN_STARTED), ev(T.RUN_PAUSED)], now=1.0)
        assert store.claim("w1", now=2.0, lease_seconds=5.0) is None
        got = store.claim("w1", now=2.0, lease_seconds=5.0, run_id="r1")
        assert (got.id, got.status, got.owner) == ("r1", "PAUSED", "w1")

    def test_terminal_and_unknown_runs_are_never_claimed(self, store: Any) -> None:
        for i, t in enumerate((T.RUN_COMPLETED, T.RUN_FAILED, T.RUN_CANCELED)):
            store.create_run(rec(f"r{i}"), [ev(T.RUN_STARTED), ev(t)], now=1.0)
            assert store.claim("w1", now=2.0, lease_seconds=5.0, run_id=f"r{i}") is None
        assert store.claim("w1", now=2.0, lease_seconds=5.0) is None
        assert store.claim("w1", now=2.0, lease_seconds=5.0, run_id="unknown") is None

    def test_explicit_claim_of_a_run_already_ours_renews_it(self, store: Any) -> None:
        store.create_run(rec("r1"), [ev(T.RUN_STARTED)], now=1.0)
        store.claim("w1", now=2.0, lease_seconds=5.0, run_id="r1")
        got = store.claim("w1", now=3.0, lease_seconds=5.0, run_id="r1")
        assert (got.owner, got.lease_expires_at) == ("w1", 8.0)

    def test_heartbeat_extends_only_the_owners_lease(self, store: Any) -> None:
        store.create_run(rec("r1"), [], now=1.0)
        store.claim("w1", now=2.0, lease_seconds=5.0)
        assert store.heartbeat("r1", "w2", now=3.0, lease_seconds=5.0) is False
        assert store.get_run("r1").lease_expires_at == 7.0
        assert store.heartbeat("r1", "w1", now=6.0, lease_seconds=5.0) is True
        assert store.get_run("r1").lease_expires_at == 11.0
        assert store.claim("w2", now=8.0, lease_seconds=5.0) is None  # kept alive past the first expiry
        assert store.heartbeat("unknown", "w1", now=6.0, lease_seconds=5.0) is False

    def test_release_frees_only_the_owners_lease(self, store: Any) -> None:
        store.create_run(rec("r1"), [ev(T.RUN_STARTED)], now=1.0)
        store.claim("w1", now=2.0, lease_seconds=60.0)
        store.release("r1", "w2")
        assert store.get_run("r1").owner == "w1"
        store.release("r1", "w1")
        r = store.get_run("r1")
        assert (r.owner, r.lease_expires_at) == (None, None)
        assert store.claim("w2", now=3.0, lease_seconds=60.0).owner == "w2"
        store.release("unknown", "w1")  # no error

    # projects ------------------------------------------------------------------------------
    def test_projects_are_created_listed_and_found(self, store: Any) -> None:
        p1 = store.create_project("alpha", "/srv/alpha", now=1.0)
        p2 = store.create_project("beta", None, now=2.0)
        assert p1.id != p2.id
        assert (p1.name, p1.local_path, p1.created_at) == ("alpha", "/srv/alpha", 1.0)
        assert store.list_projects() == [p1, p2]
        assert store.get_project(p2.id) == p2
        assert store.get_project(p2.id + 1000) is None

    def test_a_duplicate_project_name_raises_store_error(self, store: Any) -> None:
        store.create_project("alpha", None, now=1.0)
        with pytest.raises(StoreError, match="alpha"):
            store.create_project("alpha", "/elsewhere", now=2.0)
        assert [p.name for p in store.list_projects()] == ["alpha"]

    # batches -------------------------------------------------------------------------------
    def test_batches_are_created_found_listed_and_updated(self, store: Any) -> None:
        from llmflow.store.batches import BatchRecord

        b1 = BatchRecord(
            "b1",
            "review",
            created_at=1.0,
            updated_at=1.0,
            spec={"data": {"path": "x.csv"}, "n": [1, None]},
            owner="h:1:a",
        )
        store.create_batch(b1)
        store.create_batch(BatchRecord("b2", "judges", created_at=2.0))
        assert store.get_batch("b1") == b1
        assert store.get_batch("nope") is None
        assert [b.id for b in store.list_batches()] == ["b2", "b1"]
        assert [b.id for b in store.list_batches(limit=1, offset=1)] == ["b1"]
        store.update_batch("b1", status="COMPLETED", total=12, ended_at=5.5, metadata={"k": "v"}, owner=None)
        got = store.get_batch("b1")
        assert (got.status, got.total, got.ended_at, got.metadata, got.owner) == (
            "COMPLETED",
            12,
            5.5,
            {"k": "v"},
            None,
        )
        assert got.spec == b1.spec

    def test_a_duplicate_or_unknown_batch_raises_store_error(self, store: Any) -> None:
        from llmflow.store.batches import BatchRecord

        store.create_batch(BatchRecord("b1", "review", created_at=1.0))
        with pytest.raises(StoreError, match="b1"):
            store.create_batch(BatchRecord("b1", "other", created_at=2.0))
        with pytest.raises(StoreError, match="nope"):
            store.update_batch("nope", status="COMPLETED")
        with pytest.raises(TypeError):
            store.update_batch("b1", colour="red")

    def test_batch_summary_counts_top_level_runs_by_status_with_usage(self, store: Any) -> None:
        store.create_run(rec("j1", 1.0, batch_id="b1"), [ev(T.RUN_CREATED), ev(T.RUN_STARTED)], now=10.0)
        store.append(
            "j1",
            [
                ev(
                    T.LLM_DONE,
                    step_id="s",
                    attempt=1,
                    payload={"usage": {"input_tokens": 3, "output_tokens": 4}, "cost": 0.5},
                ),
                ev(T.RUN_COMPLETED),
            ],
            now=12.0,
        )
        store.create_run(
            rec("j2", 2.0, batch_id="b1"),
            [ev(T.RUN_CREATED), ev(T.RUN_STARTED), ev(T.RUN_FAILED, payload={"error": "x"})],
            now=11.0,
        )
        store.create_run(rec("j3", 3.0, batch_id="b1"), [ev(T.RUN_CREATED)], now=3.0)
        store.create_run(
            rec("j1.child", 4.0, batch_id="b1", parent_run_id="j1"), [ev(T.RUN_CREATED)], now=4.0
        )
        store.create_run(rec("other", 5.0, batch_id="b2"), [ev(T.RUN_CREATED)], now=5.0)
        s = store.batch_summary("b1")
        assert s["statuses"] == {"COMPLETED": 1, "FAILED": 1, "QUEUED": 1}
        assert (s["tokens_in"], s["tokens_out"], s["cost"]) == (3, 4, 0.5)
        assert (s["first_started_at"], s["last_ended_at"]) == (10.0, 12.0)
        assert store.batch_run_statuses("b1") == {"j1": "COMPLETED", "j2": "FAILED", "j3": "QUEUED"}
        assert store.batch_summary("none")["statuses"] == {}
        assert store.batch_run_statuses("none") == {}

    # waiting -------------------------------------------------------------------------------
    def _waiter(self, store: Any) -> Any:
        if not hasattr(store, "wait_for_events"):
            pytest.skip(f"{type(store).__name__} has no wait_for_events yet")
        return store.wait_for_events

    def test_wait_for_events_returns_at_once_when_events_exist(self, store: Any) -> None:
        wait = self._waiter(store)
        store.create_run(rec("r1"), [ev(T.RUN_CREATED), ev(T.RUN_QUEUED)], now=1.0)
        assert [e.seq for e in wait("r1", 0, timeout=5.0)] == [1, 2]
        assert [e.seq for e in wait("r1", 1, timeout=5.0)] == [2]

    def test_wait_for_events_returns_nothing_after_the_timeout(self, store: Any) -> None:
        wait = self._waiter(store)
        store.create_run(rec("r1"), [ev(T.RUN_CREATED)], now=1.0)
        assert wait("r1", 1, timeout=0.2) == []
        assert wait("unknown", 0, timeout=0.1) == []

    def test_wait_for_events_wakes_when_another_handle_appends(self, store_factory: Any) -> None:
        waiter, writer = store_factory(), store_factory()
        wait = self._waiter(waiter)
        writer.create_run(rec("r1"), [ev(T.RUN_CREATED)], now=1.0)
        result: list[Any] = []
        t = threading.Thread(target=lambda: result.append(wait("r1", 1, timeout=30.0)))
        t.start()
        time.sleep(0.2)
        writer.append("r1", [ev(T.RUN_STARTED), ev(T.LLM_TOKENS)], now=2.0)
        t.join()
        assert [e.seq for e in result[0]][:1] == [2]

    # lifecycle -----------------------------------------------------------------------------
    def test_migrate_twice_is_harmless(self, store: Any) -> None:
        store.create_run(rec("r1"), [ev(T.RUN_CREATED)], now=1.0)
        store.migrate()
        store.migrate()
        assert store.get_run("r1").last_seq == 1

    def test_a_second_handle_sees_what_the_first_wrote(self, store_factory: Any) -> None:
        a = store_factory()
        a.create_run(rec("r1"), [ev(T.RUN_CREATED)], now=1.0)
        a.put_control("r1", "pause", {}, now=1.0)
        b = store_factory()
        assert b.get_run("r1").last_seq == 1
        assert [c.action for c in b.take_controls("r1")] == ["pause"]
        b.append("r1", [ev(T.RUN_STARTED)], now=2.0)
        assert [e.seq for e in a.events("r1")] == [1, 2]


# --- several processes on one database -------------------------------------------------------

_CHILD = r"""
import json, os, sys, time
from llmflow.engine.events import NewEvent
from llmflow.store.factory import open_store

url, mode, who, run_id, n, barrier = sys.argv[1:7]
store = open_store(url)
open(os.path.join(barrier, "ready-" + who), "w").close()
while not os.path.exists(os.path.join(barrier, "go")):
    time.sleep(0.002)
out = []
if mode == "append":
    for i in range(int(n)):
        evs = store.append(run_id, [NewEvent("LLM_TOKENS", payload={"who": who, "i": i})], time.time())
        out.append(evs[0].seq)
else:
    i = 0
    while True:
        # a fresh owner per call: the scan also returns runs the same owner already holds
        r = store.claim(who + "-" + str(i), time.time(), 3600.0)
        if r is None:
            break
        out.append(r.id)
        i += 1
store.close()
print(json.dumps(out))
"""


def run_children(url: str, mode: str, run_id: str, n: int, tmp: Path, count: int = 2) -> list[list[Any]]:
    barrier = tmp / f"barrier-{mode}"
    barrier.mkdir()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD, url, mode, f"p{i}", run_id, str(n), str(barrier)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(count)
    ]
    deadline = time.monotonic() + 60
    while len(list(barrier.glob("ready-*"))) < count and time.monotonic() < deadline:
        if any(p.poll() not in (None, 0) for p in procs):
            break
        time.sleep(0.01)
    (barrier / "go").touch()
    finished = _communicate_all(procs, timeout=120)  # every pipe read and closed before any assert
    results = []
    for p, (out, err) in zip(procs, finished, strict=True):
        assert p.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def _communicate_all(procs: list[subprocess.Popen[str]], timeout: float) -> list[tuple[str, str]]:
    """Each child's (stdout, stderr), read to the end: a failed assertion on the first child
    must not leave the others' pipes open (their ResourceWarning would fail a later test)."""
    return [p.communicate(timeout=timeout) for p in procs]


class MultiProcessContract:
    def test_processes_opening_a_fresh_database_at_once_all_succeed(self, store_url: str) -> None:
        code = "import sys; from llmflow.store.factory import open_store; open_store(sys.argv[1]).close()"
        procs = [
            subprocess.Popen([sys.executable, "-c", code, store_url], stderr=subprocess.PIPE, text=True)
            for _ in range(4)
        ]
        finished = _communicate_all(procs, timeout=60)
        for p, (_, err) in zip(procs, finished, strict=True):
            assert p.returncode == 0, err

    def test_two_processes_appending_to_one_run_leave_no_gaps(
        self, store_factory: Any, store_url: str, tmp_path: Path
    ) -> None:
        store = store_factory()
        store.create_run(rec("shared"), [], now=1.0)
        a, b = run_children(store_url, "append", "shared", 200, tmp_path)
        assert len(a) == len(b) == 200
        assert sorted(a + b) == list(range(1, 401))
        events = store.events("shared")
        assert [e.seq for e in events] == list(range(1, 401))
        ids = [e.id for e in events]
        assert ids == sorted(ids) and len(set(ids)) == 400
        for who in ("p0", "p1"):  # each process's events are in its own order
            assert [e.payload["i"] for e in events if e.payload["who"] == who] == list(range(200))
        assert store.get_run("shared").last_seq == 400

    def test_two_processes_racing_claim_get_each_run_once(
        self, store_factory: Any, store_url: str, tmp_path: Path
    ) -> None:
        store = store_factory()
        for i in range(20):
            store.create_run(rec(f"q{i:02d}", created_at=float(i)), [ev(T.RUN_QUEUED)], now=1.0)
        a, b = run_children(store_url, "claim", "-", 0, tmp_path)
        assert sorted(a + b) == [f"q{i:02d}" for i in range(20)]
        assert not set(a) & set(b)
        owners = {r.id: r.owner for r in store.list_runs(limit=100)}
        assert all(owners[rid].startswith("p0-") for rid in a) and all(
            owners[rid].startswith("p1-") for rid in b
        )
