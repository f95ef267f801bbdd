"""Validation cost by flow size (figures, not tests). Run: python bench/validate.py [--quick]

A chain of N llm steps, each reading the step before it (the shape that made validation
quadratic: upstream sets, source-map scans, Hydra parsing the file three times), written
to a flow file and loaded with `load_flow` (compose + validate), and the same document
validated from memory (`validate_document`). Prints CPU seconds and microseconds per step;
linear validation keeps the per-step cost flat as N grows. The figures depend on the
machine and its load: compare the rows of one invocation, not across machines.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from llmflow.model.compose import compose, find_target
from llmflow.model.limits import Limits, using
from llmflow.model.validate import validate_document


def chain(n: int) -> str:
    lines = [
        "name: chain",
        "inputs: {t: string}",
        "steps:",
        '  - {id: s0, llm: {prompt: "x {{ inputs.t }}"}}',
    ]
    lines += [f'  - {{id: s{i}, llm: {{prompt: "y {{{{ steps.s{i - 1}.output }}}}"}}}}' for i in range(1, n)]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1,000 and 4,000 steps only")
    args = ap.parse_args()
    sizes = [1_000, 4_000] if args.quick else [1_000, 4_000, 10_000, 20_000]
    print(f"{'steps':>7} {'compose s':>10} {'validate s':>11} {'total s':>8} {'us/step':>8}")
    with tempfile.TemporaryDirectory() as d, using(Limits(flow_steps=max(sizes))):
        for n in sizes:
            f = Path(d) / f"chain{n}.yaml"
            f.write_text(chain(n))
            t0 = time.process_time()
            composed = compose(find_target(str(f)))
            t1 = time.process_time()
            flow, diags = validate_document(composed.document, composed.sources, str(f))
            t2 = time.process_time()
            assert flow is not None and not diags, diags[:3]
            print(f"{n:>7} {t1 - t0:>10.2f} {t2 - t1:>11.2f} {t2 - t0:>8.2f} {(t2 - t0) / n * 1e6:>8.0f}")


if __name__ == "__main__":
    main()
