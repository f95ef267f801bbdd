"""Orchestra: SuperOptiX orchestra files as flows, and the Python Orchestra API."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Any

import pytest
from tests.support import wait_until

from llmflow import Orchestra
from llmflow.errors import RunStateError
from llmflow.model.loader import load_flow
from llmflow.model.orchestra import orchestra_to_flow
from llmflow.runtime import build_runtime
from llmflow.sdk.orchestra import condition_expr


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Orchestra workspaces are relative to where the command runs."""
    monkeypatch.chdir(tmp_path)


ORCHESTRA = """
orchestra:
  id: sdlc
  workspace: {type: local_fs, path: ./ws}
  execution: {strategy: STRATEGY, max_parallel_tasks: 2, task_timeout_seconds: 30, retry_strategy: none}
agents:
  - developer
  - {name: writer, model: "fake:writer", system: You write docs.}
tasks:
  - {name: design, agent: developer, description: "Design '{goal}'"}
  - {name: implement, agent: developer, description: "Implement it", context: [design]}
  - {name: test, agent: developer, description: "Test it", context: [implement]}
  - {name: release, agent: developer, description: "Release it", context: [test]}
  - {name: docs, agent: writer, description: "Document '{goal}'", context: [design]}
"""


@pytest.fixture
def make_rt(tmp_path: Path) -> Any:
    made: list[Any] = []

    def make(**env: str) -> Any:
        rt = build_runtime(
            env={"LLMFLOW_BLOCK_REAL_MODELS": "1", "LLMFLOW_MODEL": "fake:", **env}, home=tmp_path
        )
        made.append(rt)
        return rt

    yield make
    for rt in made:
        rt.close()


def orchestra_file(tmp_path: Path, strategy: str) -> Path:
    p = tmp_path / f"{strategy}.yaml"
    p.write_text(ORCHESTRA.replace("STRATEGY", strategy))
    return p


def run_file(rt: Any, path: Path, goal: str = "a todo app") -> dict[str, Any]:
    return Orchestra(runtime=rt).run_file_sync(path, goal)


# -- orchestra files ----------------------------------------------------------------------------


def test_an_orchestra_file_loads_as_a_flow_with_agents_tasks_and_result_files(tmp_path: Path) -> None:
    flow = load_flow(orchestra_file(tmp_path, "mixed")).flow
    assert flow.name == "sdlc" and set(flow.agents) == {"developer", "writer"}
    assert flow.options.max_concurrency == 2 and flow.options.workspace == str(
        tmp_path / "ws"
    )  # from where the command runs, as SuperOptiX
    ids = [s.id for s in flow.steps]
    assert ids == [
        "design",
        "design_result",
        "implement",
        "implement_result",
        "test",
        "test_result",
        "release",
        "release_result",
        "docs",
        "docs_result",
        "orchestra_result",
    ]
    impl = flow.step("implement")
    assert (
        impl.needs == ["design"]
        and impl.on_error == "continue"
        and impl.timeout == 30
        and impl.effective_retry().attempts == 1
    )
    assert "{{ steps.design.output }}" in impl.prompt and impl.when == "steps.design.status == 'COMPLETED'"
    assert flow.step("docs").needs == ["design"]


def test_sequential_tasks_run_in_order_each_fed_the_previous_result(make_rt: Any, tmp_path: Path) -> None:
    rt = make_rt()
    res = run_file(rt, orchestra_file(tmp_path, "sequential"))
    assert res["success"] and res["stats"]["completed_tasks"] == 5
    v = rt.view(res["run_id"])
    starts = [
        e.step_id
        for e in rt.store.events(res["run_id"])
        if e.type == "STEP_STARTED" and not e.step_id.endswith("_result")
    ]
    assert starts == ["design", "implement", "test", "release", "docs"]
    docs = next(s for s in v["steps"] if s["id"] == "docs")
    assert "the result of release" in docs["attempts"][0]["output"] or docs["status"] == "COMPLETED"
    saved = json.loads((tmp_path / "ws" / "docs_result.json").read_text())
    assert saved == {
        "task_name": "docs",
        "agent": "writer",
        "success": True,
        "result": res["task_results"]["docs"]["output"],
    }


