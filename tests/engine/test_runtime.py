"""The runtime end to end on real SQLite files with the fake model."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from llmflow.engine.events import EventType as E
from llmflow.errors import FlowValidationError, ResumeRefusedError, RunStateError
from llmflow.model.loader import parse_flow_text
from llmflow.runtime import RunRequest


def types(rt, run_id):
    return [e.type for e in rt.store.events(run_id)]


def test_a_pipeline_records_the_agent_runner_vocabulary_in_order(runtime):
    flow = parse_flow_text("""
name: p
inputs: {q: string}
steps:
  - id: planner
    llm: "Plan: {{ inputs.q }}"
  - id: save
    write_file: {path: PLAN.md, content: "{{ steps.planner.output }}"}
  - id: check
    shell: "test -s PLAN.md && echo ok"
""")
    st = asyncio.run(runtime.run(flow, {"q": "a service"}))
    assert str(st.status) == "COMPLETED"
    t = types(runtime, st.run_id)
    expected = [
        E.RUN_CREATED,
        E.RUN_STARTED,
        E.WORKFLOW_STARTED,
        E.STEP_STARTED,
        E.LLM_LOADING_MODEL,
        E.LLM_GENERATING,
        E.LLM_DONE,
        E.STEP_COMPLETED,
        E.ARTIFACT_CREATED,
        E.SHELL_EXECUTING,
        E.WORKFLOW_COMPLETED,
        E.RUN_COMPLETED,
    ]
    pos = [t.index(x) for x in expected]
    assert pos == sorted(pos)
    evs = runtime.store.events(st.run_id)
    assert [e.seq for e in evs] == list(range(1, len(evs) + 1))
    loading = next(e for e in evs if e.type == E.LLM_LOADING_MODEL)
    assert loading.message == "Loading model: fake:"
    assert loading.payload["model_source"] == "environment LLMFLOW_MODEL"
    ws = Path(runtime.view(st.run_id)["workspace"])
    assert (ws / "PLAN.md").read_text().startswith("fake answer to: Plan: a service")


def test_a_non_zero_shell_exit_fails_the_step_and_the_run(runtime):
    flow = parse_flow_text("name: s\nsteps:\n  - id: test\n    shell: 'echo boom >&2; exit 3'\n")
    st = asyncio.run(runtime.run(flow))
    assert str(st.status) == "FAILED"
    assert "exited with 3" in st.error and "boom" in st.error
    assert E.RUN_FAILED in types(runtime, st.run_id)


def test_check_false_lets_a_non_zero_exit_pass(runtime):
    flow = parse_flow_text("name: s\nsteps:\n  - id: test\n    shell: {command: 'exit 3', check: false}\n")
    st = asyncio.run(runtime.run(flow))
    assert str(st.status) == "COMPLETED"
    assert st.nodes["test"].output["exit_code"] == 3


@pytest.mark.parametrize("path", ["/etc/passwd", "../outside.txt", "a/../../outside.txt"])
def test_write_file_cannot_escape_the_workspace(runtime, path):
    flow = parse_flow_text(f"name: w\nsteps:\n  - id: w\n    write_file: {{path: '{path}', content: x}}\n")
    st = asyncio.run(runtime.run(flow))
    assert str(st.status) == "FAILED"
    assert "workspace" in st.error or "absolute" in st.error


def test_a_symlink_leading_outside_is_rejected(runtime, tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "link").symlink_to(tmp_path)
    flow = parse_flow_text("name: w\nsteps:\n  - id: w\n    write_file: {path: link/x.txt, content: x}\n")
    st = asyncio.run(runtime.run(flow, options=RunRequest(workspace=str(ws))))
    assert str(st.status) == "FAILED"
    assert "escapes the workspace" in st.error
    assert not (tmp_path / "x.txt").exists()


def test_file_blocks_are_split_into_real_files(runtime):
    answer = "Here you go\n=== FILE: pom.xml ===\n<project/>\n=== END FILE ===\n=== FILE: src/App.java ===\n```java\nclass App {}\n```\n=== END FILE ===\n"
    flow = parse_flow_text(
        "name: f\ninputs: {a: string}\nsteps:\n  - id: w\n    write_file: {split_files: true, content: '{{ inputs.a }}'}\n"
    )
    st = asyncio.run(runtime.run(flow, {"a": answer}))
    ws = Path(runtime.view(st.run_id)["workspace"])
    assert (ws / "pom.xml").read_text() == "<project/>\n"
    assert (ws / "src/App.java").read_text() == "class App {}\n"
    assert sorted(a["path"] for a in runtime.view(st.run_id)["artifacts"]) == ["pom.xml", "src/App.java"]


def test_missing_and_mistyped_inputs_are_rejected_before_anything_runs(runtime):
    flow = parse_flow_text(
        "name: i\ninputs: {n: integer, q: string}\nsteps:\n  - id: a\n    llm: '{{ inputs.q }}'\n"
    )
    with pytest.raises(FlowValidationError) as e:
        runtime.create_run(flow, {"n": "three", "qq": "x"})
    msgs = [d.message for d in e.value.diagnostics]
    assert "input 'n' must be an integer, got str 'three'" in msgs
    assert "flow 'i' has no input 'qq'" in msgs
    assert "missing required input 'q' (string)" in msgs
    assert runtime.store.list_runs() == []


def test_retries_then_succeeds_with_the_fake_models_injected_429(runtime):
    flow = parse_flow_text("""
