"""The batch driver in process: every job a run, variants, error policies, resume, retry."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from llmflow.batch.plan import BatchRequest, plan_batch
from llmflow.batch.runner import BatchDriver, latest_runs
from llmflow.batch.summary import batch_view
from llmflow.errors import BatchError, DatasetError

from .conftest import read_rows, records, run_batch, write_csv, write_jsonl

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def attempts_started(rt: Any, run_id: str) -> int:
    return sum(1 for e in rt.store.events(run_id) if e.type == "ATTEMPT_STARTED")


def test_a_csv_batch_runs_every_record_as_a_tagged_run_and_writes_one_row_each(
    rt: Any, project: Path
) -> None:
    write_csv(project / "d.csv", records(12))
    r = run_batch(rt, data="d.csv", output="out.jsonl", max_workers=4)
    assert (r.status, r.total, r.completed, r.failed) == ("COMPLETED", 12, 12, 0)
    rows = read_rows(project / "out.jsonl")
    assert sorted(x["record_id"] for x in rows) == sorted(f"r{i}" for i in range(12))
    assert all(
        x["status"] == "COMPLETED"
        and x["outputs"]["result"].startswith("fake answer to: Summarise: text number")
        for x in rows
    )
    assert all(x["usage"]["input_tokens"] > 0 and x["duration"] is not None for x in rows)
    runs = rt.store.list_runs(batch_id=r.batch_id, limit=100)
    assert len(runs) == 12 and {x.metadata["job_id"] for x in runs} == {x["job_id"] for x in rows}
    assert {x.run_type for x in runs} == {"batch"}
    b = rt.store.get_batch(r.batch_id)
    assert (b.status, b.total, b.owner) == ("COMPLETED", 12, None)
    v = batch_view(rt.store, b, 0.0)
    assert (v["done"], v["completed"], v["failed"], v["remaining"], v["running"]) == (12, 12, 0, 0, 0)
    assert v["tokens"]["total"] == r.tokens > 0


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl", "json", "parquet", "txt", "inline"])
def test_every_dataset_format_feeds_the_flow(make_rt: Any, project: Path, fmt: str) -> None:
    rt = make_rt()
    recs = [{"key": f"k{i}", "body": f"body {i}"} for i in range(5)]
    req: dict[str, Any] = {"output": "o.jsonl", "columns": {"text": "body"}, "record_id": "key"}
    if fmt in ("csv", "tsv"):
        p = project / f"d.{fmt}"
        sep = "\t" if fmt == "tsv" else ","
        p.write_text("key" + sep + "body\n" + "".join(f"{r['key']}{sep}{r['body']}\n" for r in recs))
        req["data"] = str(p)
    elif fmt == "jsonl":
        req["data"] = str(write_jsonl(project / "d.jsonl", recs))
    elif fmt == "json":
        (project / "d.json").write_text(json.dumps(recs))
        req["data"] = "d.json"
    elif fmt == "parquet":
        pa = pytest.importorskip("pyarrow")
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(recs), project / "d.parquet")
        req["data"] = "d.parquet"
    elif fmt == "txt":
        (project / "d.txt").write_text("".join(r["body"] + "\n" for r in recs))
        req = {"output": "o.jsonl", "data": "d.txt"}  # one field -> the one input
    else:
        (project / "flow.yaml").write_text(
            (project / "flow.yaml").read_text()
            + "data:\n"
            + "".join(f"  - {{key: {r['key']}, body: '{r['body']}'}}\n" for r in recs)
        )
    r = run_batch(rt, **req)
    assert (r.status, r.completed) == ("COMPLETED", 5)
    rows = read_rows(project / "o.jsonl")
    assert sorted(x["outputs"]["result"].split(": ", 2)[-1].split(" [")[0] for x in rows) == [
        f"body {i}" for i in range(5)
    ]
    if fmt != "txt":
        assert sorted(x["record_id"] for x in rows) == [f"k{i}" for i in range(5)]


def test_flow_data_file_is_found_next_to_the_flow(make_rt: Any, project: Path) -> None:
    (project / "flows").mkdir()
    (project / "flows" / "f.yaml").write_text(
        (project / "flow.yaml").read_text() + "data: {type: file, path: data/in.jsonl, columns: {text: t}}\n"
    )
    (project / "data").mkdir()
    write_jsonl(project / "data" / "in.jsonl", [{"t": "one"}, {"t": "two"}])
    sub = project / "elsewhere"
    sub.mkdir()
    import os

    os.chdir(sub)
    r = run_batch(make_rt(), flow=str(project / "flows" / "f.yaml"), output=str(project / "o.jsonl"))
    assert r.completed == 2


def test_list_parameters_become_variants_as_inputs_or_parameters(rt: Any, project: Path) -> None:
    (project / "v.yaml").write_text(
        """
