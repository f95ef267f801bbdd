"""Recorded event logs (tests/engine/golden) still fold to the same run state, and the same
flows run today still emit them (the wire format stays as it is)."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest

from llmflow.engine.events import NewEvent
from llmflow.engine.scheduler import plan
from llmflow.engine.state import fold, new_state
from llmflow.model.loader import parse_flow_text
from llmflow.model.spec import Flow
from llmflow.runtime import RunRequest, build_runtime
from llmflow.store.memory import MemoryStore

from .make_golden import FLOWS

GOLDEN = sorted((Path(__file__).parent / "golden").glob("*.json"))


@pytest.mark.parametrize("path", GOLDEN, ids=[p.stem for p in GOLDEN])
def test_golden_log_replays_to_the_recorded_state(path):
    g = json.loads(path.read_text())
    flow = Flow.model_validate(g["flow"])
    events = [
        NewEvent(e["type"], e["message"], e["step_id"], e["unit"], e["attempt"], e["payload"])
        for e in g["events"]
    ]
    assert [e["seq"] for e in g["events"]] == list(range(1, len(events) + 1))
    st = fold(new_state("golden", flow, g["inputs"]), events)
    assert str(st.status) == g["expected"]["status"]
    assert {k: str(n.status) for k, n in st.nodes.items()} == g["expected"]["steps"]
    assert st.outputs == g["expected"]["outputs"]
    assert plan(st, 0.0) == []  # a finished run asks for nothing more


def test_there_are_golden_logs():
    assert len(GOLDEN) >= 4 and {p.stem for p in GOLDEN} == set(FLOWS)


# payload fields whose values depend on the machine or the clock: their presence is part of
# the wire, their values are not
_VOLATILE = {"owner", "duration", "elapsed", "at", "deadline", "timeout_at", "abs_path", "created_at"}
_SECONDS = re.compile(r"\b\d+\.\d+s\b")


def _wire(e: dict) -> tuple:
    payload = {k: ("<volatile>" if k in _VOLATILE else v) for k, v in (e["payload"] or {}).items()}
    message = _SECONDS.sub("<t>s", re.sub(r"/\S*/workspace/", "<workspace>/", e["message"] or ""))
    return (e["type"], message, e["step_id"], e["unit"], e["attempt"], payload)


@pytest.mark.parametrize("name", sorted(FLOWS))
def test_a_golden_flow_run_today_keeps_the_recorded_wire(name, tmp_path):
    """The wire stays as it is: run today, each golden flow emits the recorded events in the
    recorded order, with the same messages, ids and payload values. A payload may have gained
    fields since it was recorded (additive: readers of the old fields keep working), never
    lost or changed one."""
    text, inputs, models = FLOWS[name]
    g = json.loads((Path(__file__).parent / "golden" / f"{name}.json").read_text())
    rt = build_runtime(env={"LLMFLOW_MODEL": "fake:"}, home=tmp_path, store=MemoryStore())
    try:
        st = asyncio.run(rt.run(parse_flow_text(text), inputs, RunRequest(models=models)))
        today = [_wire(e.to_dict()) for e in rt.store.events(st.run_id)]
    finally:
        rt.close()
    recorded = [_wire(e) for e in g["events"]]
    assert [w[:5] for w in today] == [w[:5] for w in recorded]
    for new, old in zip(today, recorded, strict=True):
        assert {k: new[5].get(k, "<missing>") for k in old[5]} == old[5], (old[0], old[2], old[4])
    assert str(st.status) == g["expected"]["status"]
