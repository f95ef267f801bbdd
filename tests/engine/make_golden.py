"""Record golden event logs: python tests/engine/make_golden.py [NAME ...] (then commit
tests/engine/golden/). Without names it records the flows that have no log yet.

The replay test folds these logs with the current code; a change to the event schema or
to the fold that would misread old runs fails it."""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path

from llmflow.model.loader import parse_flow_text
from llmflow.runtime import RunRequest, build_runtime
from llmflow.store.memory import MemoryStore

HERE = Path(__file__).parent / "golden"

FLOWS = {
    "pipeline_retry": (
        """
name: pipeline_retry
inputs: {q: string}
steps:
  - id: a
    llm: "{{ inputs.q }}"
    retry: {attempts: 3, backoff: 0, jitter: 0}
  - id: b
    write_file: {path: out.txt, content: "{{ steps.a.output }}"}
""",
        {"q": "hi"},
        {"a": "fake:flaky?fail=500&fail_times=1"},
    ),
    "broadcast_route_loop": (
        """
name: broadcast_route_loop
agents: {x: {}, y: {}, z: {}}
steps:
  - id: vote
    broadcast: {agents: [x, y, z], aggregate: majority, prompt: same}
  - id: r
    route:
      routes: [{when: "steps.vote.output == 'never'", to: nope}]
      default: yes_branch
  - id: nope
    llm: "nope"
  - id: yes_branch
    llm: "yes"
    needs: [r]
  - id: lp
    needs: [nope, yes_branch]
    loop:
      until: "loop.iteration >= 2"
      steps:
        - id: body
          llm: "iteration {{ loop.iteration }}"
""",
        {},
        {},
    ),
    # a map over a list and a parallel group; a step that fails for good winds the run down
    # (its sibling in the group canceled, the step after it canceled, RUN_FAILED)
    "map_parallel_failure": (
        """
name: map_parallel_failure
inputs: {items: array}
steps:
  - id: each
    for_each: "{{ inputs.items }}"
    llm: "item {{ item }}"
  - id: group
    parallel:
      - id: ok
        llm: "fine"
      - id: bad
        llm: "breaks"
        retry: {attempts: 2, backoff: 0, jitter: 0}
  - id: after
    llm: "never runs"
""",
        {"items": ["x", "y"]},
        {"bad": "fake:flaky?fail=500&fail_times=9"},
    ),
    # outputs that fail to render fail the run through the same wind-down
    "outputs_fail": (
        """
name: outputs_fail
outputs: {r: "{{ steps.a.output.missing.deeper }}"}
steps:
  - id: a
    llm: "hi"
""",
        {},
        {},
    ),
}


def main(names: list[str]) -> None:
    """Record the logs of ``names`` (default: the flows with no log yet: a recorded log is
    kept as it was recorded, so the replay test keeps reading what older code wrote)."""
    HERE.mkdir(exist_ok=True)
    todo = names or [n for n in FLOWS if not (HERE / f"{n}.json").exists()]
    for name in todo:
        text, inputs, models = FLOWS[name]
        with tempfile.TemporaryDirectory() as d:
            rt = build_runtime(env={"LLMFLOW_MODEL": "fake:"}, home=Path(d), store=MemoryStore())
            flow = parse_flow_text(text)
            st = asyncio.run(rt.run(flow, inputs, RunRequest(models=models)))
            events = [
                {k: v for k, v in e.to_dict().items() if k not in ("id", "ts", "run_id", "attempt_id")}
                for e in rt.store.events(st.run_id)
            ]
            golden = {
                "flow": flow.to_dict(),
                "inputs": inputs,
                "events": events,
                "expected": {
                    "status": str(st.status),
                    "steps": {k: str(n.status) for k, n in st.nodes.items()},
                    "outputs": st.outputs,
                },
            }
            (HERE / f"{name}.json").write_text(json.dumps(golden, indent=1, default=str) + "\n")
            print(name, st.status)


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