def test_parallel_tasks_really_overlap(make_rt: Any, tmp_path: Path) -> None:
    rt = make_rt(LLMFLOW_MODEL="fake:?latency=0.3")
    res = run_file(rt, orchestra_file(tmp_path, "parallel"))
    assert res["success"]
    order = [
        (e.type, e.step_id)
        for e in rt.store.events(res["run_id"])
        if e.type in ("ATTEMPT_STARTED", "ATTEMPT_COMPLETED")
    ]
    # implement and docs both need only design: both start before either finishes
    first_done = min(order.index(("ATTEMPT_COMPLETED", s)) for s in ("implement", "docs"))
    assert (
        order.index(("ATTEMPT_STARTED", "implement")) < first_done
        and order.index(("ATTEMPT_STARTED", "docs")) < first_done
    )


def test_a_failed_task_stops_only_its_dependents(make_rt: Any, tmp_path: Path) -> None:
    rt = make_rt(LLMFLOW_MODEL_IMPLEMENT="fake:?fail=500")
    res = run_file(rt, orchestra_file(tmp_path, "parallel"))
    status = {n: r["status"] for n, r in res["task_results"].items()}
    # as SuperOptiX: the dependents of a failed task are absent, the run failed as success says
    assert status == {"design": "COMPLETED", "implement": "FAILED", "docs": "COMPLETED"}
    assert not res["success"] and res["stats"]["failed_tasks"] == 1 and res["stats"]["skipped_tasks"] == 2
    assert rt.view(res["run_id"])["status"] == "FAILED"
    assert sorted(p.name for p in (tmp_path / "ws").iterdir()) == ["design_result.json", "docs_result.json"]


def test_retry_strategies_become_step_retries() -> None:
    doc = {
        "orchestra": {"execution": {"retry_strategy": "exponential_backoff"}},
        "tasks": [{"name": "a", "agent": "x", "description": "d"}],
    }
    assert orchestra_to_flow(doc)["steps"][0]["retry"] == {"attempts": 3, "backoff": 1.0, "multiplier": 2.0}
    doc["orchestra"]["execution"]["retry_strategy"] = "fixed"
    assert orchestra_to_flow(doc)["steps"][0]["retry"]["multiplier"] == 1.0


# -- the Python Orchestra ---------------------------------------------------------------------


@pytest.fixture
def orch(make_rt: Any) -> Orchestra:
    def clean(x: Any) -> str:
        return str(x).strip().lower()

    async def shout(x: Any) -> str:
        return f"{x}!"

    return Orchestra(
        {
            "clean": clean,
            "shout": shout,
            "yes1": {"model": "fake:y1?answer=yes"},
            "yes2": {"model": "fake:y2?answer=Yes."},
            "no": {"model": "fake:n?answer=no", "weight": 5},
            "writer": {"model": "fake:w"},
        },
        runtime=make_rt(LLMFLOW_MODEL=""),
    )


def test_pipeline_feeds_each_output_to_the_next_agent(orch: Orchestra) -> None:
    res = orch.run_pipeline_sync("  RAW Data ", ["clean", "shout", "writer"])
    assert res["success"] and [s["agent"] for s in res["steps"]] == ["clean", "shout", "writer"]
    assert [s["output"] for s in res["steps"][:2]] == ["raw data", "raw data!"]
    assert res["output"].startswith("fake answer to: raw data!")
    assert orch.runtime.get(res["run_id"]).run_type == "orchestra"


def test_a_flow_file_agent_chains_like_the_others(orch: Orchestra, tmp_path: Path) -> None:
    (tmp_path / "wrap.yaml").write_text(
        "name: wrap\ninputs: {text: string}\nsteps:\n  - id: w\n    llm: {model: 'fake:', prompt: 'wrap {{ inputs.text }}'}\n"
    )
    orch.add_agent("wrap", str(tmp_path / "wrap.yaml"))
    res = orch.run_pipeline_sync("X", ["clean", "wrap", "shout"])
    assert res["success"], res["error"]
    assert res["steps"][1]["output"].startswith("fake answer to: wrap x")
    assert res["output"] == res["steps"][1]["output"] + "!"


