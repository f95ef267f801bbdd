"""``llmflow.run_sync`` on a file path, 100 calls in a row (figures, not a test).

Run: python -m bench.run_sync [--calls 100]

A 3-step flow of llm steps on the instant fake model, so the time per call is llmflow's own
overhead: the first call composes the flow and opens the store; later calls reuse both (the
composed flow is cached by its file's modification time, the runtime and store are shared by
the process)."""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

FLOW = """\
name: three
inputs: {q: string}
steps:
  - id: a
    llm: {prompt: "{{ inputs.q }}", stream: false}
  - id: b
    llm: {prompt: "{{ steps.a.output }}", stream: false}
  - id: c
    llm: {prompt: "{{ steps.b.output }}", stream: false}
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=100)
    a = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="llmflow-run-sync-"))
    os.environ.update(LLMFLOW_HOME=str(home), LLMFLOW_MODEL="fake:", LLMFLOW_BLOCK_REAL_MODELS="1")
    flow = home / "flow.yaml"
    flow.write_text(FLOW)
    import llmflow

    t0 = time.perf_counter()
    first = llmflow.run_sync(str(flow), {"q": "first"})
    first_s = time.perf_counter() - t0
    assert first.ok, first.error
    times = []
    for i in range(a.calls):
        t = time.perf_counter()
        r = llmflow.run_sync(str(flow), {"q": f"call {i}"})
        times.append(time.perf_counter() - t)
        assert r.ok, r.error
    print(f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"first call (composes the flow, opens and migrates the store): {first_s * 1000:.0f} ms")
    print(
        f"next {a.calls} calls: median {statistics.median(times) * 1000:.1f} ms, mean {statistics.fmean(times) * 1000:.1f} ms per call (3 steps, every event durable on SQLite)"
    )


if __name__ == "__main__":
    main()
