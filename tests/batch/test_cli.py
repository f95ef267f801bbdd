"""`llmflow batch` and `llmflow batches` as a user runs them: subprocesses, SIGKILL, resume."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.support import wait_until

from llmflow.store.factory import open_store

from .conftest import FLOW, records, write_csv

ROOT = Path(__file__).resolve().parents[2]


def env_for(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMFLOW_")}
    env.update(
        {"LLMFLOW_HOME": str(home), "LLMFLOW_MODEL": "fake:", "LLMFLOW_BLOCK_REAL_MODELS": "1", **extra}
    )
    return env


def llmflow(home: Path, *args: str, timeout: float = 120, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "llmflow", *args],
        capture_output=True,
        text=True,
        env=env_for(home, **extra),
        timeout=timeout,
        cwd=home,
    )


def batch_ids(home: Path) -> list[str]:
    p = llmflow(home, "batches", "list", "--json")
    assert p.returncode == 0, p.stderr
    return [b["id"] for b in json.loads(p.stdout)]


def _rows(out: Path) -> int:
    return len(out.read_text().splitlines()) if out.exists() else 0


def _mid_batch(store: Any, done: int) -> bool:
    """The store's one batch has ``done`` jobs COMPLETED and a RUNNING job whose attempt
    has started: killing the driver now leaves an attempt to recover."""
    batches = store.list_batches(limit=1)
    if not batches:
        return False
    statuses = store.batch_run_statuses(batches[0].id)
    if sum(s == "COMPLETED" for s in statuses.values()) < done:
        return False
    running = [r for r, s in statuses.items() if s == "RUNNING"]
    return any(e.type == "ATTEMPT_STARTED" for r in running for e in store.events(r))


def test_a_csv_batch_with_columns_record_id_and_exactly_max_records(tmp_path: Path) -> None:
    (tmp_path / "flow.yaml").write_text(FLOW)
    write_csv(tmp_path / "d.csv", [{"key": f"k{i}", "body": f"body {i}"} for i in range(10)])
    p = llmflow(
        tmp_path,
        "batch",
        "flow.yaml",
        "--data",
        "d.csv",
        "--columns",
        "text=body",
        "--record-id",
        "key",
        "--max-records",
        "3",
        "-o",
        "out.csv",
    )
    assert p.returncode == 0, p.stderr
    assert "\x1b[" not in p.stderr  # not a terminal: plain progress lines
    assert "3/3 done (3 completed, 0 failed)" in p.stderr and "COMPLETED: 3/3 jobs done" in p.stdout
    with open(tmp_path / "out.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["record_id"] for r in rows] == ["k0", "k1", "k2"]
    assert (
        rows[0]["output.result"] == rows[0]["output.result"]
        and "Summarise: body 0" in rows[0]["output.result"]
    )
    (bid,) = batch_ids(tmp_path)
    show = json.loads(llmflow(tmp_path, "batches", "show", bid, "--json").stdout)
    assert (show["status"], show["total"], show["done"], show["failed"], show["remaining"]) == (
        "COMPLETED",
        3,
        3,
        0,
        0,
    )
    assert show["options"]["max_records"] == 3 and show["tokens"]["total"] > 0
    text = llmflow(tmp_path, "batches", "show", bid).stdout
    assert "jobs: 3/3 done" in text and "output: " + str(tmp_path / "out.csv") in text
    assert bid in llmflow(tmp_path, "batches", "list").stdout


def test_the_example_batch_runs_every_review_once_per_style(tmp_path: Path) -> None:
    p = llmflow(tmp_path, "batch", str(ROOT / "examples" / "batch"), "--max-records", "4", "-o", "r.jsonl")
    assert p.returncode == 0, p.stderr
    rows = [json.loads(x) for x in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert len(rows) == 8 and {r["variant"] for r in rows} == {"style=terse", "style=detailed"}
    assert all(
        "Answer in a " + r["parameters"]["style"] in r["outputs"]["sentiment"] or r["status"] == "COMPLETED"
        for r in rows
    )


def test_sigkill_mid_batch_then_resume_runs_each_job_once_into_one_complete_file(tmp_path: Path) -> None:
    (tmp_path / "flow.yaml").write_text(FLOW)
    write_csv(tmp_path / "d.csv", records(30))
    out = tmp_path / "out.jsonl"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llmflow",
            "batch",
            "flow.yaml",
            "--data",
            "d.csv",
            "-o",
            "out.jsonl",
            "--max-workers",
            "3",
        ],
        env=env_for(tmp_path, LLMFLOW_MODEL="fake:?latency=0.3"),
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        watch = open_store(None, project_dir=tmp_path)
        try:  # kill it with seven jobs done and one whose attempt has (durably) started
            wait_until(lambda: _mid_batch(watch, done=7), 90, what="seven jobs done and one in flight")
        finally:
            watch.close()
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    (bid,) = batch_ids(tmp_path)
    store = open_store(None, project_dir=tmp_path)
    try:
        before = store.batch_run_statuses(bid)
        done = {r for r, s in before.items() if s == "COMPLETED"}
        in_flight = {r for r, s in before.items() if s == "RUNNING"}
        assert len(done) >= 7 and in_flight and len(before) < 30
        show = json.loads(llmflow(tmp_path, "batches", "show", bid, "--json").stdout)
        assert show["status"] == "INTERRUPTED"  # its driver is gone
        p = llmflow(tmp_path, "batch", "--resume", bid)
        assert p.returncode == 0, p.stderr
        rows = [json.loads(x) for x in out.read_text().splitlines()]
        assert sorted(r["record_id"] for r in rows) == sorted(
            f"r{i}" for i in range(30)
        )  # each job exactly once
        assert {r["status"] for r in rows} == {"COMPLETED"}
        after = store.batch_run_statuses(bid)
        assert len(after) == 30 and set(after.values()) == {"COMPLETED"}
        for rid in done:  # completed jobs were never re-run
            assert [e.type for e in store.events(rid)].count("ATTEMPT_STARTED") == 1
        for rid in in_flight:  # mid-flight jobs were recovered, their attempt interrupted and re-run
            types = [e.type for e in store.events(rid)]
            assert (
                "ATTEMPT_INTERRUPTED" in types
                and types.count("ATTEMPT_STARTED") == 2
                and types[-1] == "RUN_COMPLETED"
            )
    finally:
        store.close()


def test_error_policy_stop_exits_1_and_says_how_to_continue(tmp_path: Path) -> None:
    (tmp_path / "f.yaml").write_text(
        'name: f\ninputs: {text: string}\nsteps:\n  - id: s\n    shell: \'test "{{ inputs.text }}" != "text number 2"\'\n'
    )
    write_csv(tmp_path / "d.csv", records(6))
    p = llmflow(tmp_path, "batch", "f.yaml", "--data", "d.csv", "--error-policy", "stop", "-j", "1")
    assert p.returncode == 1
    assert (
        "STOPPED" in p.stdout and "job " in p.stderr and "continue with: llmflow batch --resume" in p.stderr
    )
    p = llmflow(tmp_path, "batch", "f.yaml", "--data", "d.csv", "-j", "2")
    assert p.returncode == 1 and "COMPLETED: 6/6 jobs done (5 completed, 1 failed)" in p.stdout
    assert "--retry-failed" in p.stderr


def test_bad_input_exits_2_with_a_message_and_no_traceback(tmp_path: Path) -> None:
    (tmp_path / "flow.yaml").write_text(FLOW)
    p = llmflow(tmp_path, "batch", "flow.yaml", "--data", "missing.csv")
    assert (
        p.returncode == 2
        and "data file" in p.stderr
        and "does not exist" in p.stderr
        and "Traceback" not in p.stderr
    )
    p = llmflow(tmp_path, "batch", "flow.yaml", "--data", "missing.csv", "--retry-failed")
    assert p.returncode == 2 and "--retry-failed goes with --resume" in p.stderr
    write_csv(tmp_path / "d.csv", [{"a": 1, "b": 2}])
    p = llmflow(tmp_path, "batch", "flow.yaml", "--data", "d.csv")
    assert p.returncode == 2 and "--columns INPUT=COLUMN" in p.stderr
    p = llmflow(tmp_path, "batches", "show", "nope")
    assert p.returncode == 2 and "no batch 'nope'" in p.stderr


def test_ctrl_c_stops_cleanly_with_exit_130_and_resume_finishes(tmp_path: Path) -> None:
    (tmp_path / "flow.yaml").write_text(FLOW)
    write_csv(tmp_path / "d.csv", records(20))
    out = tmp_path / "out.csv"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llmflow",
            "batch",
            "flow.yaml",
            "--data",
            "d.csv",
            "-o",
            "out.csv",
            "-j",
            "2",
        ],
        env=env_for(tmp_path, LLMFLOW_MODEL="fake:?latency=0.3"),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_until(lambda: _rows(out) >= 4, 90, what="four finished rows")
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert (
        "STOPPED" in stdout
        and "continue with: llmflow batch --resume" in stderr
        and "Traceback" not in stderr
    )
    (bid,) = batch_ids(tmp_path)
    assert json.loads(llmflow(tmp_path, "batches", "show", bid, "--json").stdout)["status"] == "STOPPED"
    p = llmflow(tmp_path, "batch", "--resume", bid)
    assert p.returncode == 0, p.stderr
    with open(out, newline="") as f:
        ids = [r["job_id"] for r in csv.DictReader(f)]
    assert len(ids) == 20 == len(set(ids))
