"""Units that start inline (issue 10): an executor that declares a call safe
(``StepExecutor.inline``; for python steps, an async function marked ``quick``) runs in the
runner's own task until it finishes or first waits, then a task continues it. The results,
the order of events, cancellation, step timeouts and context variables are those of a unit
with a task of its own."""

from __future__ import annotations

import asyncio
import contextvars
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from llmflow.engine.events import EventType as E
from llmflow.model.loader import parse_flow_text
from llmflow.runtime import Runtime, build_runtime
from llmflow.steps.python_fn import quick
from llmflow.store.memory import MemoryStore

ENV = {"LLMFLOW_MODEL": "fake:", "LLMFLOW_BLOCK_REAL_MODELS": "1"}
TWO = """
name: two
inputs: {q: string}
steps:
  - id: a
    python: {function: first, args: {text: "{{ inputs.q }}"}}
  - id: b
    python: {function: second, args: {text: "{{ steps.a.output }}"}}
"""
SEEN: contextvars.ContextVar[str] = contextvars.ContextVar("seen", default="unset")


def _rt(tmp_path: Path, store: str, **functions: Any) -> Runtime:
    return build_runtime(
        env=ENV,
        home=tmp_path,
        store=MemoryStore() if store == "memory" else None,
        functions=functions,
    )


@pytest.mark.parametrize("store", ["memory", "sqlite"])
def test_a_quick_function_runs_inline_and_the_run_is_the_same(tmp_path, store):
    tasks: list[str] = []

    @quick
    async def first(text: str, ctx: Any) -> str:
        tasks.append(asyncio.current_task().get_name())  # type: ignore[union-attr]
        ctx.event(E.DIRECTIVE, "said before returning", note=text)
        SEEN.set("set by a")  # must not leak into the runner or the next unit
        return text.upper()

    async def second(text: str) -> str:  # not marked: a task of its own
        tasks.append(asyncio.current_task().get_name())  # type: ignore[union-attr]
        return f"{text}/{SEEN.get()}"

    rt = _rt(tmp_path, store, first=first, second=second)
    try:
        st = asyncio.run(rt.run(parse_flow_text(TWO), {"q": "hi"}))
        assert str(st.status) == "COMPLETED", st.error
        assert st.nodes["b"].output == "HI/unset"
        # a ran in the runner's task, b in its unit task
        assert not tasks[0].startswith("llmflow:") and tasks[1] == "llmflow:b[]#1", tasks
        types = [e.type for e in rt.store.events(st.run_id) if e.step_id == "a"]
        assert types.index(E.DIRECTIVE) < types.index(E.ATTEMPT_COMPLETED) < types.index(E.STEP_COMPLETED)
    finally:
        rt.close()


def test_a_quick_function_that_fails_inline_fails_its_step(tmp_path):
    @quick
    async def first(text: str) -> str:
        raise ValueError(f"bad {text}")

    async def second(text: str) -> str:
        return text

    rt = _rt(tmp_path, "memory", first=first, second=second)
    try:
        st = asyncio.run(rt.run(parse_flow_text(TWO), {"q": "hi"}))
        assert str(st.status) == "FAILED"
        assert "ValueError: bad hi" in (st.nodes["a"].error or "")
        assert "b" not in {e.step_id for e in rt.store.events(st.run_id) if e.type == E.STEP_STARTED}
    finally:
        rt.close()


def test_a_quick_function_that_waits_is_continued_by_a_task_and_can_be_cancelled(tmp_path):
    seen: dict[str, Any] = {}

    @quick
    async def first(text: str) -> str:
        seen["before"] = asyncio.current_task().get_name()  # type: ignore[union-attr]
        seen["started"].set()
        try:
            await asyncio.Event().wait()  # never set
        except asyncio.CancelledError as exc:
            seen["after"] = asyncio.current_task().get_name()  # type: ignore[union-attr]
            seen["cancel"] = exc.args
            raise
        return text

    async def second(text: str) -> str:
        return text

    rt = _rt(tmp_path, "memory", first=first, second=second)

    async def go() -> Any:
        seen["started"] = asyncio.Event()
        rec = rt.create_run(parse_flow_text(TWO), {"q": "hi"})
        task = asyncio.create_task(rt.execute(rec.id))
        await asyncio.wait_for(seen["started"].wait(), 60)
        rt.control(rec.id, "cancel")
        return await asyncio.wait_for(task, 60)

    try:
        st = asyncio.run(go())
        assert str(st.status) == "CANCELED"
        assert not seen["before"].startswith("llmflow:") and seen["after"] == "llmflow:a[]#1", seen
        assert seen["cancel"] == ("run canceled",)  # the reason travels with the cancellation
        types = [e.type for e in rt.store.events(st.run_id) if e.step_id == "a"]
        assert E.ATTEMPT_CANCELED in types and E.STEP_COMPLETED not in types
    finally:
        rt.close()


def test_a_step_timeout_still_cuts_a_quick_function_that_waits(tmp_path):
    seen: dict[str, Any] = {}
    flow = parse_flow_text(
        "name: t\nsteps:\n  - id: a\n    python: {function: first, args: {text: x}}\n    timeout: 0.2\n"
    )

    @quick
    async def first(text: str) -> str:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError as exc:
            seen["cancel"] = exc.args
            raise
        return text

    rt = _rt(tmp_path, "memory", first=first)
    try:
        st = asyncio.run(asyncio.wait_for(rt.run(flow), 60))
        assert str(st.status) == "FAILED"
        assert "timed out" in (st.nodes["a"].error or "")
        assert seen["cancel"] == ("step timed out after 0.2s",)
        failed = [e for e in rt.store.events(st.run_id) if e.type == E.ATTEMPT_FAILED]
        assert failed and failed[0].payload["kind"] == "timeout"
    finally:
        rt.close()


