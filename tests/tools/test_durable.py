"""kill -9 in the middle of a tool loop, then resume: finished tool calls are never executed
again (counted by their side effects), their recorded results go back to the model; a
re-run in place starts a fresh loop."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

FLOW = """\
name: durable
model: fake:agent
steps:
  - id: work
    llm:
      prompt: do the work
      tools: ["tests.tools.helpers:record", "tests.tools.helpers:slow"]
"""

SCRIPT = {
    "agent": {
        "answers": [
            {
                "tool_calls": [
                    {"name": "record", "arguments": {"key": "a"}},
                    {"name": "record", "arguments": {"key": "b"}},
                ]
            },
            {
                "tool_calls": [
                    {"name": "record", "arguments": {"key": "c"}},
                    {"name": "slow", "arguments": {"key": "d"}},
                ]
            },
            "finished: {tool_results}",
        ]
    }
}


def env_for(home: Path, effects: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMFLOW_")}
    env.update(
        LLMFLOW_HOME=str(home),
        LLMFLOW_BLOCK_REAL_MODELS="1",
        LLMFLOW_FAKE_SCRIPTS=str(home / "scripts.json"),
        LLMFLOW_TEST_EFFECTS=str(effects),
        PYTHONPATH=str(ROOT),
    )
    return env


def effects_of(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def _completed_calls(home: Path) -> set[str]:
    db = home / ".llmflow" / "llmflow.db"
    if not db.exists():
        return set()
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        rows = conn.execute("SELECT payload FROM events WHERE type = 'TOOL_CALL_COMPLETED'").fetchall()
    except sqlite3.OperationalError:  # the schema is not there yet
        return set()
    finally:
        conn.close()
    return {json.loads(p)["call_id"] for (p,) in rows}


def test_kill_9_mid_loop_then_resume_never_reruns_a_finished_call(tmp_path):
    (tmp_path / "scripts.json").write_text(json.dumps(SCRIPT))
    (tmp_path / "durable.yaml").write_text(FLOW)
    effects = tmp_path / "effects.txt"
    env = env_for(tmp_path, effects)
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmflow", "run", "durable.yaml"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while "slow-start:d" not in effects_of(effects) and time.monotonic() < deadline:
        time.sleep(0.05)
    # record:c finished before slow started blocking: wait until its TOOL_CALL_COMPLETED is
    # durable (read from the database, as another process would), however loaded the machine
    while not _completed_calls(tmp_path) >= {"call_1_0"} and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _completed_calls(tmp_path) >= {"call_1_0"}, "record:c's completion was never recorded"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert sorted(effects_of(effects)) == ["record:a", "record:b", "record:c", "slow-start:d"]

    effects.with_suffix(".release").write_text("go")
    runs = json.loads(
        subprocess.run(
            [sys.executable, "-m", "llmflow", "runs", "list", "--json"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
    )
    run_id = runs[0]["id"]
    p = subprocess.run(
        [sys.executable, "-m", "llmflow", "runs", "resume", run_id, "--json"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    view = json.loads(p.stdout)
    assert view["status"] == "COMPLETED"
    done = effects_of(effects)
    for key in ("a", "b", "c"):
        assert done.count(f"record:{key}") == 1, done  # finished before the kill: not run again
    assert done.count("slow-done:d") == 1  # the call that was running is run again, once
    assert (
        view["outputs"]["result"] == "finished: recorded c\nslow d"
    )  # the replayed result of c reached the model
    step = view["steps"][0]
    assert [a["status"] for a in step["attempts"]] == ["INTERRUPTED", "COMPLETED"]
    calls = {c["call_id"]: c for c in step["tool_calls"]}
    assert set(calls) == {"call_0_0", "call_0_1", "call_1_0", "call_1_1"}
    assert all(c["status"] == "COMPLETED" for c in calls.values())
    assert calls["call_0_0"]["attempt"] == 1 and calls["call_1_1"]["attempt"] == 2

    events = json.loads(
        "["
        + ",".join(
            subprocess.run(
                [sys.executable, "-m", "llmflow", "runs", "events", run_id, "--json"],
                env=env,
                cwd=tmp_path,
                capture_output=True,
                text=True,
                timeout=60,
            ).stdout.splitlines()
        )
        + "]"
    )
    second = [e for e in events if e["attempt"] == 2 and e["step_id"] == "work"]
    started_again = [e["payload"]["call_id"] for e in second if e["type"] == "TOOL_CALL_STARTED"]
    assert started_again == ["call_1_1"]  # only the interrupted call starts again
    model_calls = [e for e in second if e["type"] == "LLM_DONE"]
    assert len(model_calls) == 1  # the two recorded rounds are replayed, not asked again

    # a re-run in place is a fresh loop: every tool runs again
    p = subprocess.run(
        [sys.executable, "-m", "llmflow", "runs", "rerun", run_id, "--step", "work", "--json"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    done = effects_of(effects)
    assert done.count("record:a") == 2 and done.count("slow-done:d") == 2