def test_a_failing_pipeline_step_stops_the_pipeline(orch: Orchestra) -> None:
    orch.add_agent("boom", lambda x: 1 / 0)
    res = orch.run_pipeline_sync("x", ["clean", "boom", "shout"])
    assert res["status"] == "FAILED" and not res["success"]
    assert [s["status"] for s in res["steps"]] == ["COMPLETED", "FAILED", "CANCELED"]
    assert "ZeroDivisionError" in res["steps"][1]["error"]


@pytest.mark.parametrize(
    ("aggregation", "expected"), [("majority", "yes"), ("consensus", "yes"), ("weighted", "no")]
)
def test_broadcast_of_llm_agents_is_a_broadcast_step_with_aggregation(
    orch: Orchestra, aggregation: str, expected: str
) -> None:
    res = orch.run_broadcast_sync("Is it good?", ["yes1", "yes2", "no"], aggregation=aggregation)
    assert res["success"] and res["output"] == expected
    assert {a: r["output"] for a, r in res["agents"].items()} == {"yes1": "yes", "yes2": "Yes.", "no": "no"}
    assert any(s["kind"] == "broadcast" for s in orch.runtime.view(res["run_id"])["steps"])


def test_broadcast_over_mixed_agents_aggregates_in_a_recorded_step(orch: Orchestra) -> None:
    orch.add_agent("also_yes", lambda x: "yes")
    res = orch.run_broadcast_sync("q", ["yes1", "also_yes", "no", "clean"], aggregation="majority")
    assert res["success"] and res["output"] == "yes"
    assert res["outputs"]["aggregate"]["strategy"] == "majority"
    assert set(res["agents"]) == {"yes1", "also_yes", "no", "clean"}


def test_the_aggregate_step_function_resolves_at_its_recorded_paths_old_and_new(orch: Orchestra) -> None:
    from llmflow.sdk.workflows import AGGREGATE_FUNCTION, aggregate_answers
    from llmflow.steps.python_fn import resolve_function

    orch.add_agent("also_yes", lambda x: "yes")
    res = orch.run_broadcast_sync("q", ["yes1", "also_yes"], aggregation="first")
    recorded = orch.runtime.store.get_run(res["run_id"]).spec["flow"]["steps"]
    assert [s["function"] for s in recorded if s["id"] == "aggregate"] == [AGGREGATE_FUNCTION]
    assert res["success"] and res["output"] == "yes"
    # runs recorded before the split name the function by its older homes: all resolve to it
    for path in (
        AGGREGATE_FUNCTION,
        "llmflow.sdk.orchestra:aggregate_answers",
        "llmflow.orchestra:aggregate_answers",
    ):
        assert resolve_function(path) is aggregate_answers


def test_conditional_runs_the_first_matching_agent_else_the_default(orch: Orchestra) -> None:
    conds = [
        {"condition": "input.type == 'image'", "agent": "writer"},
        {"condition": "input.type == 'text'", "agent": "clean"},
    ]
    res = orch.run_conditional_sync({"type": "text", "content": "Hi"}, conds, default_agent="shout")
    assert res["selected_agent"] == "clean" and res["agents"]["writer"]["status"] == "SKIPPED"
    assert res["output"] == "{'type': 'text', 'content': 'hi'}"
    res = orch.run_conditional_sync({"type": "audio"}, conds, default_agent="shout")
    assert res["selected_agent"] == "shout" and res["output"].endswith("!")
    res = orch.run_conditional_sync({"type": "audio"}, conds)
    assert res["selected_agent"] is None and res["success"]
    assert condition_expr("input.x == 'input.y' and inputs.z") == "inputs.input.x == 'input.y' and inputs.z"


