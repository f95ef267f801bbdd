"""The evaluation tables on every store backend: memory, SQLite and Postgres (a schema per test)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llmflow.errors import StoreError
from llmflow.store.evals import EvalRecord, EvalResult
from llmflow.store.factory import open_store
from llmflow.store.memory import MemoryStore


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if request.param == "memory":
        yield MemoryStore()
        return
    if request.param == "sqlite":
        s = open_store(f"sqlite:///{tmp_path / 'x.db'}")
        yield s
        s.close()
        return
    s = open_store(request.getfixturevalue("pg_url"))
    yield s
    s.close()


def _result(eval_id: str, key: str, **kw: Any) -> EvalResult:
    base: dict[str, Any] = {
        "record_id": key,
        "run_id": key,
        "run_seq": 5,
        "status": "COMPLETED",
        "score": 1.0,
        "passed": True,
    }
    return EvalResult(eval_id, key, **{**base, **kw})


def test_an_evaluation_round_trips_with_its_json_fields(store: Any) -> None:
    ev = EvalRecord(
        "e1",
        "flow",
        "RUNNING",
        10.0,
        10.0,
        None,
        "e1",
        {"metrics": [{"type": "exact"}]},
        {},
        {"source": "d.jsonl"},
    )
    store.create_eval(ev)
    assert store.get_eval("e1") == ev
    with pytest.raises(StoreError, match="already exists"):
        store.create_eval(ev)
    store.update_eval(
        "e1", status="COMPLETED", ended_at=12.0, summary={"variants": [{"label": "", "pass_rate": 0.5}]}
    )
    got = store.get_eval("e1")
    assert (got.status, got.ended_at, got.summary["variants"][0]["pass_rate"]) == ("COMPLETED", 12.0, 0.5)
    with pytest.raises(StoreError, match="no evaluation"):
        store.update_eval("nope", status="COMPLETED")
    with pytest.raises(TypeError):
        store.update_eval("e1", colour="red")


def test_evaluations_list_newest_first_and_by_flow(store: Any) -> None:
    for i, flow in enumerate(["a", "b", "a"]):
        store.create_eval(EvalRecord(f"e{i}", flow, created_at=float(i)))
    assert [e.id for e in store.list_evals()] == ["e2", "e1", "e0"]
    assert [e.id for e in store.list_evals(flow="a")] == ["e2", "e0"]
    assert [e.id for e in store.list_evals(limit=1, offset=1)] == ["e1"]
    assert store.get_eval("missing") is None


def test_a_result_is_one_row_per_job_and_a_second_write_replaces_it(store: Any) -> None:
    store.create_eval(EvalRecord("e1", "flow"))
    r = _result(
        "e1",
        "j1",
        scores={"exact": {"score": 0.0, "passed": False, "reason": "differs"}},
        passed=False,
        score=0.0,
        expected={"label": "x"},
        output="y",
        latency=0.25,
        tokens=7,
        cost=0.5,
    )
    store.put_eval_result(r)
    store.put_eval_result(_result("e1", "j2", parameters={"model": "fake:a"}, variant="model=h1"))
    assert [x.job_key for x in store.eval_results("e1")] == ["j1", "j2"]
    assert store.eval_results("e1")[0] == r
    again = _result("e1", "j1", run_id="j1~r2", run_seq=9)
    store.put_eval_result(again)
    rows = store.eval_results("e1")
    assert len(rows) == 2 and rows[0] == again and rows[0].passed is True
    assert store.eval_results("other") == []
