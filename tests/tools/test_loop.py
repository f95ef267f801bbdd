"""The tool loop on the fake model: parallel calls, failures, retries, timeouts, confirmation,
structured output, max_turns; every call recorded as events."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import llmflow
from llmflow.engine.events import EventType as E
from llmflow.errors import FlowValidationError
from llmflow.model.spec import Flow
from llmflow.runtime import build_runtime


def runtime(tmp_path: Path, answers: list, **fns):
    return build_runtime(home=tmp_path, fake_scripts={"agent": {"answers": answers}}, functions=fns)


def flow(tools: list, **step) -> Flow:
    return Flow.model_validate(
        {
            "name": "t",
            "model": "fake:agent",
            "steps": [{"id": "ask", "kind": "llm", "prompt": "go", "tools": tools, **step}],
        }
    )


def calls(*specs) -> dict:
    return {"tool_calls": [{"name": n, "arguments": a} for n, a in specs]}


def tool_events(rt, run_id):
    return [e for e in rt.store.events(run_id) if e.type.startswith("TOOL_CALL")]


def test_parallel_calls_run_at_once_and_a_failing_tool_goes_back_to_the_model(tmp_path):
    started: list[str] = []
    both = asyncio.Event()

    async def meet(name: str) -> str:
        """Wait until both calls of the round have started."""
        started.append(name)
        if len(started) == 2:
            both.set()
        await asyncio.wait_for(both.wait(), timeout=10)  # sequential calls would time out here
        return f"met {name}"

    def broken(x: int) -> int:
        """Always fails."""
        raise RuntimeError("disk on fire")

    rt = runtime(
        tmp_path,
        [
            calls(("meet", {"name": "a"}), ("meet", {"name": "b"}), ("broken", {"x": 1})),
            "done: {tool_results}",
        ],
        meet=meet,
        broken=broken,
    )
    st = asyncio.run(rt.run(flow(["meet", "broken"])))
    assert st.status == "COMPLETED", st.error
    out = st.outputs["result"]
    assert "met a" in out and "met b" in out and "Error: RuntimeError: disk on fire" in out
    evs = tool_events(rt, st.run_id)
    assert [e.type for e in evs[:3]] == [E.TOOL_CALL_STARTED] * 3  # recorded before any runs
    done = {e.payload["call_id"]: e for e in evs if e.type != E.TOOL_CALL_STARTED}
    assert done["call_0_0"].type == E.TOOL_CALL_COMPLETED and done["call_0_0"].payload["result"] == "met a"
    failed = done["call_0_2"]
    assert (
        failed.type == E.TOOL_CALL_FAILED
        and "disk on fire" in failed.payload["error"]
        and failed.payload["retrying"] is False
    )
    assert {"call_id", "name", "arguments", "duration"} <= set(failed.payload)
    view = rt.view(st.run_id)["steps"][0]["tool_calls"]
    assert [(c["name"], c["status"]) for c in view] == [
        ("meet", "COMPLETED"),
        ("meet", "COMPLETED"),
        ("broken", "FAILED"),
    ]


def test_a_flaky_tool_is_retried_and_a_slow_one_times_out(tmp_path):
    tries = {"n": 0}

    def flaky() -> str:
        """Fails twice."""
        tries["n"] += 1
        if tries["n"] < 3:
            raise ConnectionError("try again")
        return "ok"

    async def sleepy() -> str:
        """Too slow."""
        await asyncio.sleep(30)
        return "late"

    rt = runtime(
        tmp_path, [calls(("flaky", {}), ("sleepy", {})), "{tool_results}"], flaky=flaky, sleepy=sleepy
    )
    f = flow([{"tool": "flaky", "retry": {"attempts": 3, "backoff": 0}}, {"tool": "sleepy", "timeout": 0.2}])
    st = asyncio.run(rt.run(f))
    assert st.status == "COMPLETED", st.error
    assert tries["n"] == 3
    assert st.outputs["result"].splitlines() == ["ok", "Error: timed out after 0.2s"]
    flaky_events = [
        e
        for e in tool_events(rt, st.run_id)
        if e.payload["name"] == "flaky" and e.type != E.TOOL_CALL_STARTED
    ]
    assert [(e.type, e.payload.get("retrying")) for e in flaky_events] == [
        (E.TOOL_CALL_FAILED, True),
        (E.TOOL_CALL_FAILED, True),
        (E.TOOL_CALL_COMPLETED, None),
    ]


def test_structured_output_is_validated_after_the_tools(tmp_path):
    schema = {"type": "object", "properties": {"total": {"type": "integer"}}, "required": ["total"]}

    def add(a: int, b: int) -> int:
        """Add."""
        return a + b

    rt = runtime(tmp_path, [calls(("add", {"a": 2, "b": 3})), "not json", '{"total": 5}'], add=add)
    st = asyncio.run(rt.run(flow(["add"], output=schema)))
    assert st.status == "COMPLETED", st.error
    assert st.outputs["result"] == {"total": 5}


def test_max_turns_stops_a_model_that_keeps_calling_tools(tmp_path):
    def ping() -> str:
        """Ping."""
        return "pong"

    rt = runtime(tmp_path, [calls(("ping", {}))], ping=ping)
    st = asyncio.run(rt.run(flow(["ping"], max_turns=2)))
    assert st.status == "FAILED"
    assert "after 2 round(s)" in st.error and "max_turns" in st.error
    assert sum(1 for e in tool_events(rt, st.run_id) if e.type == E.TOOL_CALL_COMPLETED) == 2


def test_a_tool_the_model_invents_is_an_error_result_not_a_crash(tmp_path):
    rt = runtime(tmp_path, [calls(("nope", {})), "{tool_results}"])
    st = asyncio.run(rt.run(flow(["list_files"])))
    assert st.status == "COMPLETED"
    assert st.outputs["result"] == "Error: unknown tool 'nope'; available: list_files"


def test_built_in_file_tools_stay_inside_the_workspace(tmp_path):
    ws = tmp_path / "ws"
    rt = runtime(
        tmp_path,
        [
            calls(("write_file", {"path": "notes/a.txt", "content": "hi"})),
            calls(
                ("read_file", {"path": "notes/a.txt"}),
                ("read_file", {"path": "../../etc/passwd"}),
                ("list_files", {}),
            ),
            "{tool_results}",
        ],
    )
    st = asyncio.run(
        rt.run(
            flow(["read_file", "write_file", "list_files"]),
            options=llmflow.runtime.RunRequest(workspace=str(ws)),
        )
    )
    lines = st.outputs["result"].splitlines()
    assert lines[0] == "hi"
    assert lines[1].startswith("Error:") and "escapes the workspace" in lines[1]
    assert lines[2] == '["notes/a.txt"]'
    assert (ws / "notes" / "a.txt").read_text() == "hi"
    assert any(
        e.type == E.ARTIFACT_CREATED and e.payload.get("tool_call_id") == "call_0_0"
        for e in rt.store.events(st.run_id)
    )


def test_shell_tool_refuses_where_shell_steps_are_not_allowed(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMFLOW_DISABLE_SHELL", "1")
    rt = runtime(tmp_path, [calls(("shell", {"command": "echo hi"})), "{tool_results}"])
    st = asyncio.run(rt.run(flow(["shell"])))
    assert st.status == "FAILED" and "runs code on this machine" in st.error
    failed = [e.payload for e in rt.store.events(st.run_id) if e.type == E.ATTEMPT_FAILED]
    assert [(p["kind"], p["retryable"]) for p in failed] == [("shell_disabled", False)]  # ShellDisabledError


def test_the_call_context_gives_a_tool_its_call_id(tmp_path):
    rt = runtime(tmp_path, [calls(("whoami", {})), "{tool_results}"])
    st = asyncio.run(rt.run(flow(["tests.tools.helpers:whoami"])))
    assert st.outputs["result"] == "call_0_0"


@pytest.mark.parametrize("answer, expect_run", [("yes", True), ("n", False)])
def test_confirm_asks_a_human_and_records_the_answer(tmp_path, answer, expect_run):
    ran: list[str] = []

    def refund(order: int) -> str:
        """Refund an order."""
        ran.append(str(order))
        return f"refunded {order}"

    rt = runtime(tmp_path, [calls(("refund", {"order": 7})), "{tool_results}"], refund=refund)

    async def go():
        rec = rt.create_run(flow([{"tool": "refund", "confirm": True}]))
        seen = []

        def sub(e):
            if e.type == E.HUMAN_INPUT_REQUESTED:
                seen.append(e.payload)
                rt.control(rec.id, "answer", {"request_id": e.payload["request_id"], "answer": answer})

        st = await rt.execute(rec.id, subscribers=[sub])
        return st, seen

    st, seen = asyncio.run(go())
    assert st.status == "COMPLETED"
    assert seen and seen[0]["input"] == "confirm" and 'refund({"order": 7})' in seen[0]["prompt"]
    assert ran == (["7"] if expect_run else [])
    evs = rt.store.events(st.run_id)
    received = [e for e in evs if e.type == E.HUMAN_INPUT_RECEIVED]
    assert received and received[0].payload["answer"] == answer
    last = [e for e in evs if e.type in (E.TOOL_CALL_COMPLETED, E.TOOL_CALL_FAILED)][-1]
    assert last.payload["confirmed"] is expect_run
    assert ("refunded 7" in st.outputs["result"]) is expect_run


def test_without_a_human_a_guarded_tool_is_declined(tmp_path):
    ran = []
    rt = runtime(
        tmp_path, [calls(("refund", {"order": 1})), "{tool_results}"], refund=lambda order: ran.append(order)
    )
    f = Flow.model_validate(
        {**flow([{"tool": "refund", "confirm": True}]).to_dict(), "options": {"human_in_loop": False}}
    )
    st = asyncio.run(rt.run(f))
    assert st.status == "COMPLETED" and ran == []
    assert "declined" in st.outputs["result"]


def test_a_registered_tool_works_from_python(tmp_path):
    @llmflow.tool
    def shout(text: str) -> str:
        """Upper-case a text."""
        return text.upper()

    from llmflow.model.registry import registry

    try:
        rt = runtime(tmp_path, [calls(("shout", {"text": "hey"})), "{tool_results}"])
        st = asyncio.run(rt.run(flow(["shout"])))
        assert st.outputs["result"] == "HEY"
    finally:
        registry.tools.pop("shout", None)


def test_agents_carry_tools_into_broadcast_steps(tmp_path):
    def stamp(who: str) -> str:
        """Stamp."""
        return f"stamped {who}"

    rt = runtime(tmp_path, [calls(("stamp", {"who": "x"})), "{tool_results}"], stamp=stamp)
    f = Flow.model_validate(
        {
            "name": "b",
            "model": "fake:agent",
            "agents": {"a": {"tools": ["stamp"]}, "b": {"tools": ["stamp"]}},
            "steps": [{"id": "all", "kind": "broadcast", "agents": ["a", "b"], "prompt": "go"}],
        }
    )
    st = asyncio.run(rt.run(f))
    assert st.status == "COMPLETED"
    assert sum(1 for e in tool_events(rt, st.run_id) if e.type == E.TOOL_CALL_COMPLETED) == 2


def test_a_schema_that_cannot_be_built_is_refused_before_the_run(tmp_path):
    rt = runtime(tmp_path, ["x"])
    with pytest.raises(FlowValidationError) as exc:
        rt.create_run(flow(["tests.tools.helpers:untyped_star"]))
    assert exc.value.diagnostics[0].code == "tool-schema"
    assert rt.store.list_runs() == []  # nothing half-written


def test_tool_calls_in_the_fake_are_the_same_after_a_restart(tmp_path):
    from llmflow.providers.base import ChatMessage, ModelRequest, ToolDef
    from llmflow.providers.fake import FakeProvider

    script = {"answers": [calls(("a", {})), "final"]}
    tools = (ToolDef("a", "", {"type": "object"}),)

    async def first_answer(p, msgs):
        out = [x async for x in p.stream(ModelRequest("s", msgs, tools=tools))]
        return out[-1]

    msgs = [ChatMessage("user", "go")]
    p1 = FakeProvider({"s": script})
    assert asyncio.run(first_answer(p1, msgs)).tool_calls[0].id == "call_0_0"
    later = [
        *msgs,
        ChatMessage("assistant", "", tool_calls=asyncio.run(first_answer(p1, msgs)).tool_calls),
        ChatMessage("tool", "r", tool_call_id="call_0_0", name="a"),
    ]
    p2 = FakeProvider({"s": script})  # a new process: no call counter
    assert asyncio.run(first_answer(p2, later)).text == "final"


def test_conductor_participants_use_their_tools_in_separate_loops(tmp_path):
    def stamp(who: str) -> str:
        """Stamp."""
        return f"stamped {who}"

    rt = runtime(tmp_path, [calls(("stamp", {"who": "x"})), "{tool_results}"], stamp=stamp)
    f = Flow.model_validate(
        {
            "name": "c",
            "model": "fake:agent",
            "agents": {"a": {"tools": ["stamp"]}, "b": {"tools": ["stamp"]}},
            "steps": [{"id": "chat", "kind": "conductor", "participants": ["a", "b"], "prompt": "go"}],
        }
    )
    st = asyncio.run(rt.run(f))
    assert st.status == "COMPLETED", st.error
    assert [t["output"] for t in st.nodes["chat"].output["transcript"]] == ["stamped x", "stamped x"]
    done = [e.payload["loop"] for e in tool_events(rt, st.run_id) if e.type == E.TOOL_CALL_COMPLETED]
    assert done == ["turn1", "turn2"]
