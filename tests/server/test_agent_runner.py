"""Agent Runner's API: same routes and shapes as its tests pin, with its defects fixed."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from fastapi.testclient import TestClient

from .helpers import SLOW, LiveServer, both_stores, wait_status, wait_until

RUN_KEYS = {
    "id",
    "project_id",
    "name",
    "goal",
    "run_type",
    "status",
    "current_iteration",
    "options",
    "metadata",
    "created_at",
}
EVENT_KEYS = {"id", "run_id", "type", "payload", "created_at"}
FILES = "=== FILE: pom.xml ===\n<project/>\n=== END FILE ===\n=== FILE: src/main/java/Hello.java ===\nclass Hello {}\n=== END FILE ===\n"


def project(c: Any, name: str = "demo", path: str = "projects/demo") -> dict[str, Any]:
    r = c.post("/projects", params={"name": name, "local_path": path})
    assert r.status_code == 200, r.text
    return r.json()


def test_health(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}


def test_projects_create_and_list(client: TestClient, home: Path) -> None:
    p = project(client)
    assert set(p) == {"id", "name", "local_path", "created_at"}
    assert isinstance(p["id"], int) and p["local_path"] == str((home / "projects" / "demo").resolve())
    assert client.get("/projects").json() == [p]
    assert client.post("/projects", params={"name": "demo", "local_path": "x"}).status_code == 409
    assert client.post("/projects", params={"name": "only-name"}).status_code == 422


@both_stores
def test_create_get_and_list_runs_newest_first(make_app: Any) -> None:
    with TestClient(make_app(worker_enabled=False)) as c:
        pid = project(c)["id"]
        r1 = c.post(
            "/runs", json={"project_id": pid, "goal": "first", "unknown_key": 1}
        )  # extra keys ignored
        assert r1.status_code == 200
        run = r1.json()
        assert set(run) == RUN_KEYS
        assert run["status"] == "QUEUED" and run["run_type"] == "agent" and run["goal"] == "first"
        assert run["name"].startswith("Run - ") and run["options"] is None and run["metadata"] is None
        assert isinstance(run["id"], int)  # integer ids, as in Agent Runner
        r2 = c.post(
            "/runs",
            json={
                "project_id": pid,
                "goal": "second",
                "name": "named",
                "metadata": {"who": "me"},
                "options": {"models": {"plan": "fake:"}},
            },
        ).json()
        assert r2["metadata"] == {"who": "me"} and r2["options"] == {"models": {"plan": "fake:"}}
        assert [r["id"] for r in c.get("/runs").json()] == [r2["id"], run["id"]]
        assert c.get(f"/runs/{run['id']}").json() == run
        events = c.get(f"/runs/{run['id']}/events").json()
        assert events[0]["type"] == "RUN_CREATED" and set(events[0]) == EVENT_KEYS


def test_run_errors(client: TestClient) -> None:
    assert client.post("/runs", json={"project_id": 42, "goal": "x"}).json() == {
        "detail": "Project with id 42 not found"
    }
    assert client.post("/runs", json={"project_id": 42, "goal": "x"}).status_code == 404
    assert client.post("/runs", json={"goal": "x"}).status_code == 422
    assert client.post("/runs", json={"project_id": 1}).status_code == 422
    pid = project(client)["id"]
    assert client.post("/runs", json={"project_id": pid, "goal": "x", "run_type": "bogus"}).status_code == 422
    r = client.post(
        "/runs", json={"project_id": pid, "goal": "x", "run_type": "workflow", "options": {"workflow": 7}}
    )
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "options", "workflow"]
    r = client.post("/runs", json={"project_id": pid, "goal": "x", "options": {"timeout_seconds": "soon"}})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "options", "timeout_seconds"]
    r = client.post(
        "/runs", json={"project_id": pid, "goal": "x", "options": {"models": {"nostep": "fake:"}}}
    )
    assert r.status_code == 422
    assert client.get("/runs/nope").json() == {"detail": "Run not found"}
    assert client.get("/runs/nope").status_code == 404
    assert client.get("/runs/nope/events").status_code == 404
    assert client.get("/runs/nope/events/stream").status_code == 404
    assert client.post("/runs/nope/pause").status_code == 404
    assert client.post("/runs/nope/directive", json={"text": "x"}).status_code == 404
    assert client.get("/runs/nope/artifacts").status_code == 404


def test_invalid_action_is_400(client: TestClient) -> None:
    pid = project(client)["id"]
    rid = client.post("/runs", json={"project_id": pid, "goal": "x"}).json()["id"]
    r = client.post(f"/runs/{rid}/explode")
    assert r.status_code == 400
    assert r.json() == {"detail": "Invalid action. Must be one of: ['pause', 'resume', 'stop']"}


def test_events_after_id_and_directive(make_app: Any) -> None:
    with TestClient(make_app(worker_enabled=False)) as c:
        pid = project(c)["id"]
        rid = c.post("/runs", json={"project_id": pid, "goal": "x"}).json()["id"]
        d = c.post(f"/runs/{rid}/directive", json={"text": "use Java 21"}).json()
        assert d["type"] == "DIRECTIVE" and d["payload"] == "use Java 21" and set(d) == EVENT_KEYS
        events = c.get(f"/runs/{rid}/events").json()
        assert [e["type"] for e in events] == ["RUN_CREATED", "DIRECTIVE"]
        after = c.get(f"/runs/{rid}/events", params={"after_id": events[0]["id"]}).json()
        assert after == events[1:]
        assert c.post(f"/runs/{rid}/directive", json={}).status_code == 422


def test_workflow_run_is_quarkus_by_default_and_a_failing_mvn_fails_it(
    make_app: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, home: Path
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    mvn = bin_dir / "mvn"
    mvn.write_text('#!/bin/sh\necho "[INFO] tests: $MVN_RESULT"\n[ "$MVN_RESULT" = pass ]\n')
    mvn.chmod(mvn.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    models = {"coder": "fake:?answer=" + quote(FILES)}
    with TestClient(make_app()) as c:
        pid = project(c, "quarkus", "projects/q")["id"]
        monkeypatch.setenv("MVN_RESULT", "pass")
        ok = c.post(
            "/runs",
            json={
                "project_id": pid,
                "goal": "A hello service",
                "run_type": "workflow",
                "options": {"models": models, "timeout_seconds": 120},
            },
        ).json()
        assert wait_status(c, f"/runs/{ok['id']}", "COMPLETED", "FAILED")["status"] == "COMPLETED"
        assert (home / "projects" / "q" / "pom.xml").read_text().strip() == "<project/>"
        assert (home / "projects" / "q" / "PLAN.md").is_file()
        types = [e["type"] for e in c.get(f"/runs/{ok['id']}/events").json()]
        for t in (
            "RUN_CREATED",
            "RUN_STARTED",
            "WORKFLOW_STARTED",
            "STEP_STARTED",
            "LLM_LOADING_MODEL",
            "LLM_DONE",
            "SHELL_EXECUTING",
            "ARTIFACT_CREATED",
            "WORKFLOW_COMPLETED",
            "RUN_COMPLETED",
        ):
            assert t in types
        payloads = [e["payload"] for e in c.get(f"/runs/{ok['id']}/events").json()]
        assert "Starting quarkus-bootstrap-v1 v1.0.0" in payloads and "Running: mvn -B -q test" in payloads
        arts = c.get(f"/runs/{ok['id']}/artifacts").json()
        assert {"PLAN.md", "pom.xml"} <= {a["path"] for a in arts}
        monkeypatch.setenv("MVN_RESULT", "fail")
        bad = c.post(
            "/runs",
            json={
                "project_id": pid,
                "goal": "A hello service",
                "run_type": "workflow",
                "options": {"workflow_name": "quarkus-bootstrap-v1", "models": models},
            },
        ).json()
        assert wait_status(c, f"/runs/{bad['id']}", "COMPLETED", "FAILED")["status"] == "FAILED"
        assert "RUN_FAILED" in [e["type"] for e in c.get(f"/runs/{bad['id']}/events").json()]


def test_agent_run_type_runs_the_builtin_agent_flow_with_the_goal(client: TestClient) -> None:
    pid = project(client)["id"]
    rid = client.post("/runs", json={"project_id": pid, "goal": "Write a haiku"}).json()["id"]
    run = wait_status(client, f"/runs/{rid}", "COMPLETED")
    assert run["current_iteration"] == 2
    v = client.get(f"/api/v1/runs/{rid}").json()
    assert v["flow"] == "agent" and v["inputs"] == {"goal": "Write a haiku"}


def test_resume_requeues_a_run_paused_before_it_started(make_app: Any) -> None:
    with TestClient(make_app(worker_enabled=False)) as c:
        pid = project(c)["id"]
        rid = c.post("/runs", json={"project_id": pid, "goal": "x"}).json()["id"]
        assert c.post(f"/runs/{rid}/pause").json()["status"] == "PAUSED"
        assert c.post(f"/runs/{rid}/pause").json()["status"] == "PAUSED"  # idempotent
        c.post("/worker/process")
        assert c.get(f"/runs/{rid}").json()["status"] == "PAUSED"
        assert c.post(f"/runs/{rid}/resume").json()["status"] == "QUEUED"
        assert c.post("/worker/process").json()["message"] == "Processing triggered"
        assert c.get(f"/runs/{rid}").json()["status"] == "COMPLETED"
        done = c.get(f"/runs/{rid}").json()
        assert c.post(f"/runs/{rid}/stop").json() == done  # a finished run: 200, unchanged


@both_stores
def test_stop_really_stops_a_running_workflow(make_app: Any) -> None:
    with TestClient(make_app()) as c:
        pid = project(c)["id"]
        rid = c.post(
            "/runs",
            json={
                "project_id": pid,
                "goal": "x",
                "options": {"models": {"plan": "fake:?latency=30", "execute": "fake:"}},
            },
        ).json()["id"]
        wait_until(
            lambda: any(
                e["type"] == "LLM_GENERATING" for e in c.get(f"/api/v1/runs/{rid}/events").json()["events"]
            ),
            what="the plan step to call its model",
        )
        r = c.post(f"/runs/{rid}/stop").json()
        assert r["status"] == "STOPPED"
        types = [e["type"] for e in c.get(f"/runs/{rid}/events").json()]
        assert "RUN_STOP" in types and "STEP_COMPLETED" not in types
        assert not c.get("/worker/status").json()["active_runs"]


def test_worker_status_and_process(make_app: Any) -> None:
    with TestClient(make_app(worker_enabled=False, check_interval=5)) as c:
        s = c.get("/worker/status").json()
        assert s["running"] is False and s["check_interval"] == 5
        pid = project(c)["id"]
        rid = c.post("/runs", json={"project_id": pid, "goal": "x"}).json()["id"]
        assert c.post("/worker/process").json()["message"] == "Processing triggered"
        assert c.get(f"/runs/{rid}").json()["status"] == "COMPLETED"
    with TestClient(make_app()) as c:
        assert c.get("/worker/status").json()["running"] is True


@pytest.mark.slow
def test_sse_stream_frames_and_last_event_id_resume(make_app: Any) -> None:
    with LiveServer(make_app()) as srv, srv.client() as c:
        pid = project(c)["id"]
        rid = c.post(
            "/runs",
            json={"project_id": pid, "goal": "x", "options": {"models": {"plan": SLOW, "execute": SLOW}}},
        ).json()["id"]
        first: list[dict[str, Any]] = []
        with c.stream("GET", f"/runs/{rid}/events/stream") as r:
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
            for frame in _frames(r):
                first.append(frame)
                if frame["event"] == "PLAN_GENERATED":
                    break
        assert all(f["data"]["id"] == f["id"] and set(f["data"]) == EVENT_KEYS for f in first)
        rest: list[dict[str, Any]] = []
        with c.stream(
            "GET", f"/runs/{rid}/events/stream", headers={"Last-Event-ID": str(first[-1]["id"])}
        ) as r:
            for frame in _frames(r):  # the stream stays open after the run ends, as Agent Runner's
                rest.append(frame)
                if frame["event"] == "RUN_COMPLETED":
                    break
        ids = [f["id"] for f in first + rest]
        stored = [e["id"] for e in c.get(f"/runs/{rid}/events").json()]
        assert ids == stored  # nothing lost, nothing twice
        assert rest[-1]["event"] == "RUN_COMPLETED"


def _frames(r: httpx.Response) -> Any:
    import json

    cur: dict[str, Any] = {}
    for line in r.iter_lines():
        if line.startswith("id: "):
            cur["id"] = int(line[4:])
        elif line.startswith("event: "):
            cur["event"] = line[7:]
        elif line.startswith("data: "):
            cur["data"] = json.loads(line[6:])
        elif line == "" and "data" in cur:
            yield cur
            cur = {}


def test_the_builtin_quarkus_workflow_is_the_example(tmp_path: Path) -> None:
    from llmflow.server.catalog import BUILTIN_DIR

    from .helpers import EXAMPLES

    def body(p: Path) -> list[str]:
        return [line for line in p.read_text().splitlines() if not line.startswith("#")]

    assert body(BUILTIN_DIR / "quarkus-bootstrap-v1.yaml") == body(
        EXAMPLES / "quarkus-bootstrap-v1" / "flow.yaml"
    )