name: r
steps:
  - id: a
    llm: {prompt: hi}
    retry: {attempts: 3, backoff: 0.01, jitter: 0}
""")
    flaky = RunRequest(models={"a": "fake:flaky?fail=429&fail_times=2&retry_after=0.01"})
    st = asyncio.run(runtime.run(flow, options=flaky))
    assert str(st.status) == "COMPLETED"
    t = types(runtime, st.run_id)
    assert t.count(E.STEP_RETRYING) == 2 and t.count(E.ATTEMPT_STARTED) == 3
    atts = runtime.view(st.run_id)["steps"][0]["attempts"]
    assert [a["status"] for a in atts] == ["FAILED", "FAILED", "COMPLETED"]


async def until_event(runtime, run_id, type_):
    """The first durable event of ``type_`` in the run, waited for on the runtime's observer
    feed (register before the run executes: a runner copies the observers when it starts)."""
    loop = asyncio.get_running_loop()
    seen = asyncio.Event()

    def watch(e):
        if e.run_id == run_id and e.type == type_:
            loop.call_soon_threadsafe(seen.set)

    runtime.observers.append(watch)
    return seen, watch


def test_cancel_stops_a_running_shell_step_and_its_process(runtime):
    # how fast the cancel lands is a figure for bench/, not a test assertion
    flow = parse_flow_text(
        "name: c\nsteps:\n  - id: s\n    shell: 'sleep 60'\n  - id: after\n    shell: 'echo never'\n"
    )

    async def go():
        rec = runtime.create_run(flow)
        executing, watch = await until_event(runtime, rec.id, E.SHELL_EXECUTING)
        task = asyncio.create_task(runtime.execute(rec.id))
        try:
            await asyncio.wait_for(executing.wait(), 60)
        finally:
            runtime.observers.remove(watch)
        pid = next(e for e in runtime.store.events(rec.id) if e.type == E.SHELL_EXECUTING).payload["pid"]
        runtime.control(rec.id, "cancel")
        return await task, pid

    st, pid = asyncio.run(go())
    assert str(st.status) == "CANCELED"
    import os

    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert "after" not in {e.step_id for e in runtime.store.events(st.run_id) if e.type == E.STEP_STARTED}


def test_pause_then_resume_in_process(runtime):
    flow = parse_flow_text("name: p\nsteps:\n  - id: a\n    llm: a\n  - id: b\n    llm: b\n")

    async def go():
        import llmflow

        h = await llmflow.start(flow, runtime=runtime, models={"a": "fake:?latency=0.2"})
        seen = set()
        async for e in h.events():
            seen.add((e.type, e.step_id))
            if e.type == E.STEP_STARTED and e.step_id == "a":
                h.pause()
            # a finishes while the run is paused: whatever it would start next is decided then
            if (E.RUN_PAUSED, None) in seen and (E.STEP_COMPLETED, "a") in seen:
                break
        rec = runtime.get(h.id)
        paused = rec.status
        started_b = any(e.type == E.STEP_STARTED and e.step_id == "b" for e in runtime.store.events(h.id))
        h.resume()
        run = await h.wait()
        return paused, started_b, run

    paused, started_b, run = asyncio.run(go())
    assert paused == "PAUSED" and not started_b
    assert run.status == "COMPLETED"


def test_human_step_waits_for_an_answer_and_keeps_an_early_one(runtime):
    flow = parse_flow_text(
        "name: h\nsteps:\n  - id: ok\n    human: {prompt: 'Ship it?', input: confirm}\n  - id: say\n    human: 'Your name?'\n"
    )

    async def go():
        import llmflow

        h = await llmflow.start(flow, runtime=runtime)
        h.answer("")  # early: before any question (confirm: Enter = yes)
        got = []
        async for e in h.events():
            if e.type == E.HUMAN_INPUT_REQUESTED and e.step_id == "say":
                h.answer("Ada")
            got.append(e.type)
        return await h.wait()

    run = asyncio.run(go())
    assert run.status == "COMPLETED"
    assert run.step("ok").output is True
    assert run.step("say").output == "Ada"


def test_rerun_in_place_keeps_both_attempts_and_marks_dependents_stale(runtime):
    flow = parse_flow_text(
        "name: r\nsteps:\n  - id: a\n    llm: a\n  - id: b\n    llm: 'b {{ steps.a.output }}'\n"
    )
    st = asyncio.run(runtime.run(flow))
    rid = st.run_id
    st2 = asyncio.run(runtime.rerun(rid, "a"))
    assert str(st2.status) == "COMPLETED"
    v = runtime.view(rid)
    a, b = v["steps"]
    assert [x["attempt"] for x in a["attempts"]] == [1, 2]
    assert b["status"] == "STALE"
    st3 = asyncio.run(runtime.rerun(rid, "a", downstream=True))
    v = runtime.view(rid)
    assert [x["attempt"] for x in v["steps"][0]["attempts"]] == [1, 2, 3]
    assert v["steps"][1]["status"] == "COMPLETED" and len(v["steps"][1]["attempts"]) == 2
    assert str(st3.status) == "COMPLETED"


def test_rerun_of_one_broadcast_agent(runtime):
    flow = parse_flow_text(
        "name: b\nagents: {x: {}, y: {}}\nsteps:\n  - id: v\n    broadcast: {agents: [x, y], aggregate: all, prompt: q}\n"
    )
    st = asyncio.run(runtime.run(flow))
    asyncio.run(runtime.rerun(st.run_id, "v", unit="y"))
    atts = runtime.view(st.run_id)["steps"][0]["attempts"]
    assert sorted((a["unit"], a["attempt"]) for a in atts) == [("x", 1), ("y", 1), ("y", 2)]


def test_fork_from_a_step_reuses_upstream_outputs(runtime):
    flow = parse_flow_text(
        "name: f\nsteps:\n  - id: a\n    llm: a\n  - id: b\n    llm: 'b {{ steps.a.output }}'\n"
    )
    st = asyncio.run(runtime.run(flow))
    new = runtime.fork(st.run_id, "b")
    st2 = asyncio.run(runtime.execute(new.id))
    assert str(st2.status) == "COMPLETED"
    started = [e for e in runtime.store.events(new.id) if e.type == E.ATTEMPT_STARTED]
    assert [e.step_id for e in started] == ["b"]
    assert st2.nodes["a"].output == st.nodes["a"].output


def test_a_sub_flow_runs_as_a_linked_child_run(runtime, tmp_path):
    child = tmp_path / "child.yaml"
    child.write_text("name: child\ninputs: {x: string}\nsteps:\n  - id: c\n    llm: 'child {{ inputs.x }}'\n")
    parent = tmp_path / "parent.yaml"
    parent.write_text("name: parent\nsteps:\n  - id: sub\n    flow: {flow: child.yaml, inputs: {x: hello}}\n")
    st = asyncio.run(runtime.run(str(parent)))
    assert str(st.status) == "COMPLETED"
    kids = runtime.store.list_runs(parent_run_id=st.run_id)
    assert len(kids) == 1 and kids[0].status == "COMPLETED"
    assert st.nodes["sub"].output["result"].startswith("fake answer to: child hello")


def test_resume_is_refused_when_the_flow_changed(runtime, tmp_path):
    f = tmp_path / "f.yaml"
    f.write_text("name: f\nsteps:\n  - id: a\n    human: 'q?'\n")
    rec = runtime.create_run(str(f))

    async def start_and_stop():
        asked, watch = await until_event(runtime, rec.id, E.HUMAN_INPUT_REQUESTED)
        task = asyncio.create_task(runtime.execute(rec.id))
        try:
            await asyncio.wait_for(asked.wait(), 60)
        finally:
            runtime.observers.remove(watch)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass

    asyncio.run(start_and_stop())
    f.write_text("name: f\nsteps:\n  - id: a\n    human: 'another question?'\n")
    with pytest.raises(ResumeRefusedError) as e:
        asyncio.run(runtime.execute(rec.id))
    assert "steps[0].prompt" in str(e.value)


def test_model_precedence_run_option_over_env_over_step(runtime):
    flow = parse_flow_text(
        "name: m\nsteps:\n  - id: a\n    llm: {prompt: x, model: 'fake:step'}\n  - id: b\n    llm: {prompt: y, model: 'fake:step'}\n"
    )
    st = asyncio.run(runtime.run(flow, options=RunRequest(models={"a": "fake:option"})))
    gen = {e.step_id: e.payload for e in runtime.store.events(st.run_id) if e.type == E.LLM_GENERATING}
    assert gen["a"]["model"] == "fake:option" and gen["a"]["model_source"].startswith("run option")
    assert gen["b"]["model"] == "fake:" and gen["b"]["model_source"] == "environment LLMFLOW_MODEL"


def test_structured_output_is_validated_against_its_schema(runtime):
    flow = parse_flow_text("""
