"""Agent Runner's timeout precedence through its own surface (issue 15, item 4): a step's
own timeout, then the run's ``options.timeout_seconds``, then ``OLLAMA_TIMEOUT_SECONDS``
as the last fallback (not a cap); a model call cut short by a timeout records
``LLM_ERROR`` before the step fails. The model is a loopback server speaking Ollama's
routes that never answers a chat; which timeout was used is read from the messages."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from providers.conftest import ThreadedServer
from server.helpers import wait_until, write_flow

OWN = """\
name: own
inputs: {goal: {type: string, default: x}}
steps:
  - id: planner
    llm: {model: ollama:stall, prompt: "Plan {{ inputs.goal }}"}
    timeout: 1.5
"""
NONE = """\
name: none
inputs: {goal: {type: string, default: x}}
steps:
  - id: planner
    llm: {model: ollama:stall, prompt: "Plan {{ inputs.goal }}"}
"""


class StallingOllama:
    """Ollama's /api/tags and /api/chat; a chat answers nothing until the test ends."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.chats = 0

    def app(self) -> Any:
        from fastapi import FastAPI
        from fastapi.responses import StreamingResponse

        app = FastAPI()

        @app.get("/api/tags")
        async def tags() -> dict[str, Any]:
            return {"models": [{"name": "stall:latest", "model": "stall:latest"}]}

        @app.post("/api/chat")
        async def chat() -> StreamingResponse:
            self.chats += 1

            async def lines() -> Any:
                await asyncio.to_thread(self.release.wait, 60)
                yield '{"message": {"role": "assistant", "content": "late"}, "done": true}\n'

            return StreamingResponse(lines(), media_type="application/x-ndjson")

        return app


@pytest.fixture
def stalling() -> Iterator[tuple[StallingOllama, str]]:
    fake = StallingOllama()
    with ThreadedServer(fake.app()) as srv:
        try:
            yield fake, srv.url
        finally:
            fake.release.set()


def _run(c: TestClient, pid: int, workflow: str, **options: Any) -> int:
    r = c.post(
        "/runs",
        json={
            "project_id": pid,
            "goal": "g",
            "run_type": "workflow",
            # a bare name is an Ollama model, as in Agent Runner
            "options": {"workflow": workflow, "models": {"planner": "stall"}, **options},
        },
    )
    assert r.status_code == 200, r.text
    rid = r.json()["id"]
    wait_until(lambda: c.get(f"/runs/{rid}").json()["status"] in ("FAILED", "COMPLETED"), 60, what="the run")
    return int(rid)


@pytest.mark.timeout(120)
def test_timeout_precedence_and_llm_error_before_the_step_fails(
    make_app: Any, home: Path, stalling: tuple[StallingOllama, str]
) -> None:
    fake, url = stalling
    write_flow(home, "own", OWN)
    write_flow(home, "none", NONE)
    env = {"OLLAMA_BASE_URL": url, "LLMFLOW_BLOCK_REAL_MODELS": "0", "OLLAMA_TIMEOUT_SECONDS": "0.5"}
    with TestClient(make_app(env=env)) as c:
        pid = c.post("/projects", params={"name": "t", "local_path": "projects/t"}).json()["id"]
        cases = [
            # the step's own 1.5 s wins over the run's 30 s, and is not capped by the env's 0.5 s
            (_run(c, pid, "own", timeout_seconds=30), "within 1.5s (the step's timeout)"),
            # a step without its own: the run's timeout_seconds
            (_run(c, pid, "none", timeout_seconds=0.8), "within 0.8s (the step's timeout)"),
            # neither: OLLAMA_TIMEOUT_SECONDS, the last fallback
            (_run(c, pid, "none"), "within 0.5s (OLLAMA_TIMEOUT_SECONDS)"),
        ]
        for rid, used in cases:
            assert c.get(f"/runs/{rid}").json()["status"] == "FAILED", " / ".join(
                f"{e['type']}: {e['payload']}" for e in c.get(f"/runs/{rid}/events").json()
            )
            # Agent Runner's timeline: LLM_ERROR, naming the timeout used, before the failure
            lines = c.get(f"/runs/{rid}/events").json()
            types = [e["type"] for e in lines]
            at = types.index("LLM_ERROR")
            assert types[at - 2 : at] == ["LLM_LOADING_MODEL", "LLM_GENERATING"], types
            assert "WORKFLOW_FAILED" in types[at:] and types[-1] == "RUN_FAILED", types
            assert used in lines[at]["payload"] and types.count("LLM_ERROR") == 1, lines[at]
            # llmflow's native log: the same LLM_ERROR, then the step fails (not retried)
            native = c.get(f"/api/v1/runs/{rid}/events").json()["events"]
            kinds = [e["type"] for e in native]
            err = kinds.index("LLM_ERROR")
            assert native[err]["payload"]["kind"] == "timeout" and used in native[err]["message"]
            assert kinds.index("STEP_FAILED") > err and kinds.count("ATTEMPT_STARTED") == 1, kinds
    assert fake.chats == 3
