"""WebSockets on a real Uvicorn: Buttermilk sessions (human in the loop, early answers,
reconnects) and the native run socket (replay then live, control)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from .helpers import HUMAN_FLOW, SLOW, SLOW_FLOW, LiveServer, both_stores, wait_until, write_flow

pytestmark = pytest.mark.slow


@pytest.fixture
def srv(make_app: Any, home: Path) -> Iterator[LiveServer]:
    write_flow(home, "ask", HUMAN_FLOW)
    write_flow(home, "slow", SLOW_FLOW)
    with LiveServer(make_app()) as s:
        yield s


def recv_until(
    ws: ClientConnection, pred: Callable[[dict[str, Any]], bool], timeout: float = 30
) -> list[dict[str, Any]]:
    """Frames up to and including the first one ``pred`` accepts."""
    out: list[dict[str, Any]] = []
    while True:
        frame = json.loads(ws.recv(timeout=timeout))
        out.append(frame)
        if pred(frame):
            return out


def is_end(f: dict[str, Any]) -> bool:
    return f["type"] == "system_message" and f.get("content") == "flow_completed"


def is_question(f: dict[str, Any]) -> bool:
    return f["type"] == "ui_message"


# -- Buttermilk sessions ---------------------------------------------------------------------------
@both_stores
def test_human_in_the_loop_with_an_early_answer(srv: LiveServer) -> None:
    sid = httpx.get(f"{srv.url}/api/session").json()["session_id"]
    with connect(f"{srv.ws_url}/ws/{sid}") as ws:
        ws.send(json.dumps({"type": "run_flow", "flow": "ask", "topic": "tea"}))
        # the confirmation is sent before the question exists: it is kept, not lost
        ws.send(json.dumps({"type": "manager_response", "confirm": True}))
        frames = recv_until(ws, lambda f: is_question(f) and "name" in f["content"].lower())
        ws.send(json.dumps({"type": "manager_response", "content": "Ada"}))
        frames += recv_until(ws, is_end)
    types = [f["type"] for f in frames]
    assert "chat_message" in types and "system_update" in types and "user_message" not in types  # no echo
    chat = next(f for f in frames if f["type"] == "chat_message")
    assert chat["agent_info"]["step_id"] == "draft" and chat["agent_info"]["model"] == "fake:"
    q = next(f for f in frames if is_question(f))
    assert (
        q["options"] == ["confirm", "reject"]
        and q["outputs"]["options"] == ["confirm", "reject"]
        and q["message_id"]
    )
    end = frames[-1]
    assert end["status"] == "COMPLETED" and end["outputs"]["outputs"] == {"approved": True, "name": "Ada"}
    assert [f["seq"] for f in frames] == list(range(1, len(frames) + 1))
    st = httpx.get(f"{srv.url}/api/session/{sid}/status").json()
    assert st["status"] == "completed" and st["flow_name"] == "ask"


def test_reconnecting_clients_get_every_frame_they_missed(make_app: Any, home: Path) -> None:
    write_flow(home, "slow", SLOW_FLOW)
    with LiveServer(make_app(env={"LLMFLOW_MODEL": SLOW})) as srv:
        sid = httpx.get(f"{srv.url}/api/session").json()["session_id"]
        with connect(f"{srv.ws_url}/ws/{sid}") as ws:
            ws.send(json.dumps({"type": "run_flow", "flow": "slow", "parameters": {"text": "go"}}))
            seen = recv_until(ws, lambda f: f.get("event_type") == "STEP_STARTED")
        # frames keep coming while nobody listens; a new socket asks for what follows seq N
        wait_until(
            lambda: httpx.get(f"{srv.url}/api/session/{sid}/status").json()["frames"] > seen[-1]["seq"],
            what="frames produced while disconnected",
        )
        with connect(f"{srv.ws_url}/ws/{sid}?since={seen[-1]['seq']}") as ws:
            rest = recv_until(ws, is_end, timeout=60)
        seqs = [f["seq"] for f in seen + rest]
        assert seqs == list(range(1, len(seqs) + 1))  # no gap, no duplicate
        # ?since=0 asks for the whole session again
        with connect(f"{srv.ws_url}/ws/{sid}?since=0") as ws:
            again = recv_until(ws, is_end)
        assert [f["message_id"] for f in again] == [f["message_id"] for f in seen + rest]
        assert rest[-1]["status"] == "COMPLETED"


def test_an_answer_sent_before_the_flow_starts_is_kept(srv: LiveServer) -> None:
    with connect(f"{srv.ws_url}/ws") as ws:
        hello = json.loads(ws.recv(timeout=10))
        assert hello["content"] == "session_started" and hello["session_id"]
        # the topic is given, so the prompt has no input to go to: reported, not a crash
        ws.send(
            json.dumps({"type": "run_flow", "flow": "ask", "prompt": "p", "parameters": {"topic": "tea"}})
        )
        err = recv_until(ws, lambda f: f["type"] == "system_error")[-1]
        assert "prompt" in err["content"]
        ws.send(json.dumps({"type": "manager_response", "content": "yes"}))  # before any flow runs
    with connect(f"{srv.ws_url}/ws/{hello['session_id']}?since={err['seq']}") as ws:
        ws.send(json.dumps({"flow": "ask", "prompt": "coffee"}))  # untyped RunRequest; prompt -> topic
        got = recv_until(ws, lambda f: is_question(f) and "name" in f["content"].lower())
        ws.send(json.dumps({"type": "ui_message", "content": "Grace"}))
        got += recv_until(ws, is_end)
    assert got[-1]["outputs"]["outputs"] == {"approved": True, "name": "Grace"}


def test_bad_and_unknown_messages_are_reported_not_fatal(srv: LiveServer) -> None:
    with connect(f"{srv.ws_url}/ws") as ws:
        json.loads(ws.recv(timeout=10))
        # not JSON, unknown types, non-objects: logged and ignored, as Buttermilk does
        ws.send("not json")
        ws.send(json.dumps({"type": "pull_tox"}))
        ws.send(json.dumps(["a list"]))
        ws.send(json.dumps({"type": "run_flow", "flow": "nope"}))
        err = json.loads(ws.recv(timeout=10))
        assert err["type"] == "system_error" and "nope" in err["content"]
        ws.send(json.dumps({"type": "run_flow", "flow": "hello", "prompt": "hi"}))
        frames = recv_until(ws, is_end)
        assert frames[-1]["status"] == "COMPLETED"


def test_halt_cancels_the_flow(srv: LiveServer) -> None:
    with connect(f"{srv.ws_url}/ws") as ws:
        json.loads(ws.recv(timeout=10))
        ws.send(json.dumps({"type": "run_flow", "flow": "ask"}))
        recv_until(ws, is_question)
        ws.send(json.dumps({"type": "manager_response", "halt": True}))
        end = recv_until(ws, is_end)[-1]
    assert end["status"] == "CANCELED"


def test_invalid_session_ids_are_refused(srv: LiveServer) -> None:
    with pytest.raises((ConnectionClosed, Exception)):
        with connect(f"{srv.ws_url}/ws/bad%20id!") as ws:
            ws.recv(timeout=5)


# -- native run socket ----------------------------------------------------------------------------
@both_stores
def test_run_socket_replays_then_follows_live_with_no_gap(
    srv: LiveServer, request: pytest.FixtureRequest
) -> None:
    c = srv.client()
    request.addfinalizer(c.close)
    rid = c.post("/api/v1/runs", json={"flow": "slow", "options": {"models": SLOW}}).json()["id"]
    wait_until(lambda: c.get(f"/api/v1/runs/{rid}").json()["status"] == "RUNNING", what="the run to start")
    with connect(f"{srv.ws_url}/api/v1/runs/{rid}/ws?after=2") as ws:
        frames = recv_until(ws, lambda f: f["type"] == "end", timeout=60)
    events = [f["event"] for f in frames if f["type"] == "event"]
    assert frames[-1]["status"] == "COMPLETED"
    stored = c.get(f"/api/v1/runs/{rid}/events").json()["events"]
    assert [e["seq"] for e in events] == [e["seq"] for e in stored[2:]]
    assert events == stored[2:]


def test_run_socket_answers_and_cancel(srv: LiveServer, request: pytest.FixtureRequest) -> None:
    c = srv.client()
    request.addfinalizer(c.close)
    rid = c.post("/api/v1/runs", json={"flow": "ask"}).json()["id"]
    with connect(f"{srv.ws_url}/api/v1/runs/{rid}/ws") as ws:
        ws.send(json.dumps({"type": "answer", "answer": "yes"}))  # early: kept for the first question
        acks = recv_until(ws, lambda f: f["type"] == "ack")
        assert acks[-1]["action"] == "answer"
        recv_until(
            ws,
            lambda f: (
                f["type"] == "event"
                and f["event"]["type"] == "HUMAN_INPUT_REQUESTED"
                and f["event"]["step_id"] == "name"
            ),
        )
        ws.send(json.dumps({"type": "bogus"}))  # before the answer: the answer may end the run and the socket
        ws.send(json.dumps({"type": "answer", "answer": "Ada", "request_id": "name"}))
        frames = recv_until(ws, lambda f: f["type"] == "end")
        assert any(f["type"] == "error" and "bogus" in f["detail"] for f in frames)
    assert c.get(f"/api/v1/runs/{rid}").json()["outputs"] == {"approved": True, "name": "Ada"}
    rid2 = c.post("/api/v1/runs", json={"flow": "ask"}).json()["id"]
    with connect(f"{srv.ws_url}/api/v1/runs/{rid2}/ws") as ws:
        recv_until(ws, lambda f: f["type"] == "event" and f["event"]["type"] == "HUMAN_INPUT_REQUESTED")
        ws.send(json.dumps({"type": "cancel"}))
        frames = recv_until(ws, lambda f: f["type"] == "end")
    assert frames[-1]["status"] == "CANCELED"


def test_run_socket_rerun_continues_the_stream(srv: LiveServer, request: pytest.FixtureRequest) -> None:
    c = srv.client()
    request.addfinalizer(c.close)
    rid = c.post("/api/v1/runs", json={"flow": "hello", "inputs": {"prompt": "x"}, "wait": True}).json()["id"]
    with connect(f"{srv.ws_url}/api/v1/runs/{rid}/ws") as ws:
        first = recv_until(ws, lambda f: f["type"] == "end")
        ws.send(json.dumps({"type": "rerun", "step": "answer"}))
        more = recv_until(ws, lambda f: f["type"] == "end")
        ws.send(json.dumps({"type": "rerun"}))
        bad = recv_until(ws, lambda f: f["type"] == "error")
    assert [f for f in more if f["type"] == "ack"][0]["action"] == "rerun"
    seqs = [f["event"]["seq"] for f in first + more if f["type"] == "event"]
    assert seqs == list(range(1, len(seqs) + 1))
    assert [f["event"]["type"] for f in more if f["type"] == "event"].count("STEP_COMPLETED") == 1
    assert more[-1]["status"] == "COMPLETED" and "step" in bad[-1]["detail"]


def test_run_socket_for_an_unknown_run(srv: LiveServer) -> None:
    with connect(f"{srv.ws_url}/api/v1/runs/nope/ws") as ws:
        assert json.loads(ws.recv(timeout=10))["type"] == "error"
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=10)
    assert info.value.rcvd is not None and info.value.rcvd.code == 4404