name: s
steps:
  - id: a
    llm: {prompt: classify}
    output:
      type: object
      properties: {label: {type: string, enum: [news, opinion]}, score: {type: number}}
      required: [label, score]
""")
    st = asyncio.run(runtime.run(flow))
    assert str(st.status) == "COMPLETED"
    out = st.nodes["a"].output
    assert out["label"] in ("news", "opinion") and isinstance(out["score"], int | float)


def test_run_timeout_fails_the_run_with_a_reason(runtime):
    flow = parse_flow_text("name: t\noptions: {timeout: 0.3}\nsteps:\n  - id: s\n    shell: 'sleep 30'\n")
    st = asyncio.run(runtime.run(flow))
    assert str(st.status) == "FAILED"
    assert "timed out" in st.error


def test_cancelling_a_finished_run_is_a_clear_error(runtime):
    flow = parse_flow_text("name: x\nsteps:\n  - id: a\n    llm: a\n")
    st = asyncio.run(runtime.run(flow))
    with pytest.raises(RunStateError, match="nothing to cancel"):
        runtime.control(st.run_id, "cancel")


def test_cache_true_reuses_the_output_for_the_same_inputs(runtime):
    flow = parse_flow_text(
        "name: c\ninputs: {q: string}\nsteps:\n  - id: a\n    llm: '{{ inputs.q }}'\n    cache: true\n"
    )
    first = asyncio.run(runtime.run(flow, {"q": "one"}))
    second = asyncio.run(runtime.run(flow, {"q": "one"}))
    third = asyncio.run(runtime.run(flow, {"q": "two"}))
    assert second.nodes["a"].output == first.nodes["a"].output
    assert E.STEP_CACHE_HIT in types(runtime, second.run_id)
    assert E.LLM_GENERATING not in types(runtime, second.run_id)
    assert E.STEP_CACHE_HIT not in types(runtime, third.run_id)


def test_human_in_loop_false_answers_with_defaults(runtime):
    flow = parse_flow_text(
        "name: h\noptions: {human_in_loop: false}\nsteps:\n  - id: ok\n    human: {prompt: 'Ship?', input: confirm}\n  - id: pick\n    human: {prompt: 'Colour?', default: blue}\n"
    )
    st = asyncio.run(runtime.run(flow))
    assert str(st.status) == "COMPLETED"
    assert st.nodes["ok"].output is True and st.nodes["pick"].output == "blue"
