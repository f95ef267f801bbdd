"""A model call cut short by the step's timeout is told apart from a cancel: the runner
cancels a unit's task with its Cancel's reason, and the gateway records LLM_ERROR (kind
``timeout``) only for a step timeout (issue 15's timeline: LLM_ERROR before the step fails)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from llmflow.engine.events import EventType as E
from llmflow.engine.inputs import STEP_TIMED_OUT, step_timeout
from llmflow.runtime import build_runtime

ENV = {"LLMFLOW_MODEL": "fake:", "LLMFLOW_BLOCK_REAL_MODELS": "1"}


class Ctx:
    """What the gateway reads of a step's context: its timeout and where events go."""

    def __init__(self) -> None:
        self.step = SimpleNamespace(timeout=None)
        self.events: list[tuple[str, str, dict[str, Any]]] = []

    def event(self, type: str, message: str = "", **payload: Any) -> None:
        self.events.append((type, message, payload))


@pytest.mark.parametrize(
    ("reason", "recorded"),
    [
        (f"{STEP_TIMED_OUT}2s", [("LLM error from fake:?latency=60: step timed out after 2s", "timeout")]),
        ("run canceled", []),
        (None, []),
    ],
)
def test_only_a_step_timeout_records_llm_error_when_it_cuts_a_call(tmp_path: Path, reason, recorded):
    rt = build_runtime(env=ENV, home=tmp_path)
    ctx = Ctx()

    async def go() -> None:
        call = asyncio.create_task(
            rt.gateway.generate(  # type: ignore[union-attr]
                ctx,  # type: ignore[arg-type]
                model="fake:?latency=60",
                model_source="test",
                messages=[("user", "hi")],
                params={},
            )
        )
        while not any(t == E.LLM_GENERATING for t, _, _ in ctx.events):
            await asyncio.sleep(0)
        await asyncio.sleep(0)  # the call is waiting on the model now
        call.cancel(reason)
        with pytest.raises(asyncio.CancelledError):
            await call

    try:
        asyncio.run(go())
        errors = [(m, p["kind"]) for t, m, p in ctx.events if t == E.LLM_ERROR]
        assert errors == recorded
    finally:
        rt.close()


def test_step_timeout_reads_the_reason_of_a_cancellation():
    assert step_timeout(asyncio.CancelledError(f"{STEP_TIMED_OUT}1.5s")) == "step timed out after 1.5s"
    assert step_timeout(asyncio.CancelledError("run canceled")) is None
    assert step_timeout(asyncio.CancelledError()) is None
    assert step_timeout(asyncio.CancelledError(3)) is None
