"""Tool calls where people see them and answer them: the console (confirm on stdin, the
live lines, `runs show`), the Buttermilk WebSocket (ui_message, tool_output), the native API
(tool calls in the run view, posted-flow rules, threads)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.server.helpers import LiveServer, base_env, write_flow
from websockets.sync.client import connect

ROOT = Path(__file__).resolve().parents[2]

GUARDED = """\
name: guarded
model: fake:agent
steps:
  - id: act
    llm:
      prompt: refund order 7
      tools: [{tool: "tests.tools.helpers:record", confirm: true}]
"""
SCRIPT = {
    "agent": {
        "answers": [
            {"tool_calls": [{"name": "record", "arguments": {"key": "refund-7"}}]},
            "result: {tool_results}",
        ]
    }
}


def cli(home: Path, *args: str, input: str | None = None, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMFLOW_")}
    env.update(
        LLMFLOW_HOME=str(home),
        LLMFLOW_BLOCK_REAL_MODELS="1",
        LLMFLOW_FAKE_SCRIPTS=str(home / "scripts.json"),
        PYTHONPATH=str(ROOT),
        **extra,
    )
    return subprocess.run(
        [sys.executable, "-m", "llmflow", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=home,
        input=input,
        timeout=120,
    )


@pytest.mark.parametrize("typed, runs", [("n\n", False), ("\n", True)])
def test_confirm_from_the_console(tmp_path, typed, runs):
    (tmp_path / "scripts.json").write_text(json.dumps(SCRIPT))
    (tmp_path / "guarded.yaml").write_text(GUARDED)
    effects = tmp_path / "effects.txt"
    p = cli(tmp_path, "run", "guarded.yaml", input=typed, LLMFLOW_TEST_EFFECTS=str(effects))
    assert p.returncode == 0, p.stderr
    assert "Allow the tool call record" in p.stderr
    assert "TOOL_CALL_STARTED" in p.stdout
    assert ("TOOL_CALL_COMPLETED" in p.stdout) is runs and ("declined by a human" in p.stdout) is not runs
    assert (effects.read_text().split() if effects.exists() else []) == (["record:refund-7"] if runs else [])
    run_id = json.loads(cli(tmp_path, "runs", "list", "--json").stdout)[0]["id"]
    shown = cli(tmp_path, "runs", "show", run_id, "--step", "act").stdout
    assert "tool calls: 1" in shown and ("COMPLETED  record(" in shown) is runs


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from llmflow.server.app import create_app
    from llmflow.server.config import ServerConfig
    from llmflow.settings import Settings

    home = tmp_path / "home"
    home.mkdir()
    (home / "scripts.json").write_text(json.dumps(SCRIPT))
    write_flow(home, "guarded", GUARDED)
    monkeypatch.setenv("LLMFLOW_TEST_EFFECTS", str(home / "effects.txt"))

    def start(**config: Any) -> LiveServer:
        env = base_env(home, LLMFLOW_FAKE_SCRIPTS=str(home / "scripts.json"))
        env.pop("LLMFLOW_MODEL")  # the flow's model (the scripted fake) must win
        return LiveServer(
            create_app(Settings.from_env(env), ServerConfig.from_env(env, config_dir=home / "conf", **config))
        )

    return home, start


def frames_until(ws: Any, pred: Any) -> list[dict[str, Any]]:
    out = []
    while True:
        f = json.loads(ws.recv(timeout=30))
        out.append(f)
        if pred(f):
            return out


@pytest.mark.parametrize("confirm", [False, True])
def test_confirm_over_the_buttermilk_websocket_and_tool_output_frames(server, confirm):
    home, start = server
    with start() as srv:
        sid = httpx.get(f"{srv.url}/api/session").json()["session_id"]
        with connect(f"{srv.ws_url}/ws/{sid}") as ws:
            ws.send(json.dumps({"type": "run_flow", "flow": "guarded"}))
            frames = frames_until(
                ws,
                lambda f: f["type"] in ("ui_message", "system_error") or f.get("content") == "flow_completed",
            )
            assert frames[-1]["type"] == "ui_message", [(f["type"], f.get("preview")) for f in frames]
            assert "Allow the tool call record" in frames[-1]["content"] and frames[-1]["options"] == [
                "confirm",
                "reject",
            ]  # Buttermilk: a list of choices
            ws.send(json.dumps({"type": "manager_response", "confirm": confirm}))
            frames += frames_until(
                ws, lambda f: f["type"] == "system_message" and f.get("content") == "flow_completed"
            )
    out = [f for f in frames if f["type"] == "tool_output"]
    assert len(out) == 1
    assert out[0]["name"] == "record" and out[0]["call_id"] == "call_0_0"
    assert out[0]["outputs"]["arguments"] == {"key": "refund-7"}
    if confirm:
        assert out[0]["outputs"]["status"] == "COMPLETED" and out[0]["content"] == "recorded refund-7"
    else:
        assert out[0]["outputs"]["status"] == "FAILED" and "declined" in out[0]["content"]
    assert (home / "effects.txt").exists() is confirm


def test_api_run_view_posted_flow_rules_and_threads(server):
    home, start = server
    posted = {
        "name": "p",
        "model": "fake:agent",
        "steps": [
            {"id": "a", "kind": "llm", "prompt": "hi", "tools": ["tests.tools.helpers:record", "read_file"]}
        ],
    }
    with start() as srv, srv.client() as c:
        r = c.post("/api/v1/runs", json={"document": posted})
        assert r.status_code == 422
        detail = json.dumps(r.json())
        assert (
            "tests.tools.helpers:record" in detail and "not-allowed" in detail and "read_file" not in detail
        )
        r = c.post("/api/v1/runs", json={"document": {**posted, "mcp_servers": {"x": {"command": "python"}}}})
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == [
            "body",
            "document",
            "mcp_servers",
            "x",
        ]
        ok = {**posted, "steps": [{"id": "a", "kind": "llm", "prompt": "hi", "tools": ["read_file"]}]}
        for _ in range(2):
            r = c.post("/api/v1/runs", json={"document": ok, "options": {"thread": "t-1"}, "wait": True})
            assert r.status_code == 200, r.text
        assert r.json()["steps"][0]["tool_calls"] == []
        threads = c.get("/api/v1/threads").json()["threads"]
        assert threads[0]["name"] == "t-1" and threads[0]["runs"] == 2
        t = c.get("/api/v1/threads/t-1").json()
        assert len(t["runs"]) == 2 and len(t["messages"]) == 2
        assert c.get("/api/v1/threads/nope").status_code == 404
        r = c.post("/api/v1/runs", json={"flow": "guarded", "options": {"thread": "bad name"}})
        assert r.status_code == 422
    with start(allow_shell=True) as srv, srv.client() as c:
        r = c.post("/api/v1/runs", json={"document": posted})
        assert r.status_code == 201, r.text
