"""llmflow as an MCP server, driven by the official SDK's client: `llmflow mcp` as a stdio
subprocess and /mcp on a real Uvicorn (streamable HTTP, behind the token). An agent starts a
run, follows it, answers its question, reads its artifact, re-runs a step, cancels a run."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import mcp
import pytest
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from tests.server.helpers import LLMFLOW, LiveServer, base_env, write_flow

from llmflow.server.app import create_app
from llmflow.server.config import ServerConfig
from llmflow.settings import Settings

pytestmark = pytest.mark.timeout(180)
TOKEN = "mcp-test-token-123456"
ASK = """\
name: ask
inputs:
  topic: {type: string, default: tea}
steps:
  - id: draft
    llm: "Write about {{ inputs.topic }}"
  - id: approve
    human: {prompt: "Publish the draft?", input: confirm}
  - id: save
    write_file: {path: "post.md", content: "{{ steps.draft.output }} approved={{ steps.approve.output }}"}
outputs:
  approved: "{{ steps.approve.output }}"
"""
WAIT = """\
name: wait
steps:
  - id: forever
    human: {prompt: "Anything?"}
"""


def data(result: Any) -> dict[str, Any]:
    assert not result.is_error, result.content
    return (
        result.structured_content
        if result.structured_content is not None
        else json.loads(result.content[0].text)
    )


async def scenario(client: Any) -> None:
    names = {t.name for t in (await client.list_tools()).tools}
    assert {
        "list_flows",
        "validate_flow",
        "start_run",
        "show_run",
        "run_events",
        "follow_run",
        "answer_prompt",
        "cancel_run",
        "rerun_step",
        "list_artifacts",
        "read_artifact",
    } <= names
    flows = data(await client.call_tool("list_flows", {}))["flows"]
    assert {"ask", "wait"} <= {f["name"] for f in flows}
    bad = data(
        await client.call_tool(
            "validate_flow", {"document": "name: x\nsteps:\n  - id: a\n    llm: hi\n    bogus: 1\n"}
        )
    )
    assert bad["valid"] is False and any("bogus" in d for d in bad["diagnostics"])
    assert data(await client.call_tool("validate_flow", {"flow": "ask"}))["valid"] is True

    started = data(await client.call_tool("start_run", {"flow": "ask", "inputs": {"topic": "owls"}}))
    rid = started["id"]
    assert started["traceparent"].startswith("00-")
    followed = data(await client.call_tool("follow_run", {"run_id": rid, "timeout": 60}))
    assert followed["finished"] is False and followed["open_questions"][0]["prompt"] == "Publish the draft?"
    assert "HUMAN_INPUT_REQUESTED" in [e["type"] for e in followed["events"]]
    answered = data(await client.call_tool("answer_prompt", {"run_id": rid, "answer": "yes"}))
    assert "answer" in answered["result"]
    done = data(
        await client.call_tool(
            "follow_run", {"run_id": rid, "after_seq": followed["next_after"], "timeout": 60}
        )
    )
    while not done["finished"]:
        done = data(
            await client.call_tool(
                "follow_run", {"run_id": rid, "after_seq": done["next_after"], "timeout": 60}
            )
        )
    assert done["status"] == "COMPLETED" and done["outputs"] == {"approved": True}
    shown = data(await client.call_tool("show_run", {"run_id": rid}))
    assert [s["id"] for s in shown["steps"]] == ["draft", "approve", "save"] and shown["open_questions"] == []
    arts = data(await client.call_tool("list_artifacts", {"run_id": rid}))["artifacts"]
    assert [a["path"] for a in arts] == ["post.md"]
    art = data(await client.call_tool("read_artifact", {"run_id": rid, "path": "post.md"}))
    assert "owls" in art["text"] and art["text"].endswith("approved=True")
    missing = await client.call_tool("read_artifact", {"run_id": rid, "path": "nope.md"})
    assert (
        missing.is_error
        and "no artifact 'nope.md'" in missing.content[0].text
        and "post.md" in missing.content[0].text
    )

    rerun = data(await client.call_tool("rerun_step", {"run_id": rid, "step": "save"}))
    again = data(
        await client.call_tool(
            "follow_run", {"run_id": rid, "after_seq": rerun["follow_after_seq"], "timeout": 60}
        )
    )
    while not again["finished"]:
        again = data(
            await client.call_tool(
                "follow_run", {"run_id": rid, "after_seq": again["next_after"], "timeout": 60}
            )
        )
    assert again["status"] == "COMPLETED"
    types = [e["type"] for e in again["events"]]
    assert "STEP_RERUN" in types and types.count("STEP_COMPLETED") == 1
    events = data(await client.call_tool("run_events", {"run_id": rid}))["events"]
    assert [e for e in events if e["type"] == "ATTEMPT_STARTED" and e["step_id"] == "save"][-1][
        "attempt"
    ] == 2

    w = data(await client.call_tool("start_run", {"flow": "wait"}))["id"]
    data(await client.call_tool("follow_run", {"run_id": w, "timeout": 60}))
    assert data(await client.call_tool("cancel_run", {"run_id": w}))["status"] == "CANCELED"
    unknown = await client.call_tool("start_run", {"flow": "nope"})
    assert unknown.is_error and "nope" in unknown.content[0].text
    gone = await client.call_tool("show_run", {"run_id": "no-such-run"})
    assert gone.is_error and "no run 'no-such-run'" in gone.content[0].text


@pytest.fixture
def home(tmp_path: Path) -> Path:
    h = tmp_path / "home"
    h.mkdir()
    write_flow(h, "ask", ASK)
    write_flow(h, "wait", WAIT)
    return h


def test_stdio_server_driven_by_the_sdk_client(home: Path) -> None:
    env = base_env(home)
    params = StdioServerParameters(
        command=LLMFLOW, args=["mcp", "--config-dir", str(home / "conf")], env=env, cwd=str(home)
    )

    async def main() -> None:
        async with mcp.Client(stdio_client(params)) as client:
            await scenario(client)

    asyncio.run(main())


def test_streamable_http_server_behind_the_token(home: Path) -> None:
    e = base_env(home, LLMFLOW_API_TOKEN=TOKEN)
    app = create_app(Settings.from_env(e), ServerConfig.from_env(e, config_dir=home / "conf", workers=2))

    async def main(url: str) -> None:
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=90) as http:
            async with mcp.Client(streamable_http_client(url + "/mcp", http_client=http)) as client:
                await scenario(client)

    with LiveServer(app) as srv:
        r = httpx.post(
            srv.url + "/mcp",
            json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
            headers={"Accept": "application/json, text/event-stream"},
        )
        assert r.status_code == 401
        asyncio.run(main(srv.url))
