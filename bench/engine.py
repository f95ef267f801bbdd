"""Engine benchmarks (figures, not tests). Run: python -m bench.engine [--quick] [--peers] [--w1-only]

Every workload runs twice: with python steps that call an asyncio "model" (the same function
the peers call) and with llm steps on the fake provider (events for the model call included).

W1  a 3-step pipeline, instant model, N runs one after another: microseconds per step, in
    memory (MemoryStore) and with every event durable on SQLite.
W2  N inputs x 3 steps at concurrency 100, 50 ms per model call, every event durable on
    SQLite: efficiency = ideal wall / measured wall; CPU microseconds per model call.
W3  N inputs x 10 parallel agents + an aggregate at concurrency 20, 50 ms per call, SQLite:
    efficiency.
--peers runs Apache Burr, Haystack and LangGraph on the same workloads in the same
invocation (pip install 'llmflow[bench]') and prints llmflow's ratio to each. The machine's
load average is printed first: compare ratios from one invocation, not figures across runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.peers import PEERS, afake_call, fake_call
from llmflow.model.loader import parse_flow_text
from llmflow.runtime import build_runtime
from llmflow.steps.python_fn import quick
from llmflow.store.memory import MemoryStore

W1_LLM = """
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

W1_PY = """
name: w1py
inputs: {q: string}
steps:
  - id: a
    python: {function: call, args: {text: "{{ inputs.q }}"}}
  - id: b
    python: {function: call, args: {text: "{{ steps.a.output }}"}}
  - id: c
    python: {function: call, args: {text: "{{ steps.b.output }}"}}
"""

W3_LLM = """
name: w3
inputs: {q: string}
agents: {a0: {}, a1: {}, a2: {}, a3: {}, a4: {}, a5: {}, a6: {}, a7: {}, a8: {}, a9: {}}
steps:
  - id: vote
    broadcast: {agents: [a0, a1, a2, a3, a4, a5, a6, a7, a8, a9], aggregate: majority, prompt: "{{ inputs.q }}"}
"""

W3_PY = (
    "name: w3py\ninputs: {q: string}\nsteps:\n  - id: agents\n    parallel:\n"
    + "".join(
        f"      - id: a{i}\n        python: {{function: call, args: {{text: '{{{{ inputs.q }}}}'}}}}\n"
        for i in range(10)
    )
    + "  - id: agg\n    python: {function: vote, args: {answers: '{{ steps.agents.output }}'}}\n"
)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def runtime(d: str, store: str, latency: float) -> Any:
    env = {
        "LLMFLOW_MODEL": f"fake:?latency={latency}" if latency else "fake:",
        "LLMFLOW_BLOCK_REAL_MODELS": "1",
    }

    @quick  # a plain await at most: the engine may start it inline (steps/python_fn.py)
    async def call(text: str) -> str:
        return await afake_call(text, latency) if latency else fake_call(text)

    @quick  # a plain function over ten short strings: on the loop, as the peers call it
    def vote(answers: dict[str, str]) -> str:
        from bench.peers import majority

        return majority(list(answers.values()))

    return build_runtime(
        env=env,
        home=Path(d),
        store=MemoryStore() if store == "memory" else None,
        functions={"call": call, "vote": vote},
    )


def w1(n: int, store: str, kind: str) -> tuple[float, float]:
    """(µs per step wall, events per run)."""
    with tempfile.TemporaryDirectory() as d:
        rt = runtime(d, store, 0.0)
        flow = parse_flow_text(W1_PY if kind == "python" else W1_LLM)

        async def go(k: int) -> None:
            for i in range(k):
                st = await rt.run(flow, {"q": f"question {i}"})
                assert str(st.status) == "COMPLETED", st.error

        asyncio.run(go(20))  # warm up
        t0 = time.perf_counter()
        asyncio.run(go(n))
        wall = time.perf_counter() - t0
        events = len(rt.store.events(rt.store.list_runs(limit=1)[0].id))
        rt.close()
        return wall / (n * 3) * 1e6, events


