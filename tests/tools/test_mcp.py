"""Real MCP servers as subprocesses: one over stdio, one over streamable HTTP."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llmflow.engine.events import EventType as E
from llmflow.model.spec import Flow
from llmflow.runtime import build_runtime

pytest.importorskip("mcp")
SERVER = Path(__file__).with_name("mcp_server.py")


def calls(*specs) -> dict:
    return {"tool_calls": [{"name": n, "arguments": a} for n, a in specs]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def flow(servers: dict, tools: list) -> Flow:
    return Flow.model_validate(
        {
            "name": "m",
            "model": "fake:agent",
            "mcp_servers": servers,
            "steps": [{"id": "ask", "kind": "llm", "prompt": "go", "tools": tools}],
        }
    )


def run(tmp_path, f, answers):
    rt = build_runtime(home=tmp_path, fake_scripts={"agent": {"answers": answers}})
    st = asyncio.run(rt.run(f))
    return rt, st


def test_a_stdio_server_lends_all_its_tools(tmp_path):
    log = tmp_path / "calls.txt"
    f = flow(
        {"notes": {"command": "python", "args": [str(SERVER)], "env": {"MCP_CALLS_FILE": str(log)}}},
        ["notes"],
    )
    rt, st = run(
        tmp_path,
        f,
        [
            calls(
                ("lookup", {"topic": "MCP"}), ("add", {"a": 2, "b": 40}), ("fail", {"reason": "on purpose"})
            ),
            "{tool_results}",
        ],
    )
    assert st.status == "COMPLETED", st.error
    lines = st.outputs["result"].splitlines()
    assert lines[0].startswith("The Model Context Protocol")
    assert lines[1] == "42"
    assert lines[2].startswith("Error: MCP tool notes.fail failed")
    assert sorted(log.read_text().split()) == ["add:2+40", "lookup:MCP"]
    gen = next(e for e in rt.store.events(st.run_id) if e.type == E.LLM_GENERATING)
    assert gen.payload["tools"] == ["lookup", "add", "fail"]
    started = [e for e in rt.store.events(st.run_id) if e.type == E.TOOL_CALL_STARTED]
    assert {e.payload["source"] for e in started} == {"mcp notes"}
    stderr_log = next((tmp_path / ".llmflow" / "runs" / st.run_id / "artifacts" / "mcp").glob("notes.log"))
    assert "notes MCP server starting" in stderr_log.read_text()


def test_one_tool_of_a_server_by_name_and_a_missing_one(tmp_path):
    f = flow({"notes": {"command": "python", "args": [str(SERVER)]}}, ["notes.add"])
    rt, st = run(tmp_path, f, [calls(("add", {"a": 1, "b": 1})), "{tool_results}"])
    assert st.outputs["result"] == "2"
    gen = next(e for e in rt.store.events(st.run_id) if e.type == E.LLM_GENERATING)
    assert gen.payload["tools"] == ["add"]
    f = flow({"notes": {"command": "python", "args": [str(SERVER)]}}, ["notes.ad"])
    _, st = run(tmp_path, f, ["x"])
    assert st.status == "FAILED" and "has no tool 'ad'" in st.error and "did you mean 'add'?" in st.error


def test_a_server_that_does_not_start_fails_the_step_clearly(tmp_path):
    f = flow(
        {
            "broken": {
                "command": "python",
                "args": ["-c", "import sys; print('boom', file=sys.stderr); sys.exit(3)"],
                "timeout": 10,
            }
        },
        ["broken"],
    )
    _, st = run(tmp_path, f, ["x"])
    assert st.status == "FAILED"
    assert "MCP server 'broken'" in st.error and "boom" in st.error


def test_a_streamable_http_server(tmp_path):
    port = free_port()
    env = {**os.environ, "MCP_CALLS_FILE": str(tmp_path / "http-calls.txt")}
    proc = subprocess.Popen(
        [sys.executable, str(SERVER), "--http", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 90  # the server imports the mcp SDK: slow on a loaded machine
        listening = False
        while not listening and time.monotonic() < deadline and proc.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                listening = True
            except OSError:
                time.sleep(0.1)
        assert listening, f"the MCP test server did not listen on port {port} (exit code {proc.poll()})"
        f = flow({"remote": {"url": f"http://127.0.0.1:{port}/mcp"}}, ["remote.lookup"])
        _, st = run(tmp_path, f, [calls(("lookup", {"topic": "llmflow"})), "{tool_results}"])
        assert st.status == "COMPLETED", st.error
        assert st.outputs["result"] == "llmflow runs flows of agents."
        assert (tmp_path / "http-calls.txt").read_text().split() == ["lookup:llmflow"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