name: v
inputs: {text: string, tone: {type: string, default: plain}}
parameters: {tone: [formal, casual], length: [short, long]}
steps:
  - id: a
    llm: "{{ inputs.tone }}/{{ parameters.length }}: {{ inputs.text }}"
"""
    )
    write_csv(project / "d.csv", records(3))
    r = run_batch(rt, flow="v.yaml", data="d.csv", output="o.jsonl", max_records=2)
    assert (r.total, r.completed) == (2 * 4, 8)
    rows = read_rows(project / "o.jsonl")
    got = {(x["record_id"], x["variant"]): x["outputs"]["result"] for x in rows}
    assert got[("r1", "tone=casual,length=long")].startswith("fake answer to: casual/long: text number 1")
    assert {x["parameters"]["tone"] for x in rows} == {"formal", "casual"}
    assert len({x["run_id"] for x in rows}) == 8


def test_variants_reach_interpolations_through_hydra_overrides(rt: Any, project: Path) -> None:
    (project / "i.yaml").write_text(
        """
name: i
inputs: {text: string}
parameters: {tone: [formal, casual]}
steps:
  - id: a
    llm: "${parameters.tone} tone: {{ inputs.text }}"
"""
    )
    write_csv(project / "d.csv", records(2))
    r = run_batch(rt, flow="i.yaml", data="d.csv", output="o.jsonl")
    assert (r.status, r.completed) == ("COMPLETED", 4)
    for x in read_rows(project / "o.jsonl"):
        assert x["outputs"]["result"].startswith(
            f"fake answer to: {x['parameters']['tone']} tone: text number"
        )
        spec = rt.get(x["run_id"]).spec
        assert spec["overrides"] == [f"parameters.tone='{x['parameters']['tone']}'"]


def test_no_variants_keeps_list_parameters_for_flows_that_iterate_them(make_rt: Any, project: Path) -> None:
    """judges runs a matrix over all its criteria itself: one job per record."""
    rt = make_rt()
    r = run_batch(
        rt, flow=str(EXAMPLES / "judges"), overrides=["llms=fake"], no_variants=True, output="o.jsonl"
    )
    assert r.status == "COMPLETED" and r.total == 3  # the flow's own data: 3 records
    run = rt.store.list_runs(batch_id=r.batch_id, limit=1)[0]
    flow = rt.get(run.id).spec["flow"]
    criteria = flow["parameters"]["criteria"]
    assert isinstance(criteria, list) and len(criteria) > 1
    assert len(rt.store.attempts(run.id, step_id="judge")) == len(criteria) * len(
        flow["steps"][0]["matrix"]["model"]
    )


def test_error_policy_continue_runs_everything_and_stop_stops_after_a_failure(
    make_rt: Any, project: Path
) -> None:
    def check(text: str) -> str:
        if text.endswith(" 3"):
            raise ValueError("bad record")
        return text

    (project / "p.yaml").write_text(
        "name: p\ninputs: {text: string}\nsteps:\n  - id: c\n    python: {function: check, args: {text: '{{ inputs.text }}'}}\n"
    )
    write_csv(project / "d.csv", records(10))
    rt = make_rt()
    rt.functions["check"] = check
    r = run_batch(rt, flow="p.yaml", data="d.csv", output="a.jsonl", max_workers=1)
    assert (r.status, r.completed, r.failed) == ("COMPLETED", 9, 1)
    bad = [x for x in read_rows(project / "a.jsonl") if x["status"] == "FAILED"]
    assert len(bad) == 1 and "bad record" in bad[0]["error"]
    r = run_batch(rt, flow="p.yaml", data="d.csv", output="b.jsonl", max_workers=1, error_policy="stop")
    assert r.status == "STOPPED" and r.completed == 3 and r.failed == 1 and "bad record" in r.reason
    assert rt.store.get_batch(r.batch_id).status == "STOPPED"
    assert len(read_rows(project / "b.jsonl")) == 4


def test_unusable_records_become_failed_runs_that_can_be_shown(rt: Any, project: Path) -> None:
    (project / "d.jsonl").write_text('{"id": "ok", "text": "fine"}\n{broken\n{"id": "noinput", "other": 1}\n')
    r = run_batch(rt, data="d.jsonl", output="o.jsonl")
    assert (r.completed, r.failed) == (1, 2)
    rows = {x["record_id"]: x for x in read_rows(project / "o.jsonl")}
    assert (
        "not valid JSON" in rows["row1"]["error"]
        and "missing required input 'text'" in rows["noinput"]["error"]
    )
    v = rt.view(rows["noinput"]["run_id"])
    assert v["status"] == "FAILED" and v["batch_id"] == r.batch_id


def test_resume_runs_only_what_did_not_finish_and_never_a_completed_job(make_rt: Any, project: Path) -> None:
    write_csv(project / "d.csv", records(20))
    rt = make_rt(LLMFLOW_MODEL="fake:?latency=0.2")
    plan = plan_batch(rt, BatchRequest(flow="flow.yaml", data="d.csv", output="o.csv", max_workers=3))
    driver = BatchDriver(rt, plan)
    seen: list[str] = []

    def on_row(row: dict) -> None:
        seen.append(row["job_id"])
        if len(seen) == 6:  # stop while the next jobs are waiting for the model
            asyncio.get_running_loop().call_later(0.05, driver.interrupt)

    driver.on_row = on_row
    first = asyncio.run(driver.run())
    assert first.status == "STOPPED" and first.reason == "interrupted"
    done_before = {r.id for r in rt.store.list_runs(batch_id=plan.id, status="COMPLETED", limit=100)}
    in_flight = {r.id for r in rt.store.list_runs(batch_id=plan.id, status="RUNNING", limit=100)}
    assert len(done_before) >= 6 and in_flight  # abandoned mid-run, recovered below
    rt2 = make_rt()  # another process: another owner
    second = asyncio.run(BatchDriver(rt2, plan_batch(rt2, BatchRequest(resume=plan.id))).run())
    assert (second.status, second.completed, second.failed) == ("COMPLETED", 20, 0)
    summary = rt2.store.batch_summary(plan.id)
    assert second.tokens == summary["tokens_in"] + summary["tokens_out"] > 0  # the whole batch's usage
    import csv

    with open(project / "o.csv", newline="") as f:
        ids = [r["job_id"] for r in csv.DictReader(f)]
    assert len(ids) == 20 and len(set(ids)) == 20
    for rid in done_before:
        assert attempts_started(rt2, rid) == 1
    for rid in in_flight:
        evs = [e.type for e in rt2.store.events(rid)]
        assert "ATTEMPT_INTERRUPTED" in evs and evs[-1] == "RUN_COMPLETED"


def test_retry_failed_reruns_failed_jobs_in_place_and_keeps_the_file_exact(
    make_rt: Any, project: Path
) -> None:
    broken = {"on": True}

    def check(text: str) -> str:
        if broken["on"] and text.endswith(("1", "4")):
            raise ValueError("flaky")
        return text.upper()

    (project / "p.yaml").write_text(
        "name: p\ninputs: {text: string}\nsteps:\n  - id: first\n    llm: '{{ inputs.text }}'\n  - id: c\n    python: {function: check, args: {text: '{{ inputs.text }}'}}\n  - id: last\n    llm: 'x {{ steps.c.output }}'\n"
    )
    write_csv(project / "d.csv", records(6))
    rt = make_rt()
    rt.functions["check"] = check
    r = run_batch(rt, flow="p.yaml", data="d.csv", output="o.jsonl")
    assert (r.status, r.completed, r.failed) == ("COMPLETED", 4, 2)
    again = run_batch(rt, resume=r.batch_id)  # no --retry-failed: nothing to do
    assert (again.completed, again.failed) == (4, 2)
    broken["on"] = False
    r2 = run_batch(rt, resume=r.batch_id, retry_failed=True)
    assert (r2.status, r2.completed, r2.failed) == ("COMPLETED", 6, 0)
    rows = read_rows(project / "o.jsonl")
    assert len(rows) == 6 and {x["status"] for x in rows} == {"COMPLETED"}
    assert len(rt.store.batch_run_statuses(r.batch_id)) == 6  # in place: no new runs
    for x in rows:
        starts = [(e.step_id, e.attempt) for e in rt.store.events(x["run_id"]) if e.type == "ATTEMPT_STARTED"]
        firsts = [s for s in starts if s[0] == "first"]
        assert len(firsts) == 1  # the completed first step was never run again


def test_resume_refuses_changed_job_options_and_unknown_batches(rt: Any, project: Path) -> None:
    write_csv(project / "d.csv", records(2))
    r = run_batch(rt, data="d.csv", output="o.jsonl", max_records=1)
    with pytest.raises(BatchError, match="was started with --max-records 1"):
        plan_batch(rt, BatchRequest(resume=r.batch_id, max_records=2))
    with pytest.raises(BatchError, match="no batch 'nope'"):
        plan_batch(rt, BatchRequest(resume="nope"))
    with pytest.raises(BatchError, match="keep the format"):
        plan_batch(rt, BatchRequest(resume=r.batch_id, output="o.csv"))


def test_a_batch_whose_driver_is_alive_is_not_taken_over_without_force(rt: Any, project: Path) -> None:
    import os
    import socket

    write_csv(project / "d.csv", records(2))
    r = run_batch(rt, data="d.csv", output="o.jsonl")
    rt.store.update_batch(
        r.batch_id,
        status="RUNNING",
        owner=f"{socket.gethostname()}:{os.getpid()}:other",
        updated_at=rt.clock.now(),
    )
    with pytest.raises(BatchError, match="being run by another process"):
        run_batch(rt, resume=r.batch_id)
    assert run_batch(rt, resume=r.batch_id, force=True).status == "COMPLETED"
    rt.store.update_batch(
        r.batch_id,
        status="RUNNING",
        owner=f"{socket.gethostname()}:999999999:gone",
        updated_at=rt.clock.now(),
    )
    assert run_batch(rt, resume=r.batch_id).status == "COMPLETED"  # that pid does not exist


def test_bad_requests_fail_before_anything_runs(rt: Any, project: Path) -> None:
    write_csv(project / "d.csv", records(2))
    with pytest.raises(DatasetError, match="no column 'missing' for --record-id"):
        run_batch(rt, data="d.csv", record_id="missing")
    write_csv(project / "two.csv", [{"id": 1, "title": "t", "body": "b"}])
    with pytest.raises(DatasetError, match="needs input\\(s\\) text"):
        run_batch(rt, data="two.csv")
    with pytest.raises(BatchError, match="no data"):
        run_batch(rt)
    with pytest.raises(BatchError, match="error-policy"):
        run_batch(rt, data="d.csv", error_policy="panic")
    assert rt.store.list_batches() == []


def test_latest_run_of_a_job_decides_its_state() -> None:
    assert latest_runs({"B.a": "FAILED", "B.a~r2": "COMPLETED", "B.b": "RUNNING"}) == {
        "B.a": ("B.a~r2", "COMPLETED"),
        "B.b": ("B.b", "RUNNING"),
    }


def test_resume_refuses_a_changed_flow_unless_forced(rt: Any, project: Path) -> None:
    write_csv(project / "d.csv", records(3))
    r = run_batch(rt, data="d.csv", output="o.jsonl", max_records=1)
    (project / "flow.yaml").write_text((project / "flow.yaml").read_text().replace("Summarise:", "Shorten:"))
    with pytest.raises(BatchError, match="changed since batch"):
        plan_batch(rt, BatchRequest(resume=r.batch_id))
    assert run_batch(rt, resume=r.batch_id, force=True).status == "COMPLETED"


def test_shuffle_with_max_records_picks_the_same_records_after_a_resume(make_rt: Any, project: Path) -> None:
    from llmflow.batch.datasets import iter_rows, open_source

    write_csv(project / "d.csv", records(30))
    rt = make_rt(LLMFLOW_MODEL="fake:?latency=0.2")
    plan = plan_batch(
        rt,
        BatchRequest(
            flow="flow.yaml", data="d.csv", output="o.jsonl", max_records=6, shuffle=True, max_workers=2
        ),
    )
    seed = rt.store.get_batch(plan.id).spec["seed"]
    assert isinstance(seed, int)
    driver = BatchDriver(rt, plan)
    driver.on_row = lambda row: driver.interrupt()
    asyncio.run(driver.run())
    r = run_batch(make_rt(), resume=plan.id)
    assert (r.status, r.total, r.completed) == ("COMPLETED", 6, 6)
    chosen = {
        row["id"] for _, row in iter_rows(open_source(project / "d.csv"), shuffle=True, seed=seed, limit=6)
    }
    assert {x["record_id"] for x in read_rows(project / "o.jsonl")} == chosen
