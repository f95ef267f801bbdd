"""The template context keeps each step's view until that step changes (engine/context.py):
contexts built from the cached views equal the ones built from scratch after every event,
and a context already handed to a unit does not change when later events are folded."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from llmflow.engine.context import _build_view, template_context
from llmflow.engine.events import NewEvent
from llmflow.engine.state import RunState, apply, new_state
from llmflow.model.spec import Flow

GOLDEN = sorted((Path(__file__).parent / "golden").glob("*.json"))


def _fresh_steps(st: RunState, node_id: str | None) -> dict[str, Any]:
    """The ``steps`` namespace built from scratch (what every context used to build)."""
    out = {nid: _build_view(n) for nid, n in st.nodes.items() if n.scope is None}
    scope = st.nodes[node_id].scope if node_id and node_id in st.nodes else None
    if scope:
        for nid, n in st.nodes.items():
            if nid.startswith(scope + "/"):
                out[n.short_id] = _build_view(n)
    return out


@pytest.mark.parametrize("path", GOLDEN, ids=[p.stem for p in GOLDEN])
def test_cached_views_equal_fresh_ones_after_every_event(path: Path) -> None:
    g = json.loads(path.read_text())
    st = new_state("golden", Flow.model_validate(g["flow"]), g["inputs"])
    handed: list[tuple[dict[str, Any], dict[str, Any]]] = []  # (context steps, its copy then)
    for e in g["events"]:
        apply(st, NewEvent(e["type"], e["message"], e["step_id"], e["unit"], e["attempt"], e["payload"]))
        for nid in [None, *st.nodes]:
            steps = template_context(st, nid)["steps"]
            assert steps == _fresh_steps(st, nid), (e["type"], e["step_id"], nid)
        steps = template_context(st, e["step_id"])["steps"]
        handed.append((steps, copy.deepcopy(steps)))
    assert len(handed) == len(g["events"]) > 10
    for steps, then in handed:  # nothing folded later changed what a unit was given
        assert steps == then


def test_a_step_change_rebuilds_only_its_view() -> None:
    flow = Flow.model_validate(
        {
            "name": "v",
            "steps": [
                {"id": "a", "python": {"function": "f"}},
                {"id": "b", "python": {"function": "f"}},
            ],
        }
    )
    st = new_state("r", flow, {})
    before = template_context(st, "b")["steps"]
    apply(st, NewEvent("STEP_STARTED", "", "a", payload={"units": [{"key": ""}]}))
    apply(st, NewEvent("ATTEMPT_STARTED", "", "a", None, 1, payload={}))
    apply(st, NewEvent("ATTEMPT_COMPLETED", "", "a", None, 1, payload={"output": "x"}))
    apply(st, NewEvent("STEP_COMPLETED", "", "a", payload={"output": "x"}))
    after = template_context(st, "b")["steps"]
    assert before["a"]["output"] is None and before["a"]["status"] == "PENDING"
    assert after["a"]["output"] == "x" and after["a"]["status"] == "COMPLETED"
    assert after["b"] is before["b"]  # b did not change: its view is reused
    assert after is not before  # each context has a namespace of its own
