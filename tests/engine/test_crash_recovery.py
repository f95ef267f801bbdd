"""Kill -9 a run at random points, resume it, and prove from the log and the files on disk that
every step completed exactly once and nothing completed was executed again."""

from __future__ import annotations

import asyncio
import collections
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llmflow.app import build_runtime

FLOW = """
name: crashy
steps:
  - id: start
    python: {{function: "tests.engine.crash_effects:effect", args: {{out_dir: "{out}", name: start}}}}
  - id: fan
    parallel:
      - id: left
        python: {{function: "tests.engine.crash_effects:effect", args: {{out_dir: "{out}", name: left}}}}
        for_each: [0, 1, 2, 3]
      - id: right
        python: {{function: "tests.engine.crash_effects:effect", args: {{out_dir: "{out}", name: right}}}}
        for_each: [0, 1, 2]
  - id: join
    python: {{function: "tests.engine.crash_effects:effect", args: {{out_dir: "{out}", name: join}}}}
  - id: last
    python: {{function: "tests.engine.crash_effects:effect", args: {{out_dir: "{out}", name: last}}}}
"""


@pytest.mark.slow
def test_sigkill_at_random_points_then_resume_completes_every_step_exactly_once(tmp_path):
    rng = random.Random(1234)
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "LLMFLOW_HOME": str(tmp_path), "PYTHONPATH": str(repo), "LLMFLOW_MODEL": "fake:"}
    killed = 0
    watcher = build_runtime(env=env, home=tmp_path)
    for i in range(12):
        out = tmp_path / f"effects{i}"
        out.mkdir()
        flow = tmp_path / f"flow{i}.yaml"
        flow.write_text(FLOW.format(out=out))
        proc = subprocess.Popen([sys.executable, "-m", "llmflow", "run", str(flow), "--json"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=repo)
        deadline = time.monotonic() + 60
        while watcher.store.count_runs() < i + 1 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.5))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed += 1
        proc.wait()
    watcher.close()
    assert killed >= 6  # most runs really were killed mid-flight

    rt = build_runtime(env=env, home=tmp_path)
    try:
        runs = rt.store.list_runs(limit=100)
        assert len(runs) == 12
        for rec in runs:
            if rec.status != "COMPLETED":
                st = asyncio.run(rt.execute(rec.id))
                assert str(st.status) == "COMPLETED", (rec.id, st.error)
        for rec in rt.store.list_runs(limit=100):
            assert rec.status == "COMPLETED"
            evs = rt.store.events(rec.id)
            assert [e.seq for e in evs] == list(range(1, len(evs) + 1))
            completed = collections.Counter((e.step_id, e.unit) for e in evs if e.type == "ATTEMPT_COMPLETED")
            expected_units = {("start", None), ("join", None), ("last", None)} | {("left", str(k)) for k in range(4)} | {("right", str(k)) for k in range(3)}
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
                name, unit, attempt = f.name.split("__")
                step = name
                on_disk.add((step, unit, int(attempt)))
            assert on_disk <= started
            for e in evs:
                if e.type == "ATTEMPT_COMPLETED":
                    assert (e.step_id, e.unit or "-", e.attempt) in on_disk
    finally:
        rt.close()
