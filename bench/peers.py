"""The same workloads on Apache Burr, Haystack and LangGraph (pip install 'llmflow[bench]'),
in memory, driven the way each documents: sync for W1 (instant "model"), async with the
same 50 ms asyncio "model" for W2 and W3.

W1  a 3-step pipeline, N runs one after another: microseconds per step.
W2  N inputs x 3 steps at concurrency C, 50 ms per call: efficiency = ideal / wall, and CPU
    microseconds per model call.
W3  N inputs x 10 parallel agents + aggregate at concurrency C, 50 ms per call: efficiency.
    (Burr has no fan-out of actions in its core API: its W3 action awaits the 10 calls with
    asyncio.gather, which is how a Burr user writes it.)
"""

from __future__ import annotations

import asyncio
import operator
import time
from collections import Counter
from collections.abc import Callable
from typing import Annotated, Any, TypedDict


def fake_call(text: str) -> str:
    return "fake answer to: " + str(text)[:40]


async def afake_call(text: str, latency: float) -> str:
    if latency:
        await asyncio.sleep(latency)
    return fake_call(text)


def majority(answers: list[str]) -> str:
    return Counter(answers).most_common(1)[0][0]


def timed(n: int, fn: Callable[[int], Any]) -> float:
    for i in range(min(20, n)):  # warm up
        fn(i)
    t0 = time.perf_counter()
    for i in range(n):
        fn(i)
    return time.perf_counter() - t0


