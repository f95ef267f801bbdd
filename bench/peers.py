"""The same workloads on LangGraph and Apache Burr (pip install 'llmflow[bench]'),
in memory, with an instant fake "model" (W1) and 50 ms simulated latency (W3)."""

from __future__ import annotations

import asyncio
import operator
import time
from typing import Annotated, Any, TypedDict


def fake_call(text: str) -> str:
    return "fake answer to: " + text[:40]


# -- LangGraph -----------------------------------------------------------------------------
def langgraph_w1(n: int) -> float:
    from langgraph.graph import END, START, StateGraph

    class S(TypedDict):
        q: str
        a: str
        b: str
        c: str

    g = StateGraph(S)
    g.add_node("a", lambda s: {"a": fake_call(s["q"])})
    g.add_node("b", lambda s: {"b": fake_call(s["a"])})
    g.add_node("c", lambda s: {"c": fake_call(s["b"])})
    g.add_edge(START, "a")
    g.add_edge("a", "b")
    g.add_edge("b", "c")
    g.add_edge("c", END)
    app = g.compile()
    for i in range(20):
        app.invoke({"q": f"warm {i}"})
    t0 = time.perf_counter()
    for i in range(n):
        app.invoke({"q": f"question {i}"})
    return (time.perf_counter() - t0) / (n * 3) * 1e6


def langgraph_w3(inputs: int = 200, concurrency: int = 20, latency: float = 0.05) -> float:
    from langgraph.graph import END, START, StateGraph

    class S(TypedDict):
        q: str
        answers: Annotated[list[str], operator.add]
        result: str

    g = StateGraph(S)

    def agent(i: int) -> Any:
        async def run(s: S) -> dict[str, Any]:
            await asyncio.sleep(latency)
            return {"answers": [fake_call(s["q"])]}

        return run

    for i in range(10):
        g.add_node(f"a{i}", agent(i))
        g.add_edge(START, f"a{i}")
        g.add_edge(f"a{i}", "agg")
    g.add_node("agg", lambda s: {"result": max(set(s["answers"]), key=s["answers"].count)})
    g.add_edge("agg", END)
    app = g.compile()

    async def go() -> float:
        sem = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            async with sem:
                await app.ainvoke({"q": f"input {i}", "answers": []})

        t0 = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(inputs)))
        return time.perf_counter() - t0

    wall = asyncio.run(go())
    return inputs / concurrency * latency / wall


# -- Burr ----------------------------------------------------------------------------------
def burr_w1(n: int) -> float:
    from burr.core import ApplicationBuilder, State, action

    @action(reads=["q"], writes=["a"])
    def a(state: State) -> State:
        return state.update(a=fake_call(state["q"]))

    @action(reads=["a"], writes=["b"])
    def b(state: State) -> State:
        return state.update(b=fake_call(state["a"]))

    @action(reads=["b"], writes=["c"])
    def c(state: State) -> State:
        return state.update(c=fake_call(state["b"]))

    def build(q: str) -> Any:
        return (
            ApplicationBuilder()
            .with_actions(a=a, b=b, c=c)
            .with_transitions(("a", "b"), ("b", "c"))
            .with_state(q=q)
            .with_entrypoint("a")
            .build()
        )

    for i in range(20):
        build(f"warm {i}").run(halt_after=["c"])
    t0 = time.perf_counter()
    for i in range(n):
        build(f"question {i}").run(halt_after=["c"])
    return (time.perf_counter() - t0) / (n * 3) * 1e6


def compare(n: int, llmflow_w1_us: float, llmflow_w3_eff: float) -> None:
    rows = []
    for name, fn in (("LangGraph", langgraph_w1), ("Burr", burr_w1)):
        try:
            us = fn(n)
            rows.append((name, "W1 in memory", f"{us:.1f} us/step", f"llmflow/{name} = {llmflow_w1_us / us:.2f}x time"))
        except ImportError as exc:
            rows.append((name, "W1", "not installed", str(exc)))
    try:
        eff = langgraph_w3()
        rows.append(("LangGraph", "W3 efficiency", f"{eff:.0%}", f"llmflow {llmflow_w3_eff:.0%} (persisting every event)"))
    except ImportError as exc:
        rows.append(("LangGraph", "W3", "not installed", str(exc)))
    for r in rows:
        print(f"{r[0]:<10} {r[1]:<15} {r[2]:<16} {r[3]}")
