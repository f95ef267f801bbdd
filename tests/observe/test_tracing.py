"""Runs as OpenTelemetry traces, checked with the SDK's in-memory exporter: span names and
nesting, GenAI / OpenInference attributes, content only when asked for, never a secret; a
run resumed by another runtime (no memory of the first) continues the same trace; a child
run joins its parent's trace; an incoming traceparent is continued. Real SQLite stores."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from llmflow.model.loader import parse_flow_text
from llmflow.observe.context import traceparent_of
from llmflow.observe.ids import parse_traceparent, run_trace_id, span_id
from llmflow.observe.otel_setup import tracer_provider
from llmflow.observe.tracing import TraceObserver
from llmflow.runtime import RunRequest, build_runtime

SECRET = "sk-test-5up3r-s3cr3t-value"

PIPELINE = """
name: pipe
inputs: {q: string}
steps:
  - id: plan
    llm: "Plan: {{ inputs.q }}"
  - id: left
    needs: [plan]
    llm: "Left of {{ steps.plan.output }}"
  - id: right
    needs: [plan]
    llm: "Right of {{ steps.plan.output }}"
  - id: check
    needs: [left, right]
    shell: "echo checked key=$DEMO_API_KEY"
  - id: report
    needs: [check]
    llm: "Report: {{ steps.check.output }}"
"""


@pytest.fixture(autouse=True)
def _secret_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEMO_API_KEY", SECRET)  # the shell step prints it; no span may show it


def make_runtime(home: Path, *, capture: bool = False, **kw: Any) -> tuple[Any, InMemorySpanExporter]:
    env = {
        "LLMFLOW_MODEL": "fake:writer?latency=0.01",
        "LLMFLOW_BLOCK_REAL_MODELS": "1",
        "DEMO_API_KEY": SECRET,
        "LLMFLOW_ALLOW_SHELL": "1",
    }
    rt = build_runtime(env=env, home=home, **kw)
    exporter = InMemorySpanExporter()
    provider, ids = tracer_provider(env, exporter, batch=False)
    rt.observers.append(TraceObserver(provider, ids, store=rt.store, env=env, capture_content=capture))
    return rt, exporter


def by_name(spans: list[Any]) -> dict[str, Any]:
    return {s.name: s for s in spans}


def test_a_run_is_a_trace_of_steps_attempts_and_model_calls(tmp_path: Path) -> None:
    rt, exp = make_runtime(tmp_path)
    try:
        st = asyncio.run(rt.run(parse_flow_text(PIPELINE), {"q": "a service"}))
    finally:
        rt.close()
    assert str(st.status) == "COMPLETED", st.error
    spans = exp.get_finished_spans()
    names = by_name(spans)
    run = names["run pipe"]
    assert run.parent is None
    assert {s.context.trace_id for s in spans} == {run_trace_id(st.run_id)}
    assert run.context.span_id == span_id(st.run_id)
    for step in ("plan", "left", "right", "check", "report"):
        s = names[f"step {step}"]
        assert s.parent.span_id == run.context.span_id
        a = names[f"attempt {step}#1"]
        assert a.parent.span_id == s.context.span_id
    llm = [s for s in spans if s.attributes.get("openinference.span.kind") == "LLM"]
    assert len(llm) == 4
    plan_llm = next(s for s in llm if s.parent.span_id == names["attempt plan#1"].context.span_id)
    a = plan_llm.attributes
    assert plan_llm.name == "chat writer"
    assert (
        a["gen_ai.operation.name"] == "chat"
        and a["gen_ai.request.model"] == "writer"
        and a["gen_ai.provider.name"] == "fake"
    )
    assert a["gen_ai.usage.input_tokens"] > 0 and a["gen_ai.usage.output_tokens"] > 0
    assert a["llm.token_count.total"] == a["gen_ai.usage.input_tokens"] + a["gen_ai.usage.output_tokens"]
    shell = names["shell"]
    assert (
        shell.attributes["openinference.span.kind"] == "TOOL"
        and shell.parent.span_id == names["attempt check#1"].context.span_id
    )
    # children inside their parents, and the two parallel steps overlap in time
    for s in spans:
        if s.parent is not None:
            parent = next(p for p in spans if p.context.span_id == s.parent.span_id)
            assert parent.start_time <= s.start_time and s.end_time <= parent.end_time, (s.name, parent.name)
    left, right = names["step left"], names["step right"]
    assert left.start_time < right.end_time and right.start_time < left.end_time
    # no content by default, and never the secret
    for s in spans:
        assert not any(
            k.startswith(("input.", "output.", "llm.input_messages", "llm.output_messages"))
            for k in s.attributes
        ), s.name
        assert SECRET not in repr(dict(s.attributes))


def test_content_is_captured_only_when_enabled_and_secrets_are_masked(tmp_path: Path) -> None:
    rt, exp = make_runtime(tmp_path, capture=True)
    try:
        st = asyncio.run(rt.run(parse_flow_text(PIPELINE), {"q": "a service"}))
    finally:
        rt.close()
    assert str(st.status) == "COMPLETED", st.error
    spans = exp.get_finished_spans()
    plan = next(
        s for s in spans if s.name == "chat writer" and "Plan:" in s.attributes.get("input.value", "")
    )
    assert "a service" in plan.attributes["input.value"]
    report = next(
        s for s in spans if s.name == "chat writer" and "Report:" in s.attributes.get("input.value", "")
    )
    assert "key=***" in report.attributes["input.value"]
    assert plan.attributes["llm.input_messages.0.message.role"] == "user"
    assert plan.attributes["output.value"].startswith("fake answer")
    assert by_name(spans)["run pipe"].attributes["input.value"] == '{"q": "a service"}'
    assert "checked key=***" in by_name(spans)["shell"].attributes["output.value"]
    for s in spans:
        assert SECRET not in repr(dict(s.attributes)), s.name


ASK = """
name: ask
steps:
  - id: approve
    human: {prompt: "Ship it?", input: confirm}
  - id: after
    llm: "approved={{ steps.approve.output }}"
