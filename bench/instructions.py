"""Repeatable engine cost per step: function calls (cProfile) or CPU instructions (callgrind).

Wall-clock figures move by a third on a loaded machine; these do not. The workload is W1
(``bench.engine``): runs of a 3-step flow one after another, python steps (an instant async
function) or llm steps (the instant fake model), in memory or with every event durable on
SQLite.

    python -m bench.instructions                      # function calls per step, cProfile
    python -m bench.instructions --callgrind          # instructions per step, valgrind
    python -m bench.instructions --store sqlite --kind llm --runs 50

Calls: the Python-level and builtin calls the profiler sees while ``--runs`` runs execute
(after a warm-up), divided by the steps. Instructions: callgrind counts every instruction of
the interpreter; the script runs the workload twice under valgrind, with ``--runs`` runs and
with none (same start-up and warm-up), and divides the difference by the steps, so start-up
and imports cancel out. ``PYTHONHASHSEED`` is fixed so both runs lay out dicts the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import re
import subprocess
import sys
import tempfile

from bench.engine import W1_LLM, W1_PY, runtime
from llmflow.model.loader import parse_flow_text

WARM_UP = 10


def workload(runs: int, store: str, kind: str, profile: cProfile.Profile | None = None) -> None:
    with tempfile.TemporaryDirectory() as d:
        rt = runtime(d, store, 0.0)
        flow = parse_flow_text(W1_PY if kind == "python" else W1_LLM)

        async def go(k: int, offset: int) -> None:
            for i in range(k):
                st = await rt.run(flow, {"q": f"question {offset + i}"})
                assert str(st.status) == "COMPLETED", st.error

        asyncio.run(go(WARM_UP, 0))
        if profile is not None:
            profile.enable()
        asyncio.run(go(runs, WARM_UP))
        if profile is not None:
            profile.disable()
        rt.close()


def calls_per_step(runs: int, store: str, kind: str, top: int) -> None:
    prof = cProfile.Profile()
    workload(runs, store, kind, prof)
    stats = pstats.Stats(prof)
    total = sum(v[1] for v in stats.stats.values())  # type: ignore[attr-defined]
    print(f"W1 {kind} steps, {store}: {total / (runs * 3):,.0f} function calls per step ({runs} runs)")
    if top:
        stats.sort_stats("tottime").print_stats(top)


def instructions(runs: int, store: str, kind: str) -> int:
    cmd = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        "-m",
        "bench.instructions",
        "--inner",
        "--runs",
        str(runs),
        "--store",
        store,
        "--kind",
        kind,
    ]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    m = re.search(r"Collected : (\d+)", out.stderr)
    if m is None:
        raise SystemExit(f"no instruction count in valgrind's output:\n{out.stderr[-2000:]}")
    return int(m.group(1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--store", choices=("memory", "sqlite"), default="memory")
    ap.add_argument("--kind", choices=("python", "llm"), default="python")
    ap.add_argument("--callgrind", action="store_true", help="count instructions under valgrind")
    ap.add_argument("--top", type=int, default=0, help="also print the N functions with most own time")
    ap.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.inner:
        workload(args.runs, args.store, args.kind)
        return
    if not args.callgrind:
        calls_per_step(args.runs, args.store, args.kind, args.top)
        return
    base = instructions(0, args.store, args.kind)
    full = instructions(args.runs, args.store, args.kind)
    print(
        f"W1 {args.kind} steps, {args.store}: {(full - base) / (args.runs * 3):,.0f} instructions per step"
        f" ({args.runs} runs; {full:,} - {base:,} without them)"
    )


if __name__ == "__main__":
    main()
