"""Kill -9 a run at recorded points, resume it in another process, and prove from the log and
the files on disk that every step completed exactly once and nothing completed was executed
again. Deterministic: each run is killed while a chosen attempt is blocked (it waits for a
gate file), so every kill lands mid-flight at a known point. On SQLite and on Postgres."""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llmflow.runtime import build_runtime

FLOW = """
name: crashy
steps:
  - id: start
    python: {{function: "tests.engine.crash_effects:effect", args: {{out_dir: "{out}", name: start, gate: "{gate}"}}}}
  - id: fan
    parallel:
      - id: left
        python: {{function: "tests.engine.crash_effects:effect", args: {{out_dir: "{out}", name: left, gate: "{gate}"}}}}
        for_each: [0, 1, 2, 3]
      - id: right
        python: {{function: "tests.engine.crash_effects:effect", args: {{out_dir: "{out}", name: right, gate: "{gate}"}}}}
        for_each: [0, 1, 2]
  - id: join
    python: {{function: "tests.engine.crash_effects:effect", args: {{out_dir: "{out}", name: join, gate: "{gate}"}}}}
  - id: last
    python: {{function: "tests.engine.crash_effects:effect", args: {{out_dir: "{out}", name: last, gate: "{gate}"}}}}
"""
# (gated attempt, its step and unit in the log)
KILL_POINTS = [
    ("start", "start", None),
    ("left[0]", "left", "0"),
    ("left[3]", "left", "3"),
    ("right[1]", "right", "1"),
    ("right[2]", "right", "2"),
    ("join", "join", None),
    ("last", "last", None),
    ("left[2]", "left", "2"),
]


def wait_for(pred, what: str, proc: subprocess.Popen, limit: float = 60.0) -> None:
    deadline = time.monotonic() + limit
    while not pred():
        if proc.poll() is not None:
            raise AssertionError(f"the run exited ({proc.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.01)


@pytest.mark.slow
def test_sigkill_at_recorded_points_then_resume_completes_every_step_exactly_once(tmp_path, store_env):
    repo = Path(__file__).resolve().parents[2]
    env = {
        **os.environ,
        "LLMFLOW_HOME": str(tmp_path),
        "PYTHONPATH": str(repo),
        "LLMFLOW_MODEL": "fake:",
        **store_env,
    }
    watcher = build_runtime(env=env, home=tmp_path)
    assert type(watcher.store).__name__ == ("PostgresStore" if store_env else "SqliteStore")
    killed: dict[str, tuple[str, str | None]] = {}
    for i, (gate, step, unit) in enumerate(KILL_POINTS):
        out = tmp_path / f"effects{i}"
        out.mkdir()
        flow = tmp_path / f"flow{i}.yaml"
        flow.write_text(FLOW.format(out=out, gate=gate))
        proc = subprocess.Popen(
            [sys.executable, "-m", "llmflow", "run", str(flow), "--json"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=repo,
        )
        wait_for(lambda i=i: watcher.store.count_runs() >= i + 1, "the run to be created", proc)
        rid = watcher.store.list_runs(limit=1)[0].id
        wait_for(
            lambda rid=rid, step=step, unit=unit: any(
                e.type == "ATTEMPT_STARTED" and e.step_id == step and e.unit == unit
                for e in watcher.store.events(rid)
            ),
            f"{gate} to start",
            proc,
        )
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        killed[rid] = (step, unit)
        (out / "GO").write_text("")  # the resumed attempt may pass
    watcher.close()

    rt = build_runtime(env=env, home=tmp_path)
    try:
        runs = rt.store.list_runs(limit=100)
        assert len(runs) == len(KILL_POINTS)
        for rec in runs:
            step, unit = killed[rec.id]
            evs = rt.store.events(rec.id)
            # killed mid-flight: the gated attempt started and never ended in the first process
            assert rec.status == "RUNNING"
            assert not any(
                e.type == "ATTEMPT_COMPLETED" and e.step_id == step and e.unit == unit for e in evs
            )
            st = asyncio.run(rt.execute(rec.id))
            assert str(st.status) == "COMPLETED", (rec.id, st.error)
        for rec in rt.store.list_runs(limit=100):
            assert rec.status == "COMPLETED"
            evs = rt.store.events(rec.id)
            assert [e.seq for e in evs] == list(range(1, len(evs) + 1))
            recovered = [e for e in evs if e.type == "RUN_RECOVERED"]
            step, unit = killed[rec.id]
            assert len(recovered) == 1 and any(
                f"{step}{'[' + unit + ']' if unit else ''}#1" in x
                for x in recovered[0].payload["interrupted"]
            )
            completed = collections.Counter((e.step_id, e.unit) for e in evs if e.type == "ATTEMPT_COMPLETED")
            expected_units = (
                {("start", None), ("join", None), ("last", None)}
                | {("left", str(k)) for k in range(4)}
                | {("right", str(k)) for k in range(3)}
            )
            assert set(completed) == expected_units
            assert all(n == 1 for n in completed.values()), completed
            step_done = collections.Counter(e.step_id for e in evs if e.type == "STEP_COMPLETED")
            assert all(n == 1 for n in step_done.values()), step_done
            # nothing starts again after it completed
            done_at: dict = {}
            for e in evs:
                key = (e.step_id, e.unit)
                if e.type == "ATTEMPT_COMPLETED":
                    done_at[key] = e.seq
                if e.type == "ATTEMPT_STARTED":
                    assert key not in done_at, f"{key} started again after completing"
            # every file on disk belongs to a recorded attempt; the completed attempt's file exists
            started = {(e.step_id, e.unit or "-", e.attempt) for e in evs if e.type == "ATTEMPT_STARTED"}
            flow_name = Path(rec.spec["source"]).stem
            effects = Path(str(tmp_path / f"effects{flow_name.removeprefix('flow')}"))
            on_disk = set()
            for f in effects.iterdir():
                if f.name == "GO":
                    continue
                name, unit_, attempt = f.name.split("__")
                on_disk.add((name, unit_, int(attempt)))
            assert on_disk <= started
            for e in evs:
                if e.type == "ATTEMPT_COMPLETED":
                    assert (e.step_id, e.unit or "-", e.attempt) in on_disk
    finally:
        rt.close()
