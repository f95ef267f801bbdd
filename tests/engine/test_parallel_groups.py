"""A parallel group starts with its first child and ends with its last; a failed child fails
it with the child's error while its siblings are canceled (issue 15, item 16). Through the
real surfaces: a FlowRunner flow file run by the ``llmflow`` CLI in a subprocess, and a
native flow run by the runtime with its events in a SQLite store."""

from __future__ import annotations

import asyncio
import json
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from llmflow.engine.events import EventType as E
from llmflow.model.loader import parse_flow_text
from server.helpers import LLMFLOW, base_env

# FlowRunner's own shape: one step whose three actions run in parallel, then a second step
STORY = {
    "id": "f1",
    "name": "Story",
    "variables": [{"name": "TOPIC", "value": "tea"}],
    "steps": [
        {"id": "s1", "name": "Draft", "actionIds": ["a1", "a2", "a3"]},
        {"id": "s2", "name": "Title", "actionIds": ["a4"]},
    ],
    "actions": {
        "a1": {"id": "a1", "messages": [{"id": "m1", "role": "user", "content": "Quick {{$var.TOPIC}}"}]},
        "a2": {"id": "a2", "messages": [{"id": "m2", "role": "user", "content": "Failing {{$var.TOPIC}}"}]},
        "a3": {"id": "a3", "messages": [{"id": "m3", "role": "user", "content": "Slow {{$var.TOPIC}}"}]},
        "a4": {
            "id": "a4",
            "messages": [{"id": "m4", "role": "user", "content": "{{$step1.action1.output}}"}],
        },
    },
}


def llmflow(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return subprocess.run(
        [LLMFLOW, *args], cwd=tmp_path, env=base_env(home), capture_output=True, text=True, timeout=120
    )


def test_a_flowrunner_parallel_group_fails_with_its_childs_error_and_spans_its_children(
    tmp_path: Path,
) -> None:
    (tmp_path / "story.json").write_text(json.dumps(STORY))
    p = llmflow(
        tmp_path,
        "run",
        "story.json",
        "--model",
        "step1_action2=fake:?fail=429",  # rate limited on every attempt: retried, then fails
        "--model",
        "step1_action3=fake:?latency=60",  # still running when its sibling fails: canceled
        "--json",
    )
    assert p.returncode == 1, p.stdout + p.stderr
    run = json.loads(p.stdout)
    assert run["status"] == "FAILED" and "step1_action2" in run["error"]
    steps = {s["id"]: s for s in run["steps"]}
    group, quick, bad, slow = (steps[k] for k in ("step1", "step1_action1", "step1_action2", "step1_action3"))
    assert group["kind"] == "parallel"
    assert group["status"] == "FAILED", group
    assert group["error"].startswith("step1_action2: ") and "rate limited (injected 429)" in group["error"]
    assert group["error"].endswith(bad["error"])
    assert (quick["status"], bad["status"], slow["status"]) == ("COMPLETED", "FAILED", "CANCELED")
    assert steps["step2_action1"]["status"] == "CANCELED"
    # the group's duration spans its children: it starts no later than its first child, ends
    # no earlier than its last (the canceled sibling): its duration is theirs
    t = datetime.fromisoformat
    children = (quick, bad, slow)
    first = min(t(c["started_at"]) for c in children)
    last = max(t(c["ended_at"]) for c in children)
    assert t(group["started_at"]) <= first and t(group["ended_at"]) >= last
    span = (last - first).total_seconds()
    assert span > 0 and group["duration"] == pytest.approx(span, abs=1e-3)

    # the recorded log says the same in order: the group opens before any child starts an
    # attempt and fails after every child has ended
    ev = llmflow(tmp_path, "runs", "events", run["id"], "--json")
    assert ev.returncode == 0, ev.stderr
    log = [json.loads(line) for line in ev.stdout.splitlines() if line.strip()]
    at = {(e["type"], e["step_id"]): i for i, e in enumerate(log)}
    first_attempt = min(
        i for i, e in enumerate(log) if e["type"] == E.ATTEMPT_STARTED and e["step_id"].startswith("step1_")
    )
    assert at[(E.STEP_STARTED, "step1")] < first_attempt
    ends = [at[(t, c)] for t, c in ((E.STEP_COMPLETED, "step1_action1"), (E.STEP_FAILED, "step1_action2"))]
    ends.append(at[(E.STEP_CANCELED, "step1_action3")])
    assert at[(E.STEP_FAILED, "step1")] > max(ends)
    assert (E.STEP_CANCELED, "step1") not in at


def _steps(runtime: Any, run_id: str) -> dict[str, dict[str, Any]]:
    return runtime.store.step_rows(run_id)


def test_a_native_parallel_group_fails_with_its_childs_error_and_completes_when_its_children_do(
    runtime: Any,
) -> None:
    failing = parse_flow_text(
        """
name: group_fails
steps:
  - id: fan
    parallel:
      - {id: ok, python: {function: "builtins:str", args: {object: "fine"}}}
      - {id: broken, python: {function: "json:loads", args: {s: "not json"}}}
  - id: after
    python: {function: "builtins:str", args: {object: "never"}}
"""
    )
    st = asyncio.run(runtime.run(failing))
    assert str(st.status) == "FAILED"
    fan, broken = st.nodes["fan"], st.nodes["broken"]
    assert str(fan.status) == "FAILED" and broken.error and fan.error == f"broken: {broken.error}"
    assert str(st.nodes["after"].status) == "CANCELED"
    rows = _steps(runtime, st.run_id)
    assert rows["fan"]["status"] == "FAILED" and rows["fan"]["error"] == fan.error
    assert rows["fan"]["started_at"] <= min(rows[c]["started_at"] for c in ("ok", "broken"))
    assert rows["fan"]["ended_at"] >= max(rows[c]["ended_at"] for c in ("ok", "broken"))

    fine = parse_flow_text(
        """
name: group_completes
steps:
  - id: fan
    parallel:
      - {id: a, python: {function: "builtins:str", args: {object: "A"}}}
      - {id: b, python: {function: "builtins:str", args: {object: "B"}}}
  - id: after
    python: {function: "builtins:str", args: {object: "{{ steps.fan.output.a }}{{ steps.fan.output.b }}"}}
"""
    )
    st = asyncio.run(runtime.run(fine))
    assert str(st.status) == "COMPLETED" and st.nodes["after"].output == "AB"
    log = [(e.type, e.step_id) for e in runtime.store.events(st.run_id)]
    assert log.index((E.STEP_STARTED, "fan")) < log.index((E.STEP_STARTED, "a"))
    assert log.index((E.STEP_COMPLETED, "fan")) > max(
        log.index((E.STEP_COMPLETED, "a")), log.index((E.STEP_COMPLETED, "b"))
    )