def test_parallel_tasks_take_their_input_key_and_a_failure_stops_no_other(orch: Orchestra) -> None:
    orch.add_agent("boom", lambda x: 1 / 0)
    tasks = [
        {"agent": "clean", "input_key": "raw"},
        {"agent": "shout", "input_key": "meta"},
        {"agent": "boom"},
    ]
    res = orch.run_parallel_sync({"raw": "A B", "meta": "m"}, tasks, max_concurrent=2)
    assert {n: r["status"] for n, r in res["results"].items()} == {
        "clean": "COMPLETED",
        "shout": "COMPLETED",
        "boom": "FAILED",
    }
    assert res["results"]["clean"]["output"] == "a b" and res["results"]["shout"]["output"] == "m!"
    assert not res["success"]
    assert orch.runtime.get(res["run_id"]).spec["flow"]["options"]["max_concurrency"] == 2


def test_agents_and_status(orch: Orchestra) -> None:
    orch.run_pipeline_sync("x", ["clean", "shout"])
    st = orch.get_agent_status("clean")
    assert (st["kind"], st["status"], st["calls"], st["successes"]) == ("python", "idle", 1, 1)
    assert orch.get_orchestra_status()["status"] == "idle" and orch.get_orchestra_status()["runs"] == 1
    orch.remove_agent("shout")
    with pytest.raises(KeyError, match="no agent 'shout'"):
        orch.get_agent_status("shout")
    with pytest.raises(TypeError, match="expected an agent config"):
        orch.add_agent("bad", 42)


def test_pause_holds_the_run_until_resume_and_stop_cancels_and_refuses_work(orch: Orchestra) -> None:
    gate = threading.Event()

    def slow(x: Any) -> str:
        gate.wait(30)
        return "slow done"

    orch.add_agent("slow", slow)
    rt = orch.runtime
    box: dict[str, Any] = {}
    t = threading.Thread(target=lambda: box.update(res=orch.run_pipeline_sync("x", ["slow", "clean"])))
    t.start()
    wait_until(lambda: orch.get_orchestra_status()["active_runs"], what="the run to start")
    run_id = orch.get_orchestra_status()["active_runs"][0]
    orch.pause_orchestra()
    wait_until(lambda: rt.get(run_id).status == "PAUSED", what="the run to pause")
    assert orch.get_orchestra_status()["status"] == "paused"
    gate.set()  # the running step finishes; the next one does not start while paused
    wait_until(lambda: rt.view(run_id)["steps"][0]["status"] == "COMPLETED", what="the slow step")
    assert t.is_alive() and rt.view(run_id)["steps"][1]["status"] == "PENDING"
    orch.resume_orchestra()
    t.join(30)
    assert box["res"]["success"] and box["res"]["output"] == "slow done"

    gate.clear()
    t = threading.Thread(target=lambda: box.update(res=orch.run_pipeline_sync("x", ["slow"])))
    t.start()
    wait_until(lambda: orch.get_orchestra_status()["active_runs"], what="the second run to start")
    run_id = orch.get_orchestra_status()["active_runs"][0]
    orch.stop_orchestra()
    wait_until(lambda: rt.get(run_id).status == "CANCELED", what="the run to be canceled")
    gate.set()  # the step's thread cannot be interrupted; let it end
    t.join(30)
    assert box["res"]["status"] == "CANCELED"
    with pytest.raises(RunStateError, match="stopped"):
        orch.run_pipeline_sync("x", ["clean"])
    orch.resume_orchestra()
    assert orch.run_pipeline_sync("x", ["clean"])["success"]


def test_orchestra_methods_work_inside_a_running_event_loop(orch: Orchestra) -> None:
    async def main() -> list[bool]:
        a = await orch.run_pipeline("x", ["clean"])
        b = orch.run_parallel_sync("y", [{"agent": "shout"}])
        c = await orch.run_orchestra(
            "z", "broadcast", target_agents=["yes1", "yes2"], aggregation_strategy="majority"
        )
        return [a["success"], b["success"], c["output"] == "yes"]

    assert asyncio.run(main()) == [True, True, True]
