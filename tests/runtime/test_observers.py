"""Observers: every durable event reaches a plain observer; one that says which runs it
wants (``wants(record)``, like the results-file writer) gets only those runs' events."""

from __future__ import annotations

import asyncio
from typing import Any

import llmflow
from llmflow.engine.events import Event
from llmflow.runtime import Runtime

FLOW = {
    "name": "echo",
    "inputs": {"text": {"type": "string"}},
    "steps": [{"id": "a", "kind": "llm", "prompt": "{{ inputs.text }}", "model": "fake:"}],
}


class Picky:
    def __init__(self, flow_name: str) -> None:
        self.flow_name = flow_name
        self.seen: list[Event] = []

    def wants(self, rec: Any) -> bool:
        return rec.flow_name == self.flow_name

    def __call__(self, e: Event) -> None:
        self.seen.append(e)


def test_an_observer_gets_only_the_runs_it_wants(runtime: Runtime) -> None:
    plain: list[Event] = []
    picky = Picky("other")
    runtime.observers += [plain.append, picky]
    flow = llmflow.Flow.model_validate(FLOW)
    st = asyncio.run(runtime.run(flow, {"text": "hi"}))
    assert str(st.status) == "COMPLETED"
    assert [e.type for e in plain][-1] == "RUN_COMPLETED" and len(plain) == len(
        runtime.store.events(st.run_id)
    )
    assert picky.seen == []  # not its flow
    other = llmflow.Flow.model_validate({**FLOW, "name": "other"})
    st2 = asyncio.run(runtime.run(other, {"text": "hi"}))
    assert [e.run_id for e in picky.seen] == [st2.run_id] * len(runtime.store.events(st2.run_id))