"""


def test_a_run_resumed_by_another_runtime_continues_its_trace(tmp_path: Path) -> None:
    """The first runtime parks the run waiting for a person; a second one, with a fresh
    observer (as a worker in another process has), answers and finishes it."""
    rt1, exp1 = make_runtime(tmp_path)
    try:
        rec = rt1.create_run(parse_flow_text(ASK), {}, RunRequest(), claim=True)
        st = asyncio.run(rt1.execute(rec.id, park_after=0.05))
        assert str(st.status) == "WAITING"
    finally:
        rt1.close()
    first = exp1.get_finished_spans()
    assert first and "run ask" not in by_name(first)  # the run span ends with the run
    rt2, exp2 = make_runtime(tmp_path)
    try:
        rid = next(iter(rt2.pending_requests(rec.id)))
        rt2.control(rec.id, "answer", {"request_id": rid, "answer": "yes"})
        st = asyncio.run(rt2.execute(rec.id))
    finally:
        rt2.close()
    assert str(st.status) == "COMPLETED", st.error
    second = exp2.get_finished_spans()
    names = by_name(second)
    assert {s.context.trace_id for s in [*first, *second]} == {run_trace_id(rec.id)}
    run = names["run ask"]
    assert names["step approve"].parent.span_id == run.context.span_id  # started in the first runtime
    # the attempt that asked was interrupted (and exported) by the first runtime; the question
    # opened there is answered here, and its span hangs from that attempt
    interrupted = by_name(first)["attempt approve#1"]
    assert interrupted.status.status_code.name == "ERROR"
    assert names["human input"].parent.span_id == interrupted.context.span_id
    assert names["human input"].start_time < names["attempt approve#2"].start_time
    assert names["attempt approve#2"].parent.span_id == names["step approve"].context.span_id
    assert run.start_time <= names["step approve"].start_time < names["step after"].start_time


def test_a_rerun_step_is_a_new_segment_under_the_first_run_span(tmp_path: Path) -> None:
    rt, exp = make_runtime(tmp_path)
    try:
        st = asyncio.run(rt.run(parse_flow_text(PIPELINE), {"q": "x"}))
        exp.clear()
        st = asyncio.run(rt.rerun(st.run_id, "right"))
    finally:
        rt.close()
    assert str(st.status) == "COMPLETED", st.error
    names = by_name(exp.get_finished_spans())
    seg = names["run pipe (re-run)"]
    assert seg.parent.span_id == span_id(st.run_id) and seg.context.span_id != span_id(st.run_id)
    assert names["step right"].parent.span_id == seg.context.span_id
    assert names["attempt right#2"].parent.span_id == names["step right"].context.span_id


PARENT = """
name: parent
steps:
  - id: sub
    flow: child.yaml
"""
CHILD = """
name: child
steps:
  - id: inner
    llm: "inner work"
"""


def test_a_child_run_joins_its_parents_trace_under_the_attempt_that_started_it(tmp_path: Path) -> None:
    (tmp_path / "child.yaml").write_text(CHILD)
    (tmp_path / "parent.yaml").write_text(PARENT)
    rt, exp = make_runtime(tmp_path)
    try:
        st = asyncio.run(rt.run(str(tmp_path / "parent.yaml")))
    finally:
        rt.close()
    assert str(st.status) == "COMPLETED", st.error
    spans = exp.get_finished_spans()
    names = by_name(spans)
    assert {s.context.trace_id for s in spans} == {run_trace_id(st.run_id)}
    assert names["run child"].parent.span_id == names["attempt sub#1"].context.span_id
    assert names["step inner"].parent.span_id == names["run child"].context.span_id


def test_an_incoming_traceparent_is_continued(tmp_path: Path) -> None:
    incoming = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    rt, exp = make_runtime(tmp_path)
    try:
        st = asyncio.run(
            rt.run(
                parse_flow_text(ASK.replace('human: {prompt: "Ship it?", input: confirm}', "llm: hi")),
                {},
                RunRequest(metadata={"traceparent": incoming}),
            )
        )
        tp = parse_traceparent(traceparent_of(rt.store, st.run_id))
    finally:
        rt.close()
    names = by_name(exp.get_finished_spans())
    assert names["run ask"].context.trace_id == 0x0AF7651916CD43DD8448EB211C80319C
    assert names["run ask"].parent.span_id == 0xB7AD6B7169203331
    assert (
        tp is not None
        and tp.trace_id == 0x0AF7651916CD43DD8448EB211C80319C
        and tp.span_id == span_id(st.run_id)
    )


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "garbage",
        "00-" + "0" * 32 + "-b7ad6b7169203331-01",
        "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        None,
        7,
    ],
)
def test_an_invalid_traceparent_is_ignored(bad: Any) -> None:
    assert parse_traceparent(bad) is None
