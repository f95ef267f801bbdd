"""GET /api/v1/events/stream (llmflow.server.live, added for the console): one SSE stream of
every run's changes, resumable with Last-Event-ID."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from llmflow.engine.events import Event
from llmflow.server.live import changed_runs, head_id

from .helpers import ConsoleServer, make_home


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleServer]:
    with ConsoleServer(make_home(tmp_path_factory.mktemp("home"))) as s:
        yield s


def frames(resp: httpx.Response) -> Iterator[dict[str, Any]]:
    """Parsed SSE frames: {"event", "id", "data"}."""
    cur: dict[str, Any] = {}
    data: list[str] = []
    for line in resp.iter_lines():
        if not line:
            if data or cur:
                yield {**cur, "data": json.loads("\n".join(data)) if data else None}
            cur, data = {}, []
        elif line.startswith(":"):
            continue
        else:
            k, _, v = line.partition(":")
            v = v[1:] if v.startswith(" ") else v
            if k == "data":
                data.append(v)
            else:
                cur[k] = v


def collect_until(
    server: ConsoleServer,
    stop: Any,
    headers: dict[str, str] | None = None,
    params: dict[str, Any] | None = None,
    on_hello: Any = None,
) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    with httpx.Client(base_url=server.url, timeout=httpx.Timeout(30, read=30)) as c:
        with c.stream("GET", "/api/v1/events/stream", headers=headers or {}, params=params or {}) as resp:
            assert resp.status_code == 200
            assert resp.headers["content-type"].startswith("text/event-stream")
            for fr in frames(resp):
                got.append(fr)
                if fr.get("event") == "hello" and on_hello:
                    on_hello(fr)
                if stop(fr):
                    return got
    return got


def test_a_new_run_is_followed_from_queued_to_completed(server: ConsoleServer) -> None:
    started: list[str] = []

    def start(_: dict[str, Any]) -> None:
        started.append(server.start_run("note", {"topic": "live"}))

    got = collect_until(
        server,
        lambda fr: (
            fr.get("event") == "run" and fr["data"]["id"] in started and fr["data"]["status"] == "COMPLETED"
        ),
        on_hello=start,
    )
    hello = got[0]
    assert hello["event"] == "hello" and hello["data"]["worker"]["running"] is True
    runs = [fr for fr in got if fr.get("event") == "run" and fr["data"]["id"] == started[0]]
    assert runs[-1]["data"]["flow"] == "note" and runs[-1]["data"]["usage"]["output_tokens"] > 0
    ids = [int(fr["id"]) for fr in got if fr.get("id")]
    assert ids == sorted(ids) and ids[-1] > int(hello["data"]["last_id"])


def test_last_event_id_replays_what_changed_meanwhile(server: ConsoleServer) -> None:
    before = head_id(server.app.state.services.store)
    run_id = server.start_run("note", {"topic": "offline"})
    server.wait_for(run_id)
    got = collect_until(
        server,
        lambda fr: (
            fr.get("event") == "run" and fr["data"]["id"] == run_id and fr["data"]["status"] == "COMPLETED"
        ),
        headers={"Last-Event-ID": str(before)},
    )
    assert got[0]["data"]["last_id"] == before


def test_head_id_finds_the_newest_event(server: ConsoleServer) -> None:
    store = server.app.state.services.store
    server.wait_for(server.start_run("note", {"topic": "head"}))
    every, after = [], 0
    while batch := store.events_since(after, 1000):
        every += batch
        after = batch[-1].id
    assert head_id(store) == every[-1].id


def test_token_chunks_alone_make_no_run_frame() -> None:
    ev = lambda run, t: Event(run_id=run, seq=1, type=t, ts=0.0)  # noqa: E731
    assert changed_runs([ev("a", "LLM_TOKENS"), ev("b", "STEP_STARTED"), ev("a", "LLM_TOKENS")]) == ["b"]
    assert changed_runs([ev("a", "STEP_STARTED"), ev("b", "RUN_CREATED"), ev("a", "LLM_DONE")]) == ["b", "a"]


def test_the_stream_needs_the_token_like_every_route(tmp_path: Path) -> None:
    with ConsoleServer(make_home(tmp_path), LLMFLOW_API_TOKEN="tok") as s:
        with httpx.Client(base_url=s.url, timeout=10) as c:
            assert c.get("/api/v1/events/stream").status_code == 401
            with c.stream("GET", "/api/v1/events/stream", headers={"Authorization": "Bearer tok"}) as resp:
                assert resp.status_code == 200
                first = next(frames(resp))
                assert first["event"] == "hello"