async def concurrently(inputs: int, concurrency: int, one: Callable[[int], Any]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of running ``one(i)`` for every input, ``concurrency`` at once."""
    sem = asyncio.Semaphore(concurrency)

    async def guarded(i: int) -> None:
        async with sem:
            await one(i)

    t0, c0 = time.perf_counter(), time.process_time()
    await asyncio.gather(*(guarded(i) for i in range(inputs)))
    return time.perf_counter() - t0, time.process_time() - c0


# -- LangGraph ----------------------------------------------------------------------------------
def _lg_pipeline(latency: float | None) -> Any:
    from langgraph.graph import END, START, StateGraph

    class S(TypedDict):
        q: str
        a: str
        b: str
        c: str

    g = StateGraph(S)
    if latency is None:
        g.add_node("a", lambda s: {"a": fake_call(s["q"])})
        g.add_node("b", lambda s: {"b": fake_call(s["a"])})
        g.add_node("c", lambda s: {"c": fake_call(s["b"])})
    else:

        def node(src: str, dst: str) -> Any:
            async def run(s: S) -> dict[str, Any]:
                return {dst: await afake_call(s[src], latency)}  # type: ignore[literal-required]

            return run

        g.add_node("a", node("q", "a"))
        g.add_node("b", node("a", "b"))
        g.add_node("c", node("b", "c"))
    g.add_edge(START, "a")
    g.add_edge("a", "b")
    g.add_edge("b", "c")
    g.add_edge("c", END)
    return g.compile()


def langgraph_w1(n: int) -> float:
    app = _lg_pipeline(None)
    return timed(n, lambda i: app.invoke({"q": f"question {i}"})) / (n * 3) * 1e6


def langgraph_w2(inputs: int, concurrency: int, latency: float) -> tuple[float, float]:
    app = _lg_pipeline(latency)
    return asyncio.run(concurrently(inputs, concurrency, lambda i: app.ainvoke({"q": f"input {i}"})))


def langgraph_w3(inputs: int, concurrency: int, latency: float) -> tuple[float, float]:
    from langgraph.graph import END, START, StateGraph

    class S(TypedDict):
        q: str
        answers: Annotated[list[str], operator.add]
        result: str

    g = StateGraph(S)

    def agent() -> Any:
        async def run(s: S) -> dict[str, Any]:
            return {"answers": [await afake_call(s["q"], latency)]}

        return run

    for i in range(10):
        g.add_node(f"a{i}", agent())
        g.add_edge(START, f"a{i}")
        g.add_edge(f"a{i}", "agg")
    g.add_node("agg", lambda s: {"result": majority(s["answers"])})
    g.add_edge("agg", END)
    app = g.compile()
    return asyncio.run(
        concurrently(inputs, concurrency, lambda i: app.ainvoke({"q": f"input {i}", "answers": []}))
    )


# -- Burr ---------------------------------------------------------------------------------------
def _burr_pipeline(q: str, latency: float | None) -> Any:
    from burr.core import ApplicationBuilder, State, action

    if latency is None:

        @action(reads=["q"], writes=["a"])
        def a(state: State) -> State:
            return state.update(a=fake_call(state["q"]))

        @action(reads=["a"], writes=["b"])
        def b(state: State) -> State:
            return state.update(b=fake_call(state["a"]))

        @action(reads=["b"], writes=["c"])
        def c(state: State) -> State:
            return state.update(c=fake_call(state["b"]))

    else:

        @action(reads=["q"], writes=["a"])
        async def a(state: State) -> State:
            return state.update(a=await afake_call(state["q"], latency))

        @action(reads=["a"], writes=["b"])
        async def b(state: State) -> State:
            return state.update(b=await afake_call(state["a"], latency))

        @action(reads=["b"], writes=["c"])
        async def c(state: State) -> State:
            return state.update(c=await afake_call(state["b"], latency))

    return (
        ApplicationBuilder()
        .with_actions(a=a, b=b, c=c)
        .with_transitions(("a", "b"), ("b", "c"))
        .with_state(q=q)
        .with_entrypoint("a")
        .build()
    )


def burr_w1(n: int) -> float:
    return timed(n, lambda i: _burr_pipeline(f"question {i}", None).run(halt_after=["c"])) / (n * 3) * 1e6


def burr_w2(inputs: int, concurrency: int, latency: float) -> tuple[float, float]:
    return asyncio.run(
        concurrently(
            inputs, concurrency, lambda i: _burr_pipeline(f"input {i}", latency).arun(halt_after=["c"])
        )
    )


def burr_w3(inputs: int, concurrency: int, latency: float) -> tuple[float, float]:
    from burr.core import ApplicationBuilder, State, action

    @action(reads=["q"], writes=["answers"])
    async def agents(state: State) -> State:
        return state.update(
            answers=list(await asyncio.gather(*(afake_call(state["q"], latency) for _ in range(10))))
        )

    @action(reads=["answers"], writes=["result"])
    def agg(state: State) -> State:
        return state.update(result=majority(state["answers"]))

    def build(q: str) -> Any:
        return (
            ApplicationBuilder()
            .with_actions(agents=agents, agg=agg)
            .with_transitions(("agents", "agg"))
            .with_state(q=q)
            .with_entrypoint("agents")
            .build()
        )

    return asyncio.run(
        concurrently(inputs, concurrency, lambda i: build(f"input {i}").arun(halt_after=["agg"]))
    )


# -- Haystack -----------------------------------------------------------------------------------
def _hs_call(latency: float | None) -> Any:
    from haystack import component

    @component
    class Call:
        @component.output_types(text=str)
        def run(self, text: str) -> dict[str, str]:
            return {"text": fake_call(text)}

        @component.output_types(text=str)
        async def run_async(self, text: str) -> dict[str, str]:
            return {"text": await afake_call(text, latency or 0.0)}

    return Call()


def _hs_pipeline(latency: float | None) -> Any:
    from haystack import Pipeline

    p = Pipeline()
    for name in ("a", "b", "c"):
        p.add_component(name, _hs_call(latency))
    p.connect("a.text", "b.text")
    p.connect("b.text", "c.text")
    return p


def haystack_w1(n: int) -> float:
    p = _hs_pipeline(None)
    return timed(n, lambda i: p.run({"a": {"text": f"question {i}"}})) / (n * 3) * 1e6


def haystack_w2(inputs: int, concurrency: int, latency: float) -> tuple[float, float]:
    p = _hs_pipeline(latency)
    return asyncio.run(
        concurrently(inputs, concurrency, lambda i: p.run_async({"a": {"text": f"input {i}"}}))
    )


def haystack_w3(inputs: int, concurrency: int, latency: float) -> tuple[float, float]:
    from haystack import Pipeline, component

    @component
    class Aggregate:
        @component.output_types(result=str)
        def run(
            self, a0: str, a1: str, a2: str, a3: str, a4: str, a5: str, a6: str, a7: str, a8: str, a9: str
        ) -> dict[str, str]:
            return {"result": majority([a0, a1, a2, a3, a4, a5, a6, a7, a8, a9])}

    p = Pipeline()
    p.add_component("agg", Aggregate())
    for i in range(10):
        p.add_component(f"agent{i}", _hs_call(latency))
        p.connect(f"agent{i}.text", f"agg.a{i}")
    return asyncio.run(
        concurrently(
            inputs,
            concurrency,
            lambda i: p.run_async({f"agent{k}": {"text": f"input {i}"} for k in range(10)}),
        )
    )


PEERS = {
    "Burr": (burr_w1, burr_w2, burr_w3),
    "Haystack": (haystack_w1, haystack_w2, haystack_w3),
    "LangGraph": (langgraph_w1, langgraph_w2, langgraph_w3),
}
