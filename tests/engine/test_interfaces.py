"""What other parts build on: runtime observers, StepContext.prior_events(), the tool-call
event types, typed payloads round-tripping the wire format, one shared runtime per process,
composed flows cached by their files."""

from __future__ import annotations

import asyncio
import logging

import pytest

import llmflow
from llmflow.engine.events import Event, NewEvent
from llmflow.engine.events import EventType as E
from llmflow.engine.payloads import MISSING, REGISTRY, AttemptStarted, Generic, ToolCallCompleted, decode
from llmflow.evals.api import show as show_evaluation
from llmflow.model.loader import parse_flow_text
from llmflow.runtime import build_runtime, shared_runtime

ENV = {"LLMFLOW_MODEL": "fake:", "LLMFLOW_BLOCK_REAL_MODELS": "1"}


def test_observers_get_every_event_of_every_path_once_in_order_after_it_is_durable(tmp_path):
    seen: list[Event] = []
    durable: list[bool] = []

    def observe(e: Event) -> None:
        seen.append(e)
        durable.append(any(x.seq == e.seq for x in rt.store.events(e.run_id, e.seq - 1, 1)))

    def broken(e: Event) -> None:
        raise RuntimeError("an observer bug")

    rt = build_runtime(env=ENV, home=tmp_path, observers=[observe, broken])
    try:
        flow = parse_flow_text("name: p\nsteps:\n  - id: a\n    llm: a\n  - id: b\n    llm: b\n")
        st = asyncio.run(rt.run(flow))  # created + executed
        assert str(st.status) == "COMPLETED"
        asyncio.run(rt.rerun(st.run_id, "b"))  # re-run in place
        forked = rt.fork(st.run_id, "b")  # forked
        queued = rt.create_run(flow)
        rt.control(queued.id, "cancel")  # controlled directly (nobody executes it)
        for rid in (st.run_id, forked.id, queued.id):
            mine = [e.seq for e in seen if e.run_id == rid]
            assert mine == [e.seq for e in rt.store.events(rid)]  # every event, once, in order
        assert all(durable)
    finally:
        rt.close()


def test_an_observer_that_raises_is_logged_and_the_run_goes_on(tmp_path, caplog):
    def broken(e: Event) -> None:
        raise RuntimeError("an observer bug")

    rt = build_runtime(env=ENV, home=tmp_path, observers=[broken])
    try:
        with caplog.at_level(logging.ERROR):
            st = asyncio.run(rt.run(parse_flow_text("name: p\nsteps:\n  - id: a\n    llm: a\n")))
        assert str(st.status) == "COMPLETED"
        assert "observer failed" in caplog.text
    finally:
        rt.close()


def test_prior_events_replay_what_an_interrupted_attempt_recorded(tmp_path):
    calls: list[list[Event]] = []
    gate = asyncio.Event

    async def tool_loop(ctx) -> str:  # noqa: ANN001
        prior = ctx.prior_events()
        calls.append(prior)
        if ctx.attempt == 1:
            ctx.event(E.TOOL_CALL_STARTED, "search", call_id="c1", name="search", arguments={"q": "x"})
            ctx.event(
                E.TOOL_CALL_COMPLETED,
                "search done",
                call_id="c1",
                name="search",
                arguments={"q": "x"},
                result="found",
                duration=0.1,
            )
            await asyncio.sleep(3600)  # the process "dies" here
        return "done"

    flow = parse_flow_text("name: t\nsteps:\n  - id: agent\n    python: {function: loop}\n")
    rt = build_runtime(env=ENV, home=tmp_path, functions={"loop": tool_loop})

    async def first() -> str:
        rec = rt.create_run(flow)
        task = asyncio.create_task(rt.execute(rec.id))
        while not any(e.type == E.TOOL_CALL_COMPLETED for e in rt.store.events(rec.id)):
            await asyncio.sleep(0.01)
        task.cancel()  # like a killed process: the attempt stays started in the log
        await asyncio.gather(task, return_exceptions=True)
        return rec.id

    try:
        rid = asyncio.run(first())
        other = build_runtime(env=ENV, home=tmp_path, functions={"loop": tool_loop})
        try:
            st = asyncio.run(other.execute(rid))
        finally:
            other.close()
        assert str(st.status) == "COMPLETED"
        assert calls[0] == []
        replayed = [e for e in calls[1] if e.type.startswith("TOOL_CALL_")]
        assert [(e.type, e.attempt, e.payload.get("call_id")) for e in replayed] == [
            (E.TOOL_CALL_STARTED, 1, "c1"),
            (E.TOOL_CALL_COMPLETED, 1, "c1"),
        ]
        assert replayed[1].payload["result"] == "found"
        assert {e.attempt for e in calls[1]} == {1}  # only the interrupted attempt's events
    finally:
        rt.close()
    del gate


