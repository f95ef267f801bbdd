"""Buttermilk's human in the loop: ``parameters.human_in_loop`` is honoured, and "no" to a
confirmation stops the flow the same way in the console, the API and the WebSocket
(issue 15, item 11)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import httpx
from websockets.sync.client import connect

from server.helpers import LLMFLOW, LiveServer, base_env, wait_until, write_flow

CONFIRM = """\
name: confirm
inputs:
  prompt: {type: string, default: tea}
steps:
  - id: judge
    llm: {prompt: "Judge {{ inputs.prompt }}"}
  - id: approve
    human: {prompt: "Synthesise?", input: confirm}
  - id: synth
    llm: {prompt: "Merge {{ steps.judge.output }}"}
outputs:
  answer: "{{ steps.synth.output }}"
"""

# Buttermilk's flows keep human_in_loop in their parameters
NO_HUMAN = CONFIRM.replace("name: confirm\n", "name: unattended\nparameters: {human_in_loop: false}\n")


def test_no_in_the_console_stops_the_flow(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (tmp_path / "confirm.yaml").write_text(CONFIRM)
    p = subprocess.run(
        [LLMFLOW, "run", "confirm.yaml", "--json"],
        input="n\n",
        cwd=tmp_path,
        env=base_env(home),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 1, p.stderr
    run = json.loads(p.stdout)
    assert run["status"] == "FAILED" and "declined" in run["error"]
    assert {s["id"]: s["status"] for s in run["steps"]}["synth"] != "COMPLETED"
    (tmp_path / "unattended.yaml").write_text(NO_HUMAN)
    p = subprocess.run(
        [LLMFLOW, "run", "unattended.yaml", "--json"],
        stdin=subprocess.DEVNULL,
        cwd=tmp_path,
        env=base_env(home),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr  # parameters.human_in_loop: false -> nobody is asked
    assert json.loads(p.stdout)["status"] == "COMPLETED"


def test_no_over_the_api_and_the_websocket_stops_the_flow(make_app: Any, home: Path) -> None:
    write_flow(home, "confirm", CONFIRM)
    write_flow(home, "unattended", NO_HUMAN)
    with LiveServer(make_app()) as srv:
        # native API
        rid = httpx.post(f"{srv.url}/api/v1/runs", json={"flow": "confirm"}).json()["id"]
        wait_until(
            lambda: (
                httpx.get(f"{srv.url}/api/v1/runs/{rid}").json()["status"] in ("RUNNING", "WAITING")
                and any(
                    e["type"] == "HUMAN_INPUT_REQUESTED"
                    for e in httpx.get(f"{srv.url}/api/v1/runs/{rid}/events").json()["events"]
                )
            ),
            what="the question",
        )
        assert httpx.post(f"{srv.url}/api/v1/runs/{rid}/answer", json={"answer": "no"}).status_code < 300
        run = wait_until(
            lambda: (
                (v := httpx.get(f"{srv.url}/api/v1/runs/{rid}").json())["status"] in ("FAILED", "COMPLETED")
                and v
            ),
            what="the run to end",
        )
        assert run["status"] == "FAILED" and "declined" in run["error"]
        # WebSocket: a manager_response that rejects (as the TS CLI's "n" and the chat UI's reject)
        for answer in (
            {"type": "manager_response", "confirm": False},
            {"type": "manager_response", "content": "no"},
        ):
            sid = httpx.get(f"{srv.url}/api/session").json()["session_id"]
            with connect(f"{srv.ws_url}/ws/{sid}") as ws:
                ws.send(json.dumps({"type": "run_flow", "flow": "confirm", "prompt": "tea"}))
                while json.loads(ws.recv(timeout=30))["type"] != "ui_message":
                    pass
                ws.send(json.dumps(answer))
                while (f := json.loads(ws.recv(timeout=30)))["type"] != "flow_complete":
                    pass
            assert f["status"] == "FAILED", answer
        # parameters.human_in_loop: false over the WebSocket: no question, the flow completes
        sid = httpx.get(f"{srv.url}/api/session").json()["session_id"]
        with connect(f"{srv.ws_url}/ws/{sid}") as ws:
            ws.send(json.dumps({"type": "run_flow", "flow": "unattended", "prompt": "tea"}))
            frames = []
            while (f := json.loads(ws.recv(timeout=30)))["type"] != "flow_complete":
                frames.append(f)
        assert f["status"] == "COMPLETED" and not [x for x in frames if x["type"] == "ui_message"]
