"""The native API's conventions: ISO 8601 UTC times in JSON answers, SSE and WebSocket frames
(durations stay seconds), and OpenAPI operation ids named after what they do."""

from __future__ import annotations

import json
import re

from fastapi.testclient import TestClient

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def test_run_answers_carry_iso_times(client: TestClient) -> None:
    run = client.post("/api/v1/runs", json={"flow": "hello", "inputs": {"prompt": "hi"}, "wait": True}).json()
    assert run["status"] == "COMPLETED"
    for key in ("created_at", "started_at", "ended_at"):
        assert ISO.match(run[key]), (key, run[key])
    step = run["steps"][0]
    assert ISO.match(step["started_at"]) and ISO.match(step["attempts"][0]["ended_at"])
    assert isinstance(run["duration"], float) and isinstance(step["duration"], float)
    listed = client.get("/api/v1/runs").json()["runs"][0]
    assert ISO.match(listed["created_at"]) and ISO.match(listed["ended_at"])
    events = client.get(f"/api/v1/runs/{run['id']}/events").json()["events"]
    assert all(ISO.match(e["ts"]) for e in events)
    project = client.post("/api/v1/projects", json={"name": "p", "local_path": "p"}).json()
    assert ISO.match(project["created_at"])


def test_sse_frames_carry_iso_times(live) -> None:
    with live.client() as c:
        run = c.post("/api/v1/runs", json={"flow": "hello", "inputs": {"prompt": "hi"}, "wait": True}).json()
        with c.stream("GET", f"/api/v1/runs/{run['id']}/events/stream") as r:
            for line in r.iter_lines():
                if line.startswith("data: "):
                    assert ISO.match(json.loads(line[6:])["ts"])
                    break


def test_websocket_event_frames_carry_iso_times(live) -> None:
    from websockets.sync.client import connect

    with live.client() as c:
        run = c.post("/api/v1/runs", json={"flow": "hello", "inputs": {"prompt": "hi"}, "wait": True}).json()
    with connect(f"{live.ws_url}/api/v1/runs/{run['id']}/ws", open_timeout=5) as ws:
        while True:
            frame = json.loads(ws.recv(timeout=10))
            if frame.get("type") == "event":
                assert ISO.match(frame["event"]["ts"])
                break


def test_operation_ids_are_named_and_unique(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    ids = [op["operationId"] for ops in spec["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids))
    assert not [i for i in ids if "_api_v1_" in i or i.endswith(("_get", "_post", "_delete"))]
    by_route = {(m, p): op["operationId"] for p, ops in spec["paths"].items() for m, op in ops.items()}
    assert by_route[("post", "/api/v1/runs")] == "create_run"
    assert by_route[("get", "/api/v1/batches/{batch_id}")] == "show_batch"
    assert by_route[("post", "/runs")] == "agent_runner_create_run"
    assert by_route[("post", "/flow/{flow_name}")] == "buttermilk_post_flow"
