"""Recorded event logs (tests/engine/golden) still fold to the same run state."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmflow.engine.events import NewEvent
from llmflow.engine.scheduler import plan
from llmflow.engine.state import fold, new_state
from llmflow.model.spec import Flow

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
    assert len(GOLDEN) >= 2
