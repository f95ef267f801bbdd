"""Repeatable engine cost per step: function calls (cProfile) or CPU instructions (callgrind).

Wall-clock figures move by a third on a loaded machine; these do not. The workload is W1
(``bench.engine``): runs of a 3-step flow one after another, python steps (an instant async
function) or llm steps (the instant fake model), in memory or with every event durable on
SQLite; or, with ``--workload w3``, W3's flow (10 parallel agents + an aggregate; for llm
steps one broadcast step of 10 agents) one input at a time, instant model. Figures are per
step (W1: 3 per run) or per unit (W3: 11 per run for python steps, 10 for llm steps).

    python -m bench.instructions                      # function calls per step, cProfile
    python -m bench.instructions --callgrind          # instructions per step, valgrind
    python -m bench.instructions --store sqlite --kind llm --runs 50
    python -m bench.instructions --workload w3 --callgrind --runs 10

Calls: the Python-level and builtin calls the profiler sees while ``--runs`` runs execute
(after a warm-up), divided by the steps. Instructions: callgrind counts every instruction of
the interpreter; the script runs the workload twice under valgrind, with ``--runs`` runs and
with none (same start-up and warm-up), and divides the difference by the steps, so start-up
and imports cancel out; the heap is collected and frozen (``gc.freeze``) before the measured
runs, so a full collection of the import-time heap does not fall in or out of the window.
``PYTHONHASHSEED`` is fixed so both runs lay out dicts the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import os
import pstats
import re
import subprocess
import sys
import tempfile

from bench.engine import W1_LLM, W1_PY, W3_LLM, W3_PY, runtime
from llmflow.model.loader import parse_flow_text

WARM_UP = 10
FLOWS = {("w1", "python"): W1_PY, ("w1", "llm"): W1_LLM, ("w3", "python"): W3_PY, ("w3", "llm"): W3_LLM}
# what one run executes: W1 3 steps; W3 10 agents + the aggregate (python) or 10 agents (llm)
UNITS = {("w1", "python"): 3, ("w1", "llm"): 3, ("w3", "python"): 11, ("w3", "llm"): 10}


def workload(
    runs: int, store: str, kind: str, profile: cProfile.Profile | None = None, wl: str = "w1"
) -> None:
    with tempfile.TemporaryDirectory() as d:
        rt = runtime(d, store, 0.0)
        flow = parse_flow_text(FLOWS[wl, kind])

        async def go(k: int, offset: int) -> None:
            for i in range(k):
                st = await rt.run(flow, {"q": f"question {offset + i}"})
                assert str(st.status) == "COMPLETED", st.error

        asyncio.run(go(WARM_UP, 0))
        # the measured runs start from the same heap whatever came before (imports, warm-up):
        # a full collection now, and the survivors out of the collector's way, so a full
        # collection that falls just inside or just outside the measured window (it scans
        # the whole heap) does not move the count by tens of millions of instructions
        gc.collect()
        gc.freeze()
        if profile is not None:
            profile.enable()
        asyncio.run(go(runs, WARM_UP))
        if profile is not None:
            profile.disable()
        rt.close()


def calls_per_step(runs: int, store: str, kind: str, top: int, wl: str = "w1") -> None:
    prof = cProfile.Profile()
    workload(runs, store, kind, prof, wl)
    stats = pstats.Stats(prof)
    total = sum(v[1] for v in stats.stats.values())  # type: ignore[attr-defined]
    per = "step" if wl == "w1" else "unit"
    print(
        f"{wl.upper()} {kind} steps, {store}: {total / (runs * UNITS[wl, kind]):,.0f} function calls per {per}"
        f" ({runs} runs, {total / runs:,.0f} per run)"
    )
    if top:
        stats.sort_stats("tottime").print_stats(top)


def instructions(runs: int, store: str, kind: str, wl: str = "w1") -> int:
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
        "--workload",
        wl,
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
    ap.add_argument("--workload", choices=("w1", "w3"), default="w1", help="W1 (3-step pipeline) or W3")
    ap.add_argument("--callgrind", action="store_true", help="count instructions under valgrind")
    ap.add_argument("--top", type=int, default=0, help="also print the N functions with most own time")
    ap.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.inner:
        workload(args.runs, args.store, args.kind, wl=args.workload)
        return
    wl = args.workload
    if not args.callgrind:
        calls_per_step(args.runs, args.store, args.kind, args.top, wl)
        return
    base = instructions(0, args.store, args.kind, wl)
    full = instructions(args.runs, args.store, args.kind, wl)
    per = "step" if wl == "w1" else "unit"
    print(
        f"{wl.upper()} {args.kind} steps, {args.store}: {(full - base) / (args.runs * UNITS[wl, args.kind]):,.0f}"
        f" instructions per {per}, {(full - base) / args.runs:,.0f} per run"
        f" ({args.runs} runs; {full:,} - {base:,} without them)"
    )


if __name__ == "__main__":
    main()