def concurrent_runs(flow_text: str, inputs: int, concurrency: int, latency: float) -> tuple[float, float]:
    """(wall, CPU seconds) of running the flow on every input, ``concurrency`` at once, SQLite."""
    with tempfile.TemporaryDirectory() as d:
        rt = runtime(d, "sqlite", latency)
        flow = parse_flow_text(flow_text)

        async def go() -> tuple[float, float]:
            sem = asyncio.Semaphore(concurrency)

            async def one(i: int) -> None:
                async with sem:
                    st = await rt.run(flow, {"q": f"input {i}"})
                    assert str(st.status) == "COMPLETED", st.error

            await asyncio.gather(*(one(i) for i in range(min(concurrency, 20))))  # warm up
            t0, c0 = time.perf_counter(), time.process_time()
            await asyncio.gather(*(one(i) for i in range(inputs)))
            return time.perf_counter() - t0, time.process_time() - c0

        out = asyncio.run(go())
        rt.close()
        return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer runs (smoke)")
    ap.add_argument(
        "--peers",
        action="store_true",
        help="also run Burr, Haystack and LangGraph (pip install 'llmflow[bench]')",
    )
    ap.add_argument("--w1-only", action="store_true", help="only W1 (and the peers' W1)")
    args = ap.parse_args()
    n = 300 if args.quick else 2000
    w2_inputs = 300 if args.quick else 1000
    w3_inputs = 100 if args.quick else 200
    lat = 0.05
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} cores, load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}"
    )
    rows: dict[str, float] = {}
    for kind in ("python", "llm"):
        mem, _ = w1(n, "memory", kind)
        sql, ev = w1(n, "sqlite", kind)
        rows[f"w1-{kind}"] = mem
        print(
            f"W1 {kind:<6} steps: {mem:8.1f} us/step in memory, {sql:8.1f} us/step on SQLite ({ev:.0f} events per 3-step run, all durable)"
        )
    for kind, text in () if args.w1_only else (("python", W1_PY), ("llm", W1_LLM)):
        wall, cpu = concurrent_runs(text, w2_inputs, 100, lat)
        ideal = w2_inputs / 100 * 3 * lat
        rows[f"w2-{kind}"] = ideal / wall
        rows[f"cpu-{kind}"] = cpu / (w2_inputs * 3) * 1e6
        print(
            f"W2 {kind:<6} steps: efficiency {ideal / wall:5.0%} (ideal {ideal:.2f} s, measured {wall:.2f} s), CPU {cpu / (w2_inputs * 3) * 1e6:6.0f} us per model call, SQLite"
        )
    for kind, text in () if args.w1_only else (("python", W3_PY), ("llm", W3_LLM)):
        wall, _ = concurrent_runs(text, w3_inputs, 20, lat)
        ideal = w3_inputs / 20 * lat
        rows[f"w3-{kind}"] = ideal / wall
        print(
            f"W3 {kind:<6} steps: efficiency {ideal / wall:5.0%} (ideal {ideal:.2f} s, measured {wall:.2f} s), SQLite"
        )
    print(
        f"peak RSS: {peak_rss_mb():.0f} MB; load average now {' '.join(f'{x:.1f}' for x in os.getloadavg())}"
    )
    if not args.peers:
        return
    print("\npeers (in memory, same workloads, same invocation):")
    for name, (p1, p2, p3) in PEERS.items():
        try:
            us = p1(n)
            if args.w1_only:
                print(
                    f"{name:<10} W1 {us:7.1f} us/step (llmflow python/{name} = {rows['w1-python'] / us:.2f}x time)"
                )
                continue
            wall2, cpu2 = p2(w2_inputs, 100, lat)
            eff2 = w2_inputs / 100 * 3 * lat / wall2
            cpu_call = cpu2 / (w2_inputs * 3) * 1e6
            wall3, _ = p3(w3_inputs, 20, lat)
            eff3 = w3_inputs / 20 * lat / wall3
        except ImportError as exc:
            print(f"{name:<10} not installed ({exc})")
            continue
        print(
            f"{name:<10} W1 {us:7.1f} us/step (llmflow python/{name} = {rows['w1-python'] / us:.2f}x time)"
            f" | W2 {eff2:4.0%} (llmflow {rows['w2-python']:.0%}), CPU {cpu_call:5.0f} us/call (llmflow/{name} = {rows['cpu-python'] / cpu_call:.2f}x)"
            f" | W3 {eff3:4.0%} (llmflow {rows['w3-python']:.0%})"
        )


if __name__ == "__main__":
    main()
