"""The SuperOptiX-style Runner: one flow, agent or callable; run, run_batch, statistics."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from llmflow import Runner
from llmflow.errors import RunStateError
from llmflow.runtime import build_runtime


@pytest.fixture
def rt(tmp_path: Path) -> Any:
    rt = build_runtime(env={"LLMFLOW_BLOCK_REAL_MODELS": "1"}, home=tmp_path)
    yield rt
    rt.close()


def test_an_agent_config_runs_a_query_as_a_recorded_run(rt: Any) -> None:
    runner = Runner({"model": "fake:", "system": "You summarise."}, runtime=rt)
    res = runner.run_sync("The quick brown fox")
    assert res["status"] == "COMPLETED" and res["success"] and res["error"] is None
    assert res["output"].startswith("fake answer to: The quick brown fox")
    assert res["usage"]["input_tokens"] > 0 and res["duration"] is not None
    rec = rt.get(res["run_id"])
    assert rec.run_type == "runner" and rec.inputs == {"input": "The quick brown fox"}


def test_a_flow_file_takes_a_query_for_its_main_input_or_a_dict(rt: Any, tmp_path: Path) -> None:
    f = tmp_path / "f.yaml"
    f.write_text(
        "name: f\ninputs: {text: string, tone: {type: string, default: calm}}\nsteps:\n  - id: a\n    llm: {model: 'fake:', prompt: '{{ inputs.tone }}: {{ inputs.text }}'}\n"
    )
    runner = Runner(str(f), runtime=rt)
    assert "calm: hello" in runner.run_sync("hello")["output"]
    assert "loud: hi" in runner.run_sync({"text": "hi", "tone": "loud"})["output"]
    assert "loud: kw" in runner.run_sync(text="kw", tone="loud")["output"]
    two = tmp_path / "two.yaml"
    two.write_text(
        "name: two\ninputs: {a: string, b: string}\nsteps:\n  - id: s\n    llm: {model: 'fake:', prompt: '{{ inputs.a }}{{ inputs.b }}'}\n"
    )
    with pytest.raises(RunStateError, match="several inputs"):
        Runner(str(two), runtime=rt).run_sync("x")


def test_plain_and_async_callables_are_agents(rt: Any) -> None:
    async def shout(x: str) -> str:
        return x.upper() + "!"

    assert Runner(lambda x: len(x), runtime=rt, name="length").run_sync("four")["output"] == 4
    assert Runner(shout, runtime=rt).run_sync("hey")["output"] == "HEY!"


def test_run_batch_keeps_input_order_and_records_a_batch(rt: Any) -> None:
    def maybe(x: str) -> str:
        if x == "bad":
            raise ValueError("no good")
        return x * 2

    runner = Runner(maybe, runtime=rt)
    res = runner.run_batch_sync(["a", "bad", "c", "a"], max_concurrent=2)
    assert [r["output"] for r in res] == ["aa", None, "cc", "aa"]
    assert [r["success"] for r in res] == [True, False, True, True]
    assert "no good" in res[1]["error"]
    batch = rt.store.list_batches()[0]
    assert batch.total == 4 and rt.store.batch_summary(batch.id)["statuses"] == {"COMPLETED": 3, "FAILED": 1}
    assert runner.run_batch_sync([]) == []


def test_execution_stats_count_every_run_until_reset(rt: Any) -> None:
    runner = Runner({"model": "fake:"}, runtime=rt)
    runner.run_sync("one")
    runner.run_batch_sync(["two", "three"], max_concurrent=2)
    s = runner.get_execution_stats()
    assert (s["total_runs"], s["successful_runs"], s["failed_runs"], s["success_rate"]) == (3, 3, 0, 1.0)
    assert s["avg_response_time"] > 0 and s["total_tokens"] > 0
    assert s["min_response_time"] <= s["avg_response_time"] <= s["max_response_time"]
    runner.reset_stats()
    assert runner.get_execution_stats()["total_runs"] == 0


def test_async_methods_and_sync_twins_work_inside_a_running_event_loop(rt: Any) -> None:
    runner = Runner({"model": "fake:"}, runtime=rt)

    async def main() -> tuple[str, str, int]:
        a = await runner.run("awaited")
        b = runner.run_sync("sync inside the loop")  # a notebook cell does this
        c = await runner.run_batch(["x", "y"], max_concurrent=2)
        return a["status"], b["status"], len(c)

    assert asyncio.run(main()) == ("COMPLETED", "COMPLETED", 2)


def test_a_runner_owns_the_runtime_it_builds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with Runner({"model": "fake:"}, home=tmp_path) as runner:
        assert runner.run_sync("x")["success"]
    assert (tmp_path / ".llmflow" / "llmflow.db").exists()
