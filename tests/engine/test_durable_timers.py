"""Time is durable: a run timeout and a retry backoff recorded by one process hold in the
process that resumes the run after a kill -9, on SQLite and on Postgres. The resuming
process runs on a clock moved forward (an offset), so what is proven does not depend on how
fast this machine is."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llmflow.runtime import build_runtime

TIMEOUT_FLOW = """
name: slow
options: {timeout: 20}
steps:
  - id: a
    python: {function: "tests.engine.crash_effects:sleep_long", args: {seconds: 600}}
"""

RETRY_FLOW = """
name: flaky
steps:
  - id: a
    python: {{function: "tests.engine.crash_effects:fail_first", args: {{marker: "{marker}"}}}}
    retry: {{attempts: 2, backoff: 300, jitter: 0}}
  - id: b
    python: {{function: "tests.engine.crash_effects:sleep_long", args: {{seconds: 0}}}}
"""


class OffsetClock:
    def __init__(self, offset: float) -> None:
        self.offset = offset

    def now(self) -> float:
        return time.time() + self.offset


def start_and_kill(tmp_path: Path, flow_text: str, until: str, store_env: dict[str, str]) -> tuple[str, dict]:
    """Run the flow with `llmflow run` in a child process; kill -9 it once ``until`` is in
    the log. Returns the run id and the child's environment."""
    repo = Path(__file__).resolve().parents[2]
    env = {
        **os.environ,
        "LLMFLOW_HOME": str(tmp_path),
        "PYTHONPATH": str(repo),
        "LLMFLOW_MODEL": "fake:",
        **store_env,
    }
    flow = tmp_path / "flow.yaml"
    flow.write_text(flow_text)
    watcher = build_runtime(env=env, home=tmp_path)
    assert type(watcher.store).__name__ == ("PostgresStore" if store_env else "SqliteStore")
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmflow", "run", str(flow)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=repo,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            runs = watcher.store.list_runs(limit=1)
            if runs and any(e.type == until for e in watcher.store.events(runs[0].id)):
                break
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, f"gave up waiting for {until}"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return runs[0].id, env
    finally:
        if proc.poll() is None:
            proc.kill()
        watcher.close()


def resume(env: dict, home: Path, run_id: str, offset: float):
    rt = build_runtime(env=env, home=home, clock=OffsetClock(offset))
    try:
        # a hang guard, not a timing assertion: a timer restarted at resume would wait minutes
        st = asyncio.run(asyncio.wait_for(rt.execute(run_id), 60))
        return st, rt.store.events(run_id)
    finally:
        rt.close()


@pytest.mark.slow
def test_a_run_timeout_survives_kill_9_and_holds_in_the_resuming_process(tmp_path, store_env):
    run_id, env = start_and_kill(tmp_path, TIMEOUT_FLOW, "ATTEMPT_STARTED", store_env)
    rt = build_runtime(env=env, home=tmp_path)
    started = next(e for e in rt.store.events(run_id) if e.type == "RUN_STARTED")
    rt.close()
    deadline = started.payload["deadline"]
    assert deadline == pytest.approx(started.ts + 20)
    # the resuming process lives 25 s later: the recorded deadline has passed
    st, evs = resume(env, tmp_path, run_id, offset=25 + started.ts - time.time())
    assert str(st.status) == "FAILED" and "timed out" in st.error
    recovered = next(i for i, e in enumerate(evs) if e.type == "RUN_RECOVERED")
    assert not [e for e in evs[recovered:] if e.type == "ATTEMPT_STARTED"]  # the step did not run again
    assert [e.type for e in evs].count("RUN_STARTED") == 1  # one deadline, set once
    assert evs[-1].type == "RUN_FAILED" and evs[-1].ts >= deadline


@pytest.mark.slow
def test_a_run_timeout_recorded_before_a_kill_fires_at_its_time_after_resume(tmp_path, store_env):
    run_id, env = start_and_kill(tmp_path, TIMEOUT_FLOW, "ATTEMPT_STARTED", store_env)
    rt = build_runtime(env=env, home=tmp_path)
    started = next(e for e in rt.store.events(run_id) if e.type == "RUN_STARTED")
    rt.close()
    deadline = started.payload["deadline"]
    # resumed 17 s after the start (clock moved forward): 3 s of the 20 are left
    st, evs = resume(env, tmp_path, run_id, offset=17 + started.ts - time.time())
    assert str(st.status) == "FAILED" and "timed out" in st.error
    recovered = next(e for e in evs if e.type == "RUN_RECOVERED")
    again = [e for e in evs if e.type == "ATTEMPT_STARTED" and e.attempt == 2]
    assert again  # the interrupted step ran again ...
    assert evs[-1].ts >= deadline  # ... until the recorded deadline,
    assert evs[-1].ts < recovered.ts + 20 - 5  # long before a deadline restarted at resume would be


@pytest.mark.slow
def test_a_retry_backoff_survives_kill_9_and_the_resuming_process_waits_for_its_recorded_time(
    tmp_path, store_env
):
    marker = tmp_path / "second-attempt"
    run_id, env = start_and_kill(tmp_path, RETRY_FLOW.format(marker=marker), "STEP_RETRYING", store_env)
    rt = build_runtime(env=env, home=tmp_path)
    retrying = next(e for e in rt.store.events(run_id) if e.type == "STEP_RETRYING")
    rt.close()
    at = retrying.payload["at"]
    assert at == pytest.approx(retrying.ts + 300)
    # resumed 298 s after the failure: the retry is due in 2 s, not in another 300
    st, evs = resume(env, tmp_path, run_id, offset=298 + retrying.ts - time.time())
    assert str(st.status) == "COMPLETED", st.error
    second = next(e for e in evs if e.type == "ATTEMPT_STARTED" and e.step_id == "a" and e.attempt == 2)
    assert second.ts >= at  # not before its recorded time
    assert [e.type for e in evs].count("STEP_RETRYING") == 1  # the backoff was not decided again
    assert marker.read_text() == "2"