def test_tool_call_events_are_informational_and_typed():
    from llmflow.engine.events import INFORMATIONAL

    for t in (E.TOOL_CALL_STARTED, E.TOOL_CALL_COMPLETED, E.TOOL_CALL_FAILED):
        assert t in INFORMATIONAL and t in REGISTRY
    p = decode(
        E.TOOL_CALL_COMPLETED,
        {"call_id": "c1", "name": "search", "arguments": {"q": 1}, "result": [1], "duration": 0.5},
    )
    assert isinstance(p, ToolCallCompleted) and p.result == [1] and p.duration == 0.5


@pytest.mark.parametrize("cls", sorted(REGISTRY.values(), key=lambda c: c.TYPE), ids=lambda c: c.TYPE)
def test_every_payload_is_frozen_slotted_and_round_trips_its_wire_form(cls):
    assert hasattr(cls, "__slots__") and not hasattr(cls(), "__dict__")
    wire = {f: f"v-{f}" for f in cls.FIELDS[:2]} | {"someone_elses_key": 1}
    p = cls.from_dict(wire)
    assert p.to_dict() == wire  # nothing lost, nothing added
    with pytest.raises(AttributeError):
        p.extra = {}  # type: ignore[misc]
    assert cls().to_dict() == {}


def test_typed_payloads_read_like_the_dicts_they_replace():
    p = AttemptStarted(kind="llm", vars={"item": 1})
    assert (
        p.get("kind") == "llm"
        and p["vars"] == {"item": 1}
        and "timeout_at" not in p
        and p.timeout_at is MISSING
    )
    assert dict(p) == {"kind": "llm", "vars": {"item": 1}}
    assert decode("PLUGIN_THING", {"a": 1}) == Generic({"a": 1})


def test_stored_events_carry_the_wire_dict_and_the_schema_version(tmp_path):
    rt = build_runtime(env=ENV, home=tmp_path)
    try:
        rec = rt.create_run(parse_flow_text("name: p\nsteps:\n  - id: a\n    llm: a\n"))
        rt.record(rec.id, [NewEvent(E.STEP_SKIPPED, "x", "a", payload={"reason": "r"})])
        evs = rt.store.events(rec.id)
        assert all(type(e.payload) is dict and e.schema_version == 1 for e in evs)
        assert evs[0].to_dict()["payload"] == {"flow": "p", "version": "1", "inputs": {}}
    finally:
        rt.close()


def test_the_python_api_shares_one_runtime_and_store_per_process(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMFLOW_HOME", str(tmp_path))
    monkeypatch.setenv("LLMFLOW_MODEL", "fake:")
    monkeypatch.setenv("LLMFLOW_BLOCK_REAL_MODELS", "1")
    flow = tmp_path / "flow.yaml"
    flow.write_text("name: f\nsteps:\n  - id: a\n    llm: hi\n")
    first = llmflow.run_sync(str(flow))
    rt = shared_runtime()
    store = rt.store
    for _ in range(3):
        assert llmflow.run_sync(str(flow)).ok
    runner = llmflow.Runner(str(flow))
    assert runner.run_sync()["success"]
    ev = llmflow.evaluate(str(flow), records=[{"x": 1}], metrics=["contains=fake"])
    assert ev.status == "COMPLETED" and show_evaluation(ev.id)["summary"]
    assert shared_runtime() is rt and rt.store is store and not rt.closed  # opened once
    assert rt.flows.misses == 1 and rt.flows.hits >= 4  # composed once
    assert first.ok


def test_a_changed_flow_file_is_composed_again(tmp_path):
    rt = build_runtime(env=ENV, home=tmp_path)
    try:
        flow = tmp_path / "flow.yaml"
        flow.write_text("name: f\nsteps:\n  - id: a\n    llm: one\n")
        a = rt.load(str(flow))
        assert rt.load(str(flow)) is a
        flow.write_text("name: f\nsteps:\n  - id: a\n    llm: two, now longer\n")
        b = rt.load(str(flow))
        assert b is not a and b.flow.steps[0].prompt == "two, now longer"
        assert rt.load(str(flow), ["name=g"]).flow.name == "g"  # overrides are part of the key
    finally:
        rt.close()
