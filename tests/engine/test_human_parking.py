"""Orphaned human prompts: a run waiting for a person whose asker is gone is parked - it gives
its worker slot and lease back and shows WAITING - and stays answerable from the API, the
WebSocket and `llmflow runs answer`; the answer re-queues it; a human-input timeout applies
its default even while nobody holds the run. Real server (TestClient / Uvicorn), real SQLite."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from tests.server.helpers import LLMFLOW, LiveServer, base_env, wait_until, write_flow

from llmflow.server.app import create_app
from llmflow.server.config import ServerConfig
from llmflow.settings import Settings

pytestmark = pytest.mark.slow

ASK = """\
name: ask
steps:
  - id: approve
    human: {prompt: "Ship it?", input: confirm, on_reject: continue}
  - id: after
    llm: {prompt: "approved={{ steps.approve.output }}"}
outputs:
  approved: "{{ steps.approve.output }}"
"""

ASK_WITH_DEFAULT = """\
name: ask_default
options: {human_timeout: 1}
steps:
  - id: approve
    human: {prompt: "Ship it?", input: text, default: "nobody answered"}
outputs:
  approved: "{{ steps.approve.output }}"
"""


def app_for(home: Path, **env: str) -> Any:
    e = base_env(home, LLMFLOW_HUMAN_PARK_AFTER="0.3", **env)
    return create_app(Settings.from_env(e), ServerConfig.from_env(e, config_dir=home / "conf", workers=1))


@pytest.fixture
def home(tmp_path: Path) -> Path:
    h = tmp_path / "home"
    h.mkdir()
    write_flow(h, "ask", ASK)
    write_flow(h, "ask_default", ASK_WITH_DEFAULT)
    write_flow(h, "quick", "name: quick\nsteps:\n  - id: a\n    llm: hi\n")
    return h


@pytest.fixture
def client(home: Path) -> Iterator[TestClient]:
    with TestClient(app_for(home)) as c:
        yield c


def status(c: TestClient, rid: str) -> str:
    return c.get(f"/api/v1/runs/{rid}").json()["status"]


def test_a_waiting_run_is_parked_frees_its_slot_and_an_api_answer_requeues_it(client: TestClient) -> None:
    rid = client.post("/api/v1/runs", json={"flow": "ask"}).json()["id"]
    wait_until(lambda: status(client, rid) == "WAITING", 30, what="the run to be parked")
    v = client.get(f"/api/v1/runs/{rid}").json()
    assert [w["request_id"] for w in v["waiting_for"]] == ["approve"]
    svc = client.app.state.services
    assert svc.worker.status()["active_runs"] == []  # the only slot is free ...
    assert svc.store.get_run(rid).owner is None  # ... and so is the lease
    other = client.post("/api/v1/runs", json={"flow": "quick"}).json()["id"]
    wait_until(lambda: status(client, other) == "COMPLETED", 30, what="another run to use the free slot")
    assert client.post(f"/api/v1/runs/{rid}/answer", json={"answer": "yes"}).status_code == 200
    wait_until(lambda: status(client, rid) == "COMPLETED", 30, what="the answered run to finish")
    assert client.get(f"/api/v1/runs/{rid}").json()["outputs"] == {"approved": True}
    types = [e.type for e in svc.store.events(rid)]
    assert types.count("RUN_PARKED") == 1 and "RUN_QUEUED" in types


def test_the_cli_answers_a_parked_run(client: TestClient, home: Path) -> None:
    rid = client.post("/api/v1/runs", json={"flow": "ask"}).json()["id"]
    wait_until(lambda: status(client, rid) == "WAITING", 30, what="the run to be parked")
    p = subprocess.run(
        [LLMFLOW, "runs", "answer", rid, "no", "--request", "approve"],
        env=base_env(home),
        cwd=home,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 0, p.stderr
    assert "answered" in p.stdout
    wait_until(lambda: status(client, rid) == "COMPLETED", 30, what="the answered run to finish")
    assert client.get(f"/api/v1/runs/{rid}").json()["outputs"] == {"approved": False}


def test_a_human_timeout_applies_its_default_while_the_run_is_parked(client: TestClient) -> None:
    rid = client.post("/api/v1/runs", json={"flow": "ask_default"}).json()["id"]
    wait_until(lambda: status(client, rid) == "WAITING", 30, what="the run to be parked")
    parked = next(e for e in client.app.state.services.store.events(rid) if e.type == "RUN_PARKED")
    assert parked.payload["wake_at"] is not None
    wait_until(lambda: status(client, rid) == "COMPLETED", 30, what="the timeout to apply the default")
    assert client.get(f"/api/v1/runs/{rid}").json()["outputs"] == {"approved": "nobody answered"}
    received = next(
        e for e in client.app.state.services.store.events(rid) if e.type == "HUMAN_INPUT_RECEIVED"
    )
    assert received.payload["source"] == "default"


def test_a_parked_run_is_answered_over_its_websocket(home: Path) -> None:
    from websockets.sync.client import connect

    with LiveServer(app_for(home)) as srv, srv.client() as c:
        rid = c.post("/api/v1/runs", json={"flow": "ask"}).json()["id"]
        wait_until(
            lambda: c.get(f"/api/v1/runs/{rid}").json()["status"] == "WAITING",
            30,
            what="the run to be parked",
        )
        with connect(f"{srv.ws_url}/api/v1/runs/{rid}/ws") as ws:
            ws.send(json.dumps({"type": "answer", "answer": "yes"}))
            frames = []
            while not frames or frames[-1]["type"] != "end":
                frames.append(json.loads(ws.recv(timeout=30)))
        assert frames[-1]["status"] == "COMPLETED"
        assert any(f["type"] == "ack" for f in frames)


def test_a_killed_console_run_is_recovered_by_a_worker_parked_and_answered(home: Path) -> None:
    env = base_env(home, LLMFLOW_LEASE_SECONDS="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmflow", "run", "ask"],
        env=env,
        cwd=home,
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    from llmflow.runtime import build_runtime

    rt = build_runtime(env=env, home=home)
    try:
        deadline = time.monotonic() + 60
        while True:  # the console asks and waits: its asker is about to go away
            runs = rt.store.list_runs(limit=1)
            if runs and any(e.type == "HUMAN_INPUT_REQUESTED" for e in rt.store.events(runs[0].id)):
                break
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdin.close()
        rid = runs[0].id
    finally:
        rt.close()
    with TestClient(app_for(home, LLMFLOW_LEASE_SECONDS="1")) as c:
        wait_until(lambda: status(c, rid) == "WAITING", 60, what="a worker to recover and park the run")
        assert c.app.state.services.worker.status()["active_runs"] == []
        assert (
            c.post(f"/api/v1/runs/{rid}/answer", json={"answer": "yes", "request_id": "approve"}).status_code
            == 200
        )
        wait_until(lambda: status(c, rid) == "COMPLETED", 30, what="the answered run to finish")
    assert os.path.exists(home / ".llmflow" / "llmflow.db")
