"""Issue 14's engine repros as tests: budgets are reservations and never hang a run; every way
a fan-out can fail ends the run in a terminal status with every attempt ended; a step's
units are capped; a run keeps the choices it was created with; child-run ids are stable;
the store fails loudly when its database file disappears."""

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

from llmflow.engine.states import RUN_TERMINAL
from llmflow.runtime import build_runtime, child_run_id

REPO = Path(__file__).resolve().parents[2]

BUDGET_FLOW = """
name: budget
options: {max_tokens: 60, max_concurrency: 16}
steps:
  - id: each
    for_each: "{{ range(30) | list }}"
    llm: {prompt: "item {{ item }}", model: "fake:?latency=LATENCY"}
"""


def env_for(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLMFLOW_", "OLLAMA_"))}
    env.update(
        LLMFLOW_HOME=str(home), LLMFLOW_BLOCK_REAL_MODELS="1", LLMFLOW_MODEL="fake:", PYTHONPATH=str(REPO)
    )
    env.update(extra)
    return env


def attempts_all_ended(events: list) -> None:
    """Every ATTEMPT_STARTED has exactly one end event."""
    ends = ("ATTEMPT_COMPLETED", "ATTEMPT_FAILED", "ATTEMPT_CANCELED", "ATTEMPT_INTERRUPTED")
    started = collections.Counter(
        (e.step_id, e.unit, e.attempt) for e in events if e.type == "ATTEMPT_STARTED"
    )
    ended = collections.Counter((e.step_id, e.unit, e.attempt) for e in events if e.type in ends)
    assert started == ended, {
        k: (started[k], ended[k]) for k in set(started) | set(ended) if started[k] != ended[k]
    }


def check_budget_run(rt, run_id: str) -> None:
    rec = rt.store.get_run(run_id)
    assert rec.status == "FAILED", rec.status
    assert "token budget" in rec.error and "max_tokens" in rec.error
    evs = rt.store.events(run_id)
    attempts_all_ended(evs)
    per_call = max(
        e.payload["usage"]["input_tokens"] + e.payload["usage"]["output_tokens"]
        for e in evs
        if e.type == "LLM_DONE"
    )
    assert rec.tokens_in + rec.tokens_out <= 60 + per_call  # at most one call's worth over
    assert next(e for e in evs if e.type == "RUN_FAILED").payload["budget"] == "max_tokens"
    assert all(a.status != "RUNNING" for a in rt.store.attempts(run_id))


def test_the_budget_repro_ends_failed_naming_the_budget_via_the_cli(tmp_path):
    (tmp_path / "budget.yaml").write_text(BUDGET_FLOW.replace("LATENCY", "0.3"))
    env = env_for(tmp_path)
    del env["LLMFLOW_MODEL"]  # the step's own model (0.3 s per call) applies
    for _ in range(3):
        # a hang guard, not a timing assertion: before the fix these runs never ended
        p = subprocess.run(
            [sys.executable, "-m", "llmflow", "run", "budget.yaml"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert p.returncode == 1, p.stderr
        assert "token budget" in p.stderr
    rt = build_runtime(env=env, home=tmp_path)
    try:
        runs = rt.store.list_runs()
        assert len(runs) == 3
        for rec in runs:
            check_budget_run(rt, rec.id)
    finally:
        rt.close()


def test_the_budget_repro_ends_failed_via_the_api_and_cancel_stops_it(tmp_path):
    from fastapi.testclient import TestClient
    from tests.server.helpers import base_env, wait_until

    from llmflow.server.app import create_app
    from llmflow.server.config import ServerConfig
    from llmflow.settings import Settings

    home = tmp_path / "home"
    home.mkdir()
    env = base_env(home)
    del env["LLMFLOW_MODEL"]  # the step's own model applies
    app = create_app(Settings.from_env(env), ServerConfig.from_env(env, config_dir=home / "conf", workers=4))
    with TestClient(app) as c:
        ids = []
        for _ in range(3):
            r = c.post("/api/v1/runs", json={"document": BUDGET_FLOW.replace("LATENCY", "0.3")})
            assert r.status_code == 201, r.text
            ids.append(r.json()["id"])
        slow = c.post("/api/v1/runs", json={"document": BUDGET_FLOW.replace("LATENCY", "30")}).json()["id"]
        for rid in ids:
            wait_until(
                lambda rid=rid: c.get(f"/api/v1/runs/{rid}").json()["status"] in RUN_TERMINAL,
                60,
                what=f"run {rid} to end",
            )
        wait_until(
            lambda: c.get(f"/api/v1/runs/{slow}").json()["status"] == "RUNNING",
            30,
            what="the slow run to start",
        )
        assert c.post(f"/api/v1/runs/{slow}/cancel").status_code in (200, 202)
        wait_until(
            lambda: c.get(f"/api/v1/runs/{slow}").json()["status"] == "CANCELED",
            30,
            what="the slow run to be canceled",
        )
        rt = app.state.services.runtime
        for rid in ids:
            check_budget_run(rt, rid)
        attempts_all_ended(rt.store.events(slow))
        assert app.state.services.worker.status()["active_runs"] == []  # no slot held


FAN = """
name: fan
model: "fake:"
options: {{max_concurrency: 3{options}}}
steps:
  - id: each
    for_each: {items}
{step}
  - id: after
    python: {{function: "tests.engine.crash_effects:sleep_long", args: {{seconds: 0}}}}
"""

FAILURE_MODES = {
    "the step raises": (
        "[1, 2, 3, 4, 5, 6]",
        "    python: {function: 'tests.engine.crash_effects:fail_first', args: {marker: '/nonexistent/x'}}\n    retry: 1",
        "",
        "FAILED",
    ),
    "retries run out": (
        "[1, 2, 3, 4, 5, 6]",
        "    llm: {prompt: x, model: 'fake:?fail=500'}\n    retry: {attempts: 2, backoff: 0}",
        "",
        "FAILED",
    ),
    "the provider times out": (
        "[1, 2, 3, 4, 5, 6]",
        "    llm: {prompt: x, model: 'fake:?fail=timeout'}",
        "",
        "FAILED",
    ),
    "a step timeout": (
        "[1, 2, 3, 4, 5, 6]",
        "    python: {function: 'tests.engine.crash_effects:sleep_long', args: {seconds: 30}}\n    timeout: 0.2",
        "",
        "FAILED",
    ),
    "the token budget": (
        "[1, 2, 3, 4, 5, 6]",
        "    llm: {prompt: 'a b c d e f g h', model: 'fake:?latency=0.05'}",
        ", max_tokens: 20",
        "FAILED",
    ),
    "the run timeout": (
        "[1, 2, 3, 4, 5, 6]",
        "    python: {function: 'tests.engine.crash_effects:sleep_long', args: {seconds: 30}}",
        ", timeout: 0.3",
        "FAILED",
    ),
    "the unit cap": ('"{{ range(50) | list }}"', "    llm: x", ", max_units: 10", "FAILED"),
    "a bad for_each": ('"{{ 3 }}"', "    llm: x", "", "FAILED"),
    "a person who never answers": ("[1, 2, 3]", "    human: {prompt: 'ok?', timeout: 0.2}", "", "FAILED"),
    "a sub-flow that fails": ("[1, 2, 3]", "    flow: {flow: child.yaml}", "", "FAILED"),
    "on_error continue": (
        "[1, 2, 3, 4, 5, 6]",
        "    llm: {prompt: x, model: 'fake:?fail=500'}\n    on_error: continue",
        "",
        "COMPLETED",
    ),
}


@pytest.mark.parametrize("mode", list(FAILURE_MODES))
def test_every_failure_mode_through_a_fan_out_ends_the_run_with_every_attempt_ended(tmp_path, mode):
    items, step, options, expected = FAILURE_MODES[mode]
    (tmp_path / "child.yaml").write_text(
        "name: child\nsteps:\n  - id: boom\n    llm: {prompt: x, model: 'fake:?fail=500'}\n"
    )
    flow = tmp_path / "fan.yaml"
    flow.write_text(FAN.format(items=items, step=step, options=options))
    env = env_for(tmp_path)
    del env["LLMFLOW_MODEL"]  # the steps' own models apply
    rt = build_runtime(env=env, home=tmp_path)
    try:
        rec = rt.create_run(str(flow))
        st = asyncio.run(asyncio.wait_for(rt.execute(rec.id), 60))  # hang guard
        assert str(st.status) == expected, st.error
        final = rt.store.get_run(rec.id)
        assert final.status == expected
        evs = rt.store.events(rec.id)
        attempts_all_ended(evs)
        assert all(a.status != "RUNNING" for a in rt.store.attempts(rec.id))
        assert evs[-1].type in ("RUN_COMPLETED", "RUN_FAILED", "RUN_CANCELED")
    finally:
        rt.close()


def test_cancel_in_the_middle_of_a_fan_out_ends_every_attempt(tmp_path):
    flow = tmp_path / "fan.yaml"
    flow.write_text(
        FAN.format(
            items="[1, 2, 3, 4, 5, 6]",
            step="    python: {function: 'tests.engine.crash_effects:sleep_long', args: {seconds: 30}}",
            options="",
        )
    )
    rt = build_runtime(env=env_for(tmp_path), home=tmp_path)

    async def go():
        rec = rt.create_run(str(flow))
        task = asyncio.create_task(rt.execute(rec.id))
        while rec.id not in rt.active or rt.active[rec.id].st.running < 3:
            await asyncio.sleep(0.01)
        rt.control(rec.id, "cancel")
        return rec.id, await asyncio.wait_for(task, 60)

    try:
        rid, st = asyncio.run(go())
        assert str(st.status) == "CANCELED"
        attempts_all_ended(rt.store.events(rid))
    finally:
        rt.close()


def test_units_are_capped_by_the_setting_before_they_are_built(tmp_path):
    flow = tmp_path / "big.yaml"
    flow.write_text(
        'name: big\nsteps:\n  - id: each\n    for_each: "{{ range(100000) | list }}"\n    llm: x\n'
    )
    # the template's own range cap (LLMFLOW_TEMPLATE_MAX_RANGE, default 10,000) is raised so
    # that the unit cap is what stops this one
    env = env_for(tmp_path, LLMFLOW_MAX_UNITS="1000", LLMFLOW_TEMPLATE_MAX_RANGE="100000")
    p = subprocess.run(
        [sys.executable, "-m", "llmflow", "run", str(flow)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 1
    assert "100000 units" in p.stderr and "cap of 1000" in p.stderr
    rt = build_runtime(env=env, home=tmp_path)
    try:
        (rec,) = rt.store.list_runs()
        started = next(e for e in rt.store.events(rec.id) if e.type == "STEP_STARTED")
        assert started.payload["units"] == []  # nothing was materialised
    finally:
        rt.close()


# -- a run keeps its choices ---------------------------------------------------------------------

TWO_STEPS = """
name: two
steps:
  - id: a
    llm: {prompt: first}
  - id: b
    python: {function: "tests.engine.crash_effects:sleep_long", args: {seconds: SECONDS}}
  - id: c
    llm: {prompt: last}
"""


def test_a_run_resumed_by_another_process_keeps_the_model_it_was_created_with(tmp_path):
    (tmp_path / "two.yaml").write_text(TWO_STEPS.replace("SECONDS", "600"))
    env = env_for(tmp_path, LLMFLOW_MODEL="fake:?answer=from-the-first-process")
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmflow", "run", "two.yaml"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    watcher = build_runtime(env=env, home=tmp_path)
    try:
        deadline = time.monotonic() + 60
        while True:
            runs = watcher.store.list_runs(limit=1)
            if runs and any(
                e.type == "ATTEMPT_STARTED" and e.step_id == "b" for e in watcher.store.events(runs[0].id)
            ):
                break
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        rid = runs[0].id
        choices = watcher.store.get_run(rid).options["choices"]
        assert choices["models"]["a"] == {
            "model": "fake:?answer=from-the-first-process",
            "source": "environment LLMFLOW_MODEL",
        }
        assert choices["env_models"] == {"LLMFLOW_MODEL": "fake:?answer=from-the-first-process"}
        assert choices["flow_version"] == "1" and choices["settings"]["max_units"] == 10_000
    finally:
        watcher.close()
    (tmp_path / "two.yaml").write_text(TWO_STEPS.replace("SECONDS", "0"))
    other = build_runtime(
        env=env_for(tmp_path, LLMFLOW_MODEL="fake:?answer=from-the-second-process"), home=tmp_path
    )
    try:
        st = asyncio.run(other.execute(rid, force=True))
        assert str(st.status) == "COMPLETED", st.error
        assert st.nodes["c"].output == "from-the-first-process"
        models = {e.payload["model"] for e in other.store.events(rid) if e.type == "LLM_DONE"}
        assert models == {"fake:?answer=from-the-first-process"}
    finally:
        other.close()


def test_child_run_ids_do_not_depend_on_the_process():
    code = "from llmflow.runtime import child_run_id; print(child_run_id('r1', 'loop#2/each', '7'))"
    outs = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for seed in ("1", "2", "3")
    }
    assert outs == {child_run_id("r1", "loop#2/each", "7")}
    assert child_run_id("r1", "step", "") == "r1.step"


def test_a_parent_resumed_in_another_process_finds_the_child_run_it_had_started(tmp_path):
    gate = tmp_path / "gate"
    gate.mkdir()
    (tmp_path / "child.yaml").write_text(
        "name: child\ninputs: {n: integer}\nsteps:\n"
        f"  - id: x\n    python: {{function: 'tests.engine.crash_effects:effect', args: {{out_dir: '{gate}', name: x, gate: x}}}}\n"
    )
    (tmp_path / "parent.yaml").write_text(
        "name: parent\noptions: {max_concurrency: 1}\nsteps:\n  - id: kids\n    for_each: [1, 2, 3]\n    flow: {flow: child.yaml, inputs: {n: '{{ item }}'}}\n"
    )
    env = env_for(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmflow", "run", "parent.yaml"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    watcher = build_runtime(env=env, home=tmp_path)
    try:
        deadline = time.monotonic() + 60
        while True:  # the first child is blocked in its step: kill the parent's process then
            kids = watcher.store.list_runs(flow="child")
            if kids and any(e.type == "ATTEMPT_STARTED" for e in watcher.store.events(kids[0].id)):
                break
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        (parent,) = watcher.store.list_runs(flow="parent")
    finally:
        watcher.close()
    (gate / "GO").write_text("")
    rt = build_runtime(env=env, home=tmp_path)  # this process hashes strings differently
    try:
        st = asyncio.run(asyncio.wait_for(rt.execute(parent.id), 60))
        assert str(st.status) == "COMPLETED", st.error
        children = {r.id for r in rt.store.list_runs(flow="child")}
        assert children == {child_run_id(parent.id, "kids", u) for u in ("0", "1", "2")}  # no duplicate child
        assert all(r.status == "COMPLETED" for r in rt.store.list_runs(flow="child"))
    finally:
        rt.close()


# -- the store notices its file is gone ----------------------------------------------------------


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_database_file_deleted_or_replaced_mid_run_fails_the_run_loudly(tmp_path, how):
    (tmp_path / "two.yaml").write_text(TWO_STEPS.replace("SECONDS", "1.5"))
    env = env_for(tmp_path)
    db = tmp_path / ".llmflow" / "llmflow.db"
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmflow", "run", "two.yaml"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not db.exists():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    time.sleep(0.3)
    if how == "deleted":
        db.unlink()
    else:
        import shutil

        shutil.copy(db, tmp_path / "copy.db")
        os.replace(tmp_path / "copy.db", db)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert f"was {how}" in err and "llmflow.db" in err
    assert "Traceback" not in err
