"""The native SSE stream on a real Uvicorn: frames, keep-alives, resume from Last-Event-ID."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .helpers import HUMAN_FLOW, SLOW, SLOW_FLOW, LiveServer, both_stores, write_flow

pytestmark = pytest.mark.slow


def frames(r: httpx.Response, comments: list[str] | None = None) -> Iterator[dict[str, Any]]:
    cur: dict[str, Any] = {}
    for line in r.iter_lines():
        if line.startswith(":"):
            if comments is not None:
                comments.append(line)
        elif line.startswith("id: "):
            cur["id"] = int(line[4:])
        elif line.startswith("event: "):
            cur["event"] = line[7:]
        elif line.startswith("data: "):
            cur["data"] = json.loads(line[6:])
        elif line == "" and "data" in cur:
            yield cur
            cur = {}


@pytest.fixture
def srv(make_app: Any, home: Path) -> Iterator[LiveServer]:
    write_flow(home, "slow", SLOW_FLOW)
    write_flow(home, "ask", HUMAN_FLOW)
    with LiveServer(make_app()) as s:
        yield s


@both_stores
def test_stream_resumes_from_last_event_id_with_nothing_lost_or_repeated(srv: LiveServer) -> None:
    with srv.client() as c:
        rid = c.post("/api/v1/runs", json={"flow": "slow", "options": {"models": SLOW}}).json()["id"]
        first: list[dict[str, Any]] = []
        with c.stream("GET", f"/api/v1/runs/{rid}/events/stream") as r:
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
            for f in frames(r):
                first.append(f)
                if f["event"] == "STEP_COMPLETED":
                    break  # the client drops mid-run
        assert all(f["id"] == f["data"]["seq"] and f["event"] == f["data"]["type"] for f in first)
        with c.stream(
            "GET", f"/api/v1/runs/{rid}/events/stream", headers={"Last-Event-ID": str(first[-1]["id"])}
        ) as r:
            rest = list(frames(r))  # the stream ends after the run's last event
        assert rest[-1]["event"] == "RUN_COMPLETED"
        seqs = [f["id"] for f in first + rest]
        assert seqs == list(range(1, len(seqs) + 1))
        stored = c.get(f"/api/v1/runs/{rid}/events").json()["events"]
        assert [f["data"] for f in first + rest] == stored
        # ?after= works like Last-Event-ID; the header wins when both are given
        with c.stream("GET", f"/api/v1/runs/{rid}/events/stream", params={"after": len(seqs) - 2}) as r:
            assert [f["id"] for f in frames(r)] == seqs[-2:]
        with c.stream(
            "GET",
            f"/api/v1/runs/{rid}/events/stream",
            params={"after": 0},
            headers={"Last-Event-ID": str(len(seqs) - 1)},
        ) as r:
            assert [f["id"] for f in frames(r)] == seqs[-1:]


def test_idle_streams_send_keepalives(srv: LiveServer) -> None:
    with srv.client() as c:
        rid = c.post("/api/v1/runs", json={"flow": "ask"}).json()["id"]
        comments: list[str] = []
        with c.stream("GET", f"/api/v1/runs/{rid}/events/stream") as r:
            lines = r.iter_lines()
            while not any('"HUMAN_INPUT_REQUESTED"' in x for x in comments):
                comments.append(next(lines))
            # waiting on a person: the stream stays open, with keep-alives
            while comments.count(": keepalive") < 2:
                comments.append(next(lines))
        assert c.post(f"/api/v1/runs/{rid}/cancel").json()["status"] == "CANCELED"
