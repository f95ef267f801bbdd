"""Buttermilk's remaining routes on a real Uvicorn: a flow's records, monitoring, pull_task
(issue 15, item 14)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from server.helpers import LiveServer, write_flow

TOX = """\
name: tox
data:
  tox_train: {type: file, path: RECORDS}
inputs:
  text: {type: string, default: x}
steps:
  - {id: a, llm: "Is it toxic? {{ inputs.text }}"}
"""
TWO = TOX.replace("name: tox", "name: two").replace(
    "  tox_train: {type: file, path: RECORDS}\n",
    "  a: {type: file, path: RECORDS}\n  b: {type: file, path: RECORDS}\n",
)


def test_records_monitoring_and_pull_task(make_app: Any, home: Path, tmp_path: Path) -> None:
    records = tmp_path / "tox_train.jsonl"
    records.write_text("".join(json.dumps({"record_id": f"r{i}", "text": f"t{i}"}) + "\n" for i in range(3)))
    write_flow(home, "tox", TOX, RECORDS=str(records))
    write_flow(home, "two", TWO, RECORDS=str(records))
    with LiveServer(make_app(worker_enabled=False)) as srv, srv.client() as c:
        rows = c.get("/api/flows/tox/records").json()
        assert [r["record_id"] for r in rows] == ["r0", "r1", "r2"] and rows[0]["text"] == "t0"
        assert c.get("/api/flows/tox/datasets/tox_train/records").json() == rows
        r = c.get("/api/flows/two/records")
        assert (
            r.status_code == 400
            and r.json()["available_datasets"] == ["a", "b"]
            and r.json()["error"] == "dataset parameter required"
        )
        assert c.get("/api/flows/two/records", params={"dataset": "b"}).json() == rows
        assert c.get("/api/flows/two/datasets/nope/records").status_code == 404
        health = c.get("/monitoring/health").json()
        assert (
            health["overall_status"] in ("healthy", "degraded")
            and health["components"]["store"]["status"] == "healthy"
        )
        # pull_task: the worker is off; a queued job runs when pulled
        rid = c.post("/api/v1/runs", json={"flow": "tox", "inputs": {"text": "hi"}}).json()["id"]
        assert c.get("/monitoring/metrics").json()["runs"]["by_status"]["QUEUED"] == 1
        pulled = c.get("/api/pull_task").json()
        assert pulled["processed"] == [rid] and c.get(f"/api/v1/runs/{rid}").json()["status"] == "COMPLETED"
        assert c.get("/api/pull_task").json()["status"] == "empty"
        assert c.get("/monitoring/metrics").json()["runs"]["by_status"]["COMPLETED"] == 1
