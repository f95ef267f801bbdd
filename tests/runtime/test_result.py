"""One result type: run / start, Runner and Orchestra all return llmflow.Run."""

from __future__ import annotations

import asyncio
import json

import llmflow
from llmflow.runtime import Runtime

FLOW = {
    "name": "echo",
    "inputs": {"text": {"type": "string"}},
    "steps": [{"id": "a", "kind": "llm", "prompt": "{{ inputs.text }}", "model": "fake:"}],
    "outputs": {"result": "{{ steps.a.output }}"},
}


def test_run_runner_and_orchestra_return_the_same_type(runtime: Runtime) -> None:
    flow = llmflow.Flow.model_validate(FLOW)
    by_run = llmflow.run_sync(flow, {"text": "hi"}, runtime=runtime)
    by_runner = llmflow.Runner(flow, runtime=runtime).run_sync("hi")
    orch = llmflow.Orchestra({"echo": flow}, runtime=runtime)
    by_orchestra = orch.run_pipeline_sync("hi", ["echo"])
    started = asyncio.run(_started(runtime, flow))
    for r in (by_run, by_runner, by_orchestra, started):
        assert type(r) is llmflow.Run and r.ok and r.status == "COMPLETED"
    assert by_run.output == by_runner.output == by_orchestra.output == started.output
    assert by_runner.step("a").status == "COMPLETED"


async def _started(runtime: Runtime, flow: llmflow.Flow) -> llmflow.Run:
    handle = await llmflow.start(flow, {"text": "hi"}, runtime=runtime)
    return await handle.wait()


def test_a_run_reads_by_superoptix_keys_and_its_facade_s_additions(runtime: Runtime) -> None:
    flow = llmflow.Flow.model_validate(FLOW)
    res = llmflow.Orchestra({"echo": flow}, runtime=runtime).run_pipeline_sync("hi", ["echo"])
    assert res["success"] is True and res["run_id"] == res.id and res["output"] == res.output
    assert res["steps"][0]["agent"] == "echo"  # the orchestra's per-agent results
    assert "steps" in res and "nothing" not in res and res.get("nothing", 7) == 7
    d = json.loads(json.dumps(res.to_dict(), default=str))
    assert set(d) == {
        "status",
        "success",
        "output",
        "outputs",
        "error",
        "duration",
        "run_id",
        "usage",
        "steps",
    }


def test_a_batch_from_the_runner_gives_runs_in_input_order(runtime: Runtime) -> None:
    flow = llmflow.Flow.model_validate(FLOW)
    results = llmflow.Runner(flow, runtime=runtime).run_batch_sync(["a", "b", "c"], max_concurrent=2)
    assert [type(r) for r in results] == [llmflow.Run] * 3
    assert [r["success"] for r in results] == [True] * 3
    assert len({r.run_id for r in results}) == 3


def test_the_single_output_rule_every_facade_uses() -> None:
    from llmflow.sdk.result import only_value, single_output

    assert single_output({"result": 1, "other": 2}) == 1  # 'result' wins
    assert single_output({"answer": "x"}) == "x"  # the only value
    assert single_output({"a": 1, "b": 2}) == {"a": 1, "b": 2}  # else all of them
    assert single_output({}) is None and single_output(None) is None
    assert only_value({"k": [1]}) == [1] and only_value("text") == "text"
    assert only_value({"a": 1, "b": 2}) == {"a": 1, "b": 2}
