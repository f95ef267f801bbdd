"""Resource limits through the service: a posted template cannot freeze the server, and
flows past the size limits are refused with a 422 that names the setting."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from .helpers import LiveServer, wait_until

# a 150-byte template like issue 14's, which blocked every request for 32 s and then
# COMPLETED; it produces (almost) no output, so only the time cap can stop it
NESTED_RANGES = "{% for a in range(9999) %}{% for b in range(9999) %}{% for c in range(9999) %}{% if c < 0 %}x{% endif %}{% endfor %}{% endfor %}{% endfor %}"


@pytest.mark.slow
def test_a_runaway_template_neither_freezes_the_server_nor_completes(make_app: Any) -> None:
    assert len(NESTED_RANGES) <= 150
    doc = {"name": "freeze", "steps": [{"id": "say", "llm": {"prompt": NESTED_RANGES}}]}
    with (
        LiveServer(make_app(env={"LLMFLOW_TEMPLATE_TIMEOUT": "6"})) as srv,
        httpx.Client(base_url=srv.url, timeout=5) as c,
    ):
        rid = c.post("/api/v1/runs", json={"document": doc}).json()["id"]
        wait_until(
            lambda: c.get(f"/api/v1/runs/{rid}").json()["status"] == "RUNNING", 30, what="the run to start"
        )
        # while the template renders, the server keeps answering: each answer below arrives
        # while the run is still RUNNING (rendering on the event loop, they would all wait)
        answered_while_running = 0
        for _ in range(5):
            assert c.get("/health").json() == {"status": "ok"}
            assert c.get("/api/v1/flows").status_code == 200
            if c.get(f"/api/v1/runs/{rid}").json()["status"] == "RUNNING":
                answered_while_running += 1
        assert answered_while_running >= 3
        v = wait_until(
            lambda: (r := c.get(f"/api/v1/runs/{rid}").json())["status"] not in ("QUEUED", "RUNNING") and r,
            60,
            what="the run to end",
        )
    assert v["status"] == "FAILED"
    err = v["steps"][0]["error"]
    assert "template took too long" in err and "LLMFLOW_TEMPLATE_TIMEOUT" in err, err


def test_a_for_each_over_a_huge_range_fails_at_the_template(client: Any) -> None:
    doc = {
        "name": "amp",
        "steps": [{"id": "each", "llm": {"prompt": "{{ item }}"}, "for_each": "{{ range(100000) | list }}"}],
    }
    v = client.post("/api/v1/runs", json={"document": doc, "wait": True}).json()
    assert v["status"] == "FAILED"
    assert (
        "range() of 100000 items is longer than 10000 (LLMFLOW_TEMPLATE_MAX_RANGE)" in v["steps"][0]["error"]
    )


def test_flows_past_the_limits_are_a_422_naming_the_setting(make_app: Any) -> None:
    from fastapi.testclient import TestClient

    many = {"name": "many", "steps": [{"id": f"s{i}", "llm": "x"} for i in range(30)]}
    deep: dict = {"id": "leaf", "llm": "x"}
    for i in range(12):
        deep = {"id": f"p{i}", "parallel": [deep]}
    with TestClient(
        make_app(
            env={"LLMFLOW_MAX_STEPS": "20", "LLMFLOW_MAX_STEP_DEPTH": "8", "LLMFLOW_MAX_FLOW_BYTES": "3000"}
        )
    ) as c:
        r = c.post("/api/v1/runs", json={"document": many})
        assert r.status_code == 422 and "LLMFLOW_MAX_STEPS" in r.json()["detail"][0]["msg"]
        r = c.post("/api/v1/runs", json={"document": {"name": "deep", "steps": [deep]}})
        assert r.status_code == 422 and "LLMFLOW_MAX_STEP_DEPTH" in r.json()["detail"][0]["msg"]
        text = "name: big\nsteps:\n" + "".join(f"  - {{id: s{i}, llm: '{'x' * 100}'}}\n" for i in range(28))
        r = c.post("/api/v1/runs", json={"document": text})
        assert r.status_code == 422 and "LLMFLOW_MAX_FLOW_BYTES" in r.json()["detail"][0]["msg"]
