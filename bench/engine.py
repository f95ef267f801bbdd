"""Engine benchmarks (figures, not tests). Run: python bench/engine.py [--quick] [--peers]

W1  a 3-step pipeline on an instant fake model, N runs one after another:
    microseconds of orchestration per step, every event persisted to SQLite, and with the
    in-memory store; peak RSS.
W3  one input broadcast to 10 agents (50 ms simulated latency each), then aggregated;
    200 inputs at concurrency 20: efficiency = ideal wall (0.5 s) / measured wall.
--peers also runs the same workloads on LangGraph and Apache Burr when installed
(`pip install 'llmflow[bench]'`) and prints llmflow's ratio to each.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import tempfile
import time
from pathlib import Path

from llmflow.app import build_runtime
from llmflow.model.loader import parse_flow_text
from llmflow.store.memory import MemoryStore

W1_FLOW = """
name: w1
inputs: {q: string}
steps:
  - id: a
    llm: {prompt: "{{ inputs.q }}", stream: false}
  - id: b
    llm: {prompt: "{{ steps.a.output }}", stream: false}
  - id: c
    llm: {prompt: "{{ steps.b.output }}", stream: false}
"""

W3_FLOW = """
name: w3
inputs: {q: string}
agents: {a0: {}, a1: {}, a2: {}, a3: {}, a4: {}, a5: {}, a6: {}, a7: {}, a8: {}, a9: {}}
steps:
  - id: vote
    broadcast: {agents: [a0, a1, a2, a3, a4, a5, a6, a7, a8, a9], aggregate: majority, prompt: "{{ inputs.q }}"}
"""


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def w1(n: int, store: str) -> float:
    with tempfile.TemporaryDirectory() as d:
        env = {"LLMFLOW_MODEL": "fake:", "LLMFLOW_BLOCK_REAL_MODELS": "1"}
        rt = build_runtime(env=env, home=Path(d), store=MemoryStore() if store == "memory" else None)
        flow = parse_flow_text(W1_FLOW)

        async def go() -> float:
            for i in range(20):  # warm up
                await rt.run(flow, {"q": f"warm {i}"})
            t0 = time.perf_counter()
            for i in range(n):
                st = await rt.run(flow, {"q": f"question {i}"})
                assert str(st.status) == "COMPLETED"
            return time.perf_counter() - t0

        wall = asyncio.run(go())
        events = sum(len(rt.store.events(r.id)) for r in rt.store.list_runs(limit=3))
        rt.close()
        return wall / (n * 3) * 1e6, events / 3


def w3(inputs: int = 200, concurrency: int = 20, latency: float = 0.05) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as d:
        env = {"LLMFLOW_MODEL": f"fake:?latency={latency}", "LLMFLOW_BLOCK_REAL_MODELS": "1"}
        rt = build_runtime(env=env, home=Path(d))
        flow = parse_flow_text(W3_FLOW)

        async def go() -> float:
            sem = asyncio.Semaphore(concurrency)

            async def one(i: int) -> None:
                async with sem:
                    st = await rt.run(flow, {"q": f"input {i}"})
                    assert str(st.status) == "COMPLETED", st.error

            t0 = time.perf_counter()
            await asyncio.gather(*(one(i) for i in range(inputs)))
            return time.perf_counter() - t0

        wall = asyncio.run(go())
        rt.close()
        ideal = inputs / concurrency * latency
        return ideal / wall, wall


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer runs (smoke)")
    ap.add_argument("--peers", action="store_true", help="also run LangGraph and Burr (pip install 'llmflow[bench]')")
    args = ap.parse_args()
    n = 200 if args.quick else 2000
    print(f"python {sys.version.split()[0]}")
    mem_us, _ = w1(n, "memory")
    print(f"W1 in memory : {mem_us:8.1f} us/step  ({n} runs x 3 steps)")
    sql_us, ev = w1(n, "sqlite")
    print(f"W1 sqlite    : {sql_us:8.1f} us/step  (every event persisted, {ev:.0f} events/run)")
    eff, wall = w3()
    print(f"W3 broadcast : efficiency {eff:.0%} (ideal 0.50 s, measured {wall:.2f} s, SQLite, every event persisted)")
    print(f"peak RSS     : {peak_rss_mb():.0f} MB")
    if args.peers:
        from bench import peers

        peers.compare(n, mem_us, eff)


if __name__ == "__main__":
    main()
