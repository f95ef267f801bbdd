"""What a flow's own templates cost the engine (figures, not tests; docs/benchmarks.md).

    python -m bench.decisions [--runs 500]

W1's 3-step pipeline of instant python steps, one run after another, three ways: as is; with
``outputs:`` (``{{ steps.c.output }}``); with a ``when:`` condition on the last step. The
scheduler evaluates those templates while deciding: on the event loop when they only read and
compare values (``bounded`` in llmflow/model/template_bounds.py), in a worker thread
otherwise (a fourth flow whose output loops over the text shows that path). Prints wall and
CPU microseconds per step, in memory and with every event durable on SQLite, and the load
average.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time

from bench.engine import W1_PY, runtime
from llmflow.model.loader import parse_flow_text

FLOWS = {
    "plain": W1_PY,
    "outputs": W1_PY + 'outputs: {r: "{{ steps.c.output }}"}\n',
    "when": W1_PY.replace("  - id: c\n", "  - id: c\n    when: \"steps.b.output != ''\"\n"),
    "looping output": W1_PY + 'outputs: {r: "{% for w in steps.c.output.split() %}{{ w }} {% endfor %}"}\n',
    "filtered args": W1_PY.replace("{{ steps.a.output }}", "{{ steps.a.output | trim }}").replace(
        "{{ steps.b.output }}", "{% if steps.b.output %}{{ steps.b.output | upper }}{% endif %}"
    ),
}


def per_step(text: str, store: str, runs: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as d:
        rt = runtime(d, store, 0.0)
        flow = parse_flow_text(text)

        async def go(k: int) -> None:
            for i in range(k):
                st = await rt.run(flow, {"q": f"question {i}"})
                assert str(st.status) == "COMPLETED", st.error

        asyncio.run(go(20))  # warm up
        t0, c0 = time.perf_counter(), time.process_time()
        asyncio.run(go(runs))
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        rt.close()
    return wall / (runs * 3) * 1e6, cpu / (runs * 3) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=500)
    args = ap.parse_args()
    print("load average {:.1f} {:.1f} {:.1f}".format(*os.getloadavg()))
    for store in ("memory", "sqlite"):
        for name, text in FLOWS.items():
            wall, cpu = per_step(text, store, args.runs)
            print(f"{store:6s} {name:15s} {wall:7.1f} us/step wall, {cpu:7.1f} us/step CPU")
    print("load average now {:.1f} {:.1f} {:.1f}".format(*os.getloadavg()))


if __name__ == "__main__":
    main()
