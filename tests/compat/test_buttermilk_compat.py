"""Buttermilk's clients (ws_debug_cli, FlowTestClient, the TS CLI and chat UI) against a real
Uvicorn: the frames they read, the signals they wait for (issue 15, items 7, 8, 14)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import ClientConnection, connect

from server.helpers import HUMAN_FLOW, LiveServer, write_flow

pytestmark = pytest.mark.timeout(180)

# Buttermilk's shape: agents with roles and descriptions, a confirm step between them
TRANS = """\
name: trans
inputs:
  prompt: {type: string}
agents:
  judge: {role: judge, description: applies the criteria, system: You judge text.}
  synth: {role: synthesiser, description: merges the judges' answers, system: You merge answers.}
steps:
  - id: judging
    llm: {agent: judge, prompt: "Judge: {{ inputs.prompt }}"}
  - id: approve
    human: {prompt: "Synthesise the answers?", input: confirm}
  - id: synthesis
    llm: {agent: synth, prompt: "Merge: {{ steps.judging.output }}"}
outputs:
  answer: "{{ steps.synthesis.output }}"
"""


def recv_until(
    ws: ClientConnection, pred: Callable[[dict[str, Any]], bool], timeout: float = 30
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while True:
        frame = json.loads(ws.recv(timeout=timeout))
        out.append(frame)
        if pred(frame):
            return out


def is_complete(f: dict[str, Any]) -> bool:
    return f["type"] == "flow_complete"


@pytest.fixture
def srv(make_app: Any, home: Path) -> Any:
    write_flow(home, "trans", TRANS)
    write_flow(home, "ask", HUMAN_FLOW)
    with LiveServer(make_app()) as s:
        yield s


def test_flow_test_client_signals_roles_options_and_no_echo(srv: LiveServer) -> None:
    """Items 7 and 8, as FlowTestClient drives a flow: session, run_flow, orchestrator_ready,
    agent announcements and traces by role, a ui_message with a list of options, a
    manager_response, completion."""
    sid = httpx.get(f"{srv.url}/api/session").json()["session_id"]
    with connect(f"{srv.ws_url}/ws/{sid}") as ws:
        ws.send(
            json.dumps(
                {"type": "run_flow", "flow": "trans", "prompt": "some text", "criteria": "trans_simplified"}
            )
        )
        frames = recv_until(ws, lambda f: f["type"] == "ui_message")
        question = frames[-1]
        assert question["outputs"]["options"] == ["confirm", "reject"] and question["options"] == [
            "confirm",
            "reject",
        ]
        ws.send(json.dumps({"type": "manager_response", "content": "yes", "confirm": True}))
        frames += recv_until(ws, is_complete)
    types = [f["type"] for f in frames]
    assert "user_message" not in types  # the answer is not echoed back
    ready = [
        f for f in frames if f["type"] == "flow_event" and f["outputs"]["content"] == "orchestrator_ready"
    ]
    assert ready  # wait_for_orchestrator_ready
    roles = [f["data"]["agent_config"]["role"] for f in frames if f["type"] == "agent_announcement"]
    assert roles == ["judge", "synthesiser"]  # wait_for_agents(["judge", "synthesiser"])
    traces = [f for f in frames if f["type"] == "agent_trace"]
    assert [t["data"]["agent_info"]["role"] for t in traces] == [
        "judge",
        "synthesiser",
    ]  # wait_for_agent_results
    chat = [f for f in frames if f["type"] == "chat_message"]
    assert chat[0]["agent_info"]["role"] == "judge" and chat[0]["agent_info"]["agent_name"] == "judge"
    assert chat[0]["agent_info"]["description"] == "applies the criteria"
    assert any(
        f["type"] == "flow_event" and f["outputs"]["content"] == "flow_completed" for f in frames
    )  # wait_for_completion
    assert not [f for f in frames if f["type"] == "error"]
    updates = [f for f in frames if f["type"] == "system_update"]
    assert all("source" in u["outputs"] and "waiting_on" in u["outputs"] for u in updates)
    assert any(
        u["outputs"]["waiting_on"] == {"judge": 1} and u["outputs"]["source"] == "judge" for u in updates
    )
    # the session is Buttermilk's: its status names, and ?session_id returns it
    again = httpx.get(f"{srv.url}/api/session", params={"session_id": sid}).json()
    assert again["session_id"] == sid and again["status"] == "completed"
    assert httpx.get(f"{srv.url}/api/session/{sid}/status").json()["status"] == "completed"
    assert httpx.get(f"{srv.url}/api/session").json()["status"] == "initializing"


def test_reconnect_replays_only_unseen_frames(srv: LiveServer) -> None:
    """Item 7: a client that reconnects gets only frames it has not seen (?since, else the
    session's delivered cursor)."""
    sid = httpx.get(f"{srv.url}/api/session").json()["session_id"]
    with connect(f"{srv.ws_url}/ws/{sid}") as ws:
        ws.send(json.dumps({"type": "run_flow", "flow": "hello", "prompt": "hi"}))
        first = recv_until(ws, is_complete)
    with connect(f"{srv.ws_url}/ws/{sid}") as ws:
        ws.send(json.dumps({"type": "run_flow", "flow": "nope"}))  # something new happens
        fresh = json.loads(ws.recv(timeout=10))
        assert fresh["type"] == "system_error" and fresh["seq"] > first[-1]["seq"]  # nothing old again
    with connect(f"{srv.ws_url}/ws/{sid}?since={first[2]['seq']}") as ws:
        replay = recv_until(ws, lambda f: f["seq"] == fresh["seq"])
    assert [f["seq"] for f in replay] == list(range(first[2]["seq"] + 1, fresh["seq"] + 1))


def test_unknown_and_unstorable_messages_are_ignored_not_fatal(srv: LiveServer) -> None:
    """Item 7 (unknown messages logged and ignored) and the lone-surrogate defect: a
    directive holding "\\ud800" once crashed the SQLite append."""
    sid = httpx.get(f"{srv.url}/api/session").json()["session_id"]
    with connect(f"{srv.ws_url}/ws/{sid}") as ws:
        for raw in (
            '{"type": "pull_task"}',
            '{"type": "TaskProcessingStarted"}',
            '{"type": "run_flow", "flow": "hello", "prompt": "\\ud800"}',
            "not json",
        ):
            ws.send(raw)
        ws.send(json.dumps({"type": "run_flow", "flow": "hello", "prompt": "hi"}))
        frames = recv_until(ws, is_complete)
    assert not [f for f in frames if f["type"] == "system_error"]
    assert frames[-1]["status"] == "COMPLETED"
    # the native run socket answers such a message with a clean error frame
    run = httpx.post(
        f"{srv.url}/api/v1/runs", json={"flow": "hello", "inputs": {"prompt": "x"}, "wait": True}
    ).json()
    with connect(f"{srv.ws_url}/api/v1/runs/{run['id']}/ws") as ws:
        ws.send('{"type": "directive", "text": "\\ud800"}')
        reply = recv_until(ws, lambda f: f["type"] == "error")[-1]
        assert "not storable JSON" in reply["detail"]
        ws.send(json.dumps({"type": "directive", "text": "fine"}))
        assert recv_until(ws, lambda f: f["type"] in ("ack", "error"))[-1]["type"] == "ack"
    events = httpx.get(f"{srv.url}/api/v1/runs/{run['id']}/events").json()["events"]
    assert [e["message"] for e in events if e["type"] == "DIRECTIVE"] == ["fine"]


def test_abandoned_sessions_never_block_the_worker(make_app: Any, home: Path) -> None:
    """Item 7: clients that disconnect while their flow waits for an answer do not hold
    the worker; a new flow still runs (one worker slot here, three abandoned sessions)."""
    write_flow(home, "ask", HUMAN_FLOW)
    with LiveServer(make_app(env={"LLMFLOW_HUMAN_PARK_AFTER": "0.5"}, workers=1)) as srv:
        for _ in range(3):
            sid = httpx.get(f"{srv.url}/api/session").json()["session_id"]
            with connect(f"{srv.ws_url}/ws/{sid}") as ws:
                ws.send(json.dumps({"type": "run_flow", "flow": "ask"}))
                recv_until(ws, lambda f: f["type"] == "ui_message")
        sid = httpx.get(f"{srv.url}/api/session").json()["session_id"]
        with connect(f"{srv.ws_url}/ws/{sid}") as ws:
            ws.send(json.dumps({"type": "run_flow", "flow": "hello", "prompt": "still served"}))
            frames = recv_until(ws, is_complete, timeout=60)
        assert frames[-1]["status"] == "COMPLETED"


def test_ws_wait_for_a_session_that_does_not_exist_is_an_error(
    srv: LiveServer, tmp_path: Path, home: Path
) -> None:
    """Item 14: `llmflow ws wait --session nosuch` (ws_debug_cli's `wait`) fails clearly
    instead of printing an empty list (it used to start a new, empty session)."""
    import subprocess

    from server.helpers import LLMFLOW, base_env

    env = {**base_env(home), "TMPDIR": str(tmp_path)}
    for cmd in (
        ["wait", "--session", "nosuch", "--wait", "1"],
        ["send", "yes", "--session", "nosuch", "--wait", "1"],
    ):
        p = subprocess.run(
            [LLMFLOW, "ws", "--port", str(srv.port), "--json-output", *cmd],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert p.returncode == 1, p.stdout + p.stderr
        assert "no session 'nosuch'" in json.loads(p.stdout)["error"]
    assert httpx.get(f"{srv.url}/api/sessions").json()["total"] == 0  # nothing was created