def test_runs_of_quick_steps_on_a_store_that_never_waits_take_turns(tmp_path):
    """Inline units on the memory store never wait: a run still yields the loop now and
    then, so two runs started together interleave instead of one running to its end."""
    order: list[str] = []
    flow = parse_flow_text(
        "name: many\ninputs: {q: string}\nsteps:\n"
        + "".join(
            f"  - id: s{i}\n    python: {{function: first, args: {{text: '{{{{ inputs.q }}}}'}}}}\n"
            for i in range(80)
        )
    )

    @quick
    async def first(text: str) -> str:
        order.append(text)
        return text

    rt = _rt(tmp_path, "memory", first=first)

    async def go() -> list[Any]:
        return await asyncio.gather(rt.run(flow, {"q": "x"}), rt.run(flow, {"q": "y"}))

    try:
        sts = asyncio.run(go())
        assert [str(s.status) for s in sts] == ["COMPLETED", "COMPLETED"]
        assert len(order) == 160
        assert order[:80] != ["x"] * 80, "the first run held the loop to its end"
    finally:
        rt.close()


def _python_ctx(fn: Any) -> Any:
    """What ``python_fn.inline`` reads of a step's context, for a one-step flow calling ``fn``."""
    spec = parse_flow_text("name: s\nsteps:\n  - id: a\n    python: {function: f}\n").steps[0]
    return SimpleNamespace(step=spec, allow_shell=True, functions={"f": fn})


def test_only_functions_marked_quick_start_inline():
    from llmflow.steps import python_fn

    async def plain(text: str) -> str:
        return text

    @quick
    def sync_fn(text: str) -> str:
        return text

    def sync_unmarked(text: str) -> str:
        return text

    assert python_fn.inline(_python_ctx(quick(plain))) is True

    async def other(text: str) -> str:
        return text

    assert python_fn.inline(_python_ctx(other)) is False
    assert python_fn.inline(_python_ctx(sync_fn)) is True
    assert python_fn.inline(_python_ctx(sync_unmarked)) is False


@pytest.mark.parametrize("store", ["memory", "sqlite"])
def test_a_quick_plain_function_runs_on_the_event_loop_and_an_unmarked_one_in_a_worker_thread(
    tmp_path, store
):
    import threading

    threads: dict[str, bool] = {}

    @quick
    def first(text: str) -> str:
        threads["first"] = threading.current_thread() is threading.main_thread()
        return text.upper()

    def second(text: str) -> str:
        threads["second"] = threading.current_thread() is threading.main_thread()
        return f"{text}!"

    rt = _rt(tmp_path, store, first=first, second=second)
    try:
        st = asyncio.run(rt.run(parse_flow_text(TWO), {"q": "hi"}))
        assert str(st.status) == "COMPLETED", st.error
        assert st.nodes["b"].output == "HI!"
        assert threads == {"first": True, "second": False}  # the loop's thread; a worker thread
        types = [e.type for e in rt.store.events(st.run_id) if e.step_id == "a"]
        assert types == [E.STEP_STARTED, E.ATTEMPT_STARTED, E.ATTEMPT_COMPLETED, E.STEP_COMPLETED], types
    finally:
        rt.close()


def test_a_quick_plain_function_that_raises_fails_its_step(tmp_path):
    @quick
    def first(text: str) -> str:
        raise ValueError(f"bad {text}")

    def second(text: str) -> str:
        return text

    rt = _rt(tmp_path, "memory", first=first, second=second)
    try:
        st = asyncio.run(rt.run(parse_flow_text(TWO), {"q": "hi"}))
        assert str(st.status) == "FAILED"
        assert "ValueError: bad hi" in (st.nodes["a"].error or "")
    finally:
        rt.close()


def test_step_function_quick_true_sets_the_same_mark_as_quick():
    from llmflow.model.registry import registry, step_function
    from llmflow.steps import python_fn

    @step_function("quick_echo_for_test", quick=True)
    async def fast(text: str) -> str:
        return text

    @step_function("slow_echo_for_test")
    async def slow(text: str) -> str:
        return text

    try:
        assert registry.functions["quick_echo_for_test"] is fast
        assert python_fn.inline(_python_ctx(fast)) is True
        assert python_fn.inline(_python_ctx(slow)) is False
    finally:
        registry.functions.pop("quick_echo_for_test", None)
        registry.functions.pop("slow_echo_for_test", None)


@pytest.mark.parametrize(
    ("step", "models", "expected"),
    [
        ("llm: {prompt: hi}", {}, True),  # the fake model (the env's default here)
        ("llm: {prompt: hi}\n    timeout: 5", {}, False),  # the gateway's budget is a timeout scope
        ("llm: {prompt: hi, tools: [read_file]}", {}, False),
        ("llm: {prompt: hi}", {"a": "openai:gpt-4o-mini"}, False),  # an HTTP client: a task of its own
    ],
)
def test_only_plain_calls_of_the_fake_model_start_inline(step, models, expected):
    from llmflow.steps import llm

    flow = parse_flow_text(f"name: l\nsteps:\n  - id: a\n    {step}\n")
    ctx = SimpleNamespace(
        step=flow.steps[0],
        flow=flow,
        vars={},
        settings={},
        llm=object(),
        run_models=models,
        env_models={"LLMFLOW_MODEL": "fake:"},
    )
    assert llm.inline(ctx) is expected  # type: ignore[arg-type]
