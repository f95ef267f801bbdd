"""Agent Runner (johnboyce/agent-runner) as its console, Bruno collection and scripts use it:
its requests, its timeline, its ids (issue 15, items 1-6). docs/compatibility.md names
these tests row by row."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from providers.conftest import ThreadedServer
from providers.test_ollama import FakeOllama
from server.helpers import LiveServer, wait_until

FILES = "=== FILE: pom.xml ===\n<project/>\n=== END FILE ===\n"


def project(c: Any, name: str = "demo", path: str = "projects/demo") -> dict[str, Any]:
    r = c.post("/projects", params={"name": name, "local_path": path})
    assert r.status_code == 200, r.text
    return r.json()


def finished(c: Any, rid: int) -> dict[str, Any]:
    return wait_until(
        lambda: (r := c.get(f"/runs/{rid}").json())["status"] in ("COMPLETED", "FAILED", "STOPPED") and r,
        60,
        what=f"run {rid} to finish",
    )


@pytest.fixture
def mvn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A `mvn` on PATH that prints coloured Maven output and fails when MVN_RESULT=fail."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    m = bin_dir / "mvn"
    m.write_text(
        "#!/bin/sh\n"
        'if [ "$MVN_RESULT" = fail ]; then\n'
        "  printf '\\033[1;31m[ERROR]\\033[m Failed to execute goal: compilation failure\\n'\n"
        "  printf '[ERROR] GreetingResource.java:[3,8] cannot find symbol\\n'\n"
        "  printf '[INFO] BUILD FAILURE\\n[INFO] Total time: 1.2 s\\n[INFO] Finished at: now\\n'\n"
        "  exit 1\nfi\n"
        "echo '[INFO] BUILD SUCCESS'\n"
    )
    m.chmod(m.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return m


@pytest.fixture
def ollama() -> Any:
    """A loopback server speaking Ollama's routes (the provider tests' fake)."""
    fake = FakeOllama()
    fake.models.append("gemma3:27b")
    with ThreadedServer(fake.app()) as srv:
        srv.fake = fake
        yield srv


def test_quarkus_timeline_is_agent_runners_with_bare_ollama_model_names(
    make_app: Any, mvn: Path, ollama: Any
) -> None:
    """Item 1 and 2: the workflow's timeline has Agent Runner's names and messages; a bare
    model name in options.models is an Ollama model."""
    app = make_app(env={"OLLAMA_BASE_URL": ollama.url, "LLMFLOW_BLOCK_REAL_MODELS": "0"})
    with TestClient(app) as c:
        pid = project(c, "quarkus", "projects/q")["id"]
        models = {"planner": "gemma3:27b", "coder": "fake:?answer=" + quote(FILES)}
        run = c.post(
            "/runs",
            json={
                "project_id": pid,
                "goal": "A hello service",
                "run_type": "workflow",
                "options": {"workflow_name": "quarkus-bootstrap-v1", "models": models},
            },
        ).json()
        assert isinstance(run["id"], int)
        status = finished(c, run["id"])["status"]
        events = c.get(f"/runs/{run['id']}/events").json()
        assert status == "COMPLETED", "\n".join(f"{e['type']} {e['payload'][:200]}" for e in events)
        types = [e["type"] for e in events]
        assert types[:5] == [
            "RUN_CREATED",
            "RUN_STARTED",
            "WORKFLOW_LOOKUP",
            "WORKFLOW_START",
            "WORKFLOW_STARTED",
        ]
        assert types[-3:] == ["WORKFLOW_COMPLETED", "WORKFLOW_SUMMARY", "RUN_COMPLETED"]
        assert not [t for t in types if t.startswith("ATTEMPT_") or t == "LLM_TOKENS"]
        payloads = {e["type"]: [] for e in events}
        for e in events:
            payloads[e["type"]].append(e["payload"])
        assert payloads["RUN_CREATED"] == ["A hello service"]  # the goal
        assert payloads["WORKFLOW_LOOKUP"] == ["Looking up workflow: quarkus-bootstrap-v1"]
        assert payloads["WORKFLOW_STARTED"] == ["Starting quarkus-bootstrap-v1 v1.0.0"]
        assert payloads["LLM_LOADING_MODEL"][0] == "Loading model: gemma3:27b"
        assert payloads["STEP_STARTED"][0] == "Step 1: planner - Create project plan using gemma3:27b"
        assert payloads["STEP_STARTED"][1].startswith(
            "Step 2: coder - Generate the Maven project using fake:"
        )
        assert payloads["STEP_STARTED"][2] == "Step 3: maven_test - Run Maven test to verify project builds"
        assert payloads["STEP_COMPLETED"] == [
            "Step 1 completed: planner",
            "Step 2 completed: coder",
            "Step 3 completed: maven_test",
        ]
        assert payloads["SHELL_EXECUTING"] == ["Running: mvn -B -q test"]
        assert all(p.startswith("Artifact: /") for p in payloads["ARTIFACT_CREATED"])
        assert payloads["WORKFLOW_SUMMARY"] == [
            f"Workflow completed: 3 steps, {len(payloads['ARTIFACT_CREATED'])} artifacts"
        ]
        assert any(p.startswith("Generation complete (") and " chars, " in p for p in payloads["LLM_DONE"])
        # ids are integers, increasing; after_id takes them
        ids = [e["id"] for e in events]
        assert ids == sorted(set(ids)) and all(isinstance(i, int) for i in ids)
        assert c.get(f"/runs/{run['id']}/events", params={"after_id": ids[4]}).json() == events[5:]
        # the native API keeps llmflow's vocabulary over the same log
        native = [e["type"] for e in c.get(f"/api/v1/runs/{run['id']}/events").json()["events"]]
        assert "ATTEMPT_STARTED" in native and "WORKFLOW_LOOKUP" not in native
    # the Ollama server was asked for the bare name
    assert any(kind == "chat" and body["model"] == "gemma3:27b" for kind, body in ollama.fake.calls)


def test_unresolvable_model_is_422_at_create(client: TestClient) -> None:
    """Item 2: a model llmflow cannot resolve is refused at POST /runs, not later."""
    pid = project(client)["id"]
    r = client.post(
        "/runs",
        json={
            "project_id": pid,
            "goal": "x",
            "run_type": "workflow",
            "options": {"models": {"nostep": "optcoder"}},
        },
    )
    assert r.status_code == 422
    r = client.post(
        "/runs",
        json={"project_id": pid, "goal": "x", "run_type": "workflow", "options": {"models": {"coder": ""}}},
    )
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "options", "models"]


def test_unknown_workflow_creates_a_run_that_fails_with_workflow_not_found(client: TestClient) -> None:
    """Item 3."""
    pid = project(client)["id"]
    r = client.post(
        "/runs",
        json={
            "project_id": pid,
            "goal": "x",
            "run_type": "workflow",
            "options": {"workflow": "no-such-workflow"},
        },
    )
    assert r.status_code == 200
    run = r.json()
    assert isinstance(run["id"], int)
    assert finished(client, run["id"])["status"] == "FAILED"
    events = client.get(f"/runs/{run['id']}/events").json()
    assert [e["type"] for e in events] == [
        "RUN_CREATED",
        "WORKFLOW_LOOKUP",
        "WORKFLOW_NOT_FOUND",
        "RUN_FAILED",
    ]
    assert events[2]["payload"] == "Workflow not found: no-such-workflow"


def test_failing_test_command_cause_reaches_run_failed(
    make_app: Any, mvn: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Item 6: the meaningful error lines, ANSI codes stripped, reach RUN_FAILED and WORKFLOW_FAILED."""
    monkeypatch.setenv("MVN_RESULT", "fail")
    with TestClient(make_app()) as c:
        pid = project(c, "q", "projects/q")["id"]
        run = c.post(
            "/runs",
            json={
                "project_id": pid,
                "goal": "x",
                "run_type": "workflow",
                "options": {"models": {"coder": "fake:?answer=" + quote(FILES)}},
            },
        ).json()
        assert finished(c, run["id"])["status"] == "FAILED"
        events = {e["type"]: e["payload"] for e in c.get(f"/runs/{run['id']}/events").json()}
        for t in ("WORKFLOW_FAILED", "RUN_FAILED"):
            assert "cannot find symbol" in events[t] or "Failed to execute goal" in events[t], events[t]
            assert "\x1b[" not in events[t]


def test_integer_ids_everywhere_and_native_routes_take_both(client: TestClient) -> None:
    """Item 5: the console reads ids as numbers; every route takes both forms."""
    pid = project(client)["id"]
    run = client.post("/runs", json={"project_id": pid, "goal": "Write a haiku"}).json()
    rid = run["id"]
    assert isinstance(rid, int)
    assert client.get(f"/runs/{rid}").json()["goal"] == "Write a haiku"
    assert client.get("/runs").json()[0]["id"] == rid
    native = client.get(f"/api/v1/runs/{rid}").json()
    assert native["inputs"] == {"goal": "Write a haiku"} and isinstance(native["id"], str)
    assert client.get(f"/runs/{native['id']}").json()["id"] == rid  # the string id works here too
    assert client.get("/runs/999999").status_code == 404 and client.get("/runs/999999").json() == {
        "detail": "Run not found"
    }
    assert client.get("/api/v1/runs/999999").status_code == 404


def test_agent_run_type_emits_agent_runners_agent_events(client: TestClient) -> None:
    """Item 5: run_type agent -> AGENT_THINKING, PLAN_GENERATED, EXECUTING."""
    pid = project(client)["id"]
    rid = client.post("/runs", json={"project_id": pid, "goal": "Write a haiku"}).json()["id"]
    assert finished(client, rid)["status"] == "COMPLETED"
    events = client.get(f"/runs/{rid}/events").json()
    assert [e["type"] for e in events] == [
        "RUN_CREATED",
        "RUN_STARTED",
        "AGENT_THINKING",
        "PLAN_GENERATED",
        "EXECUTING",
        "RUN_COMPLETED",
    ]
    assert events[2]["payload"] == "Analyzing goal: Write a haiku"


def test_local_path_anywhere_usable_and_errors_are_strings(
    client: TestClient, tmp_path: Path, home: Path
) -> None:
    """Item 5: any directory the server's user can use; refusals say why in a string."""
    outside = tmp_path / "my-project"
    assert client.post("/projects", params={"name": "my-project", "local_path": str(outside)}).json()[
        "local_path"
    ] == str(outside)
    for bad in (str(home), "~0", str(home / ".llmflow")):
        r = client.post("/projects", params={"name": f"p{abs(hash(bad))}", "local_path": bad})
        assert r.status_code == 400, (bad, r.text)
        assert isinstance(r.json()["detail"], str) and "local_path" in r.json()["detail"]
    r = client.post("/runs", json={"project_id": 4242, "goal": "x"})
    assert r.status_code == 404 and r.json() == {"detail": "Project with id 4242 not found"}


def test_cors_defaults_are_agent_runners_console_origins(client: TestClient) -> None:
    """Item 5: CORS_ORIGINS defaults to http://localhost:3001 and http://127.0.0.1:3001."""
    for origin in ("http://localhost:3001", "http://127.0.0.1:3001"):
        r = client.options("/runs", headers={"Origin": origin, "Access-Control-Request-Method": "POST"})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == origin
        assert (
            client.get("/runs", headers={"Origin": origin}).headers["access-control-allow-origin"] == origin
        )
    r = client.options(
        "/runs", headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"}
    )
    assert r.headers.get("access-control-allow-origin") is None


def test_cors_origins_env_is_honoured(make_app: Any) -> None:
    with TestClient(make_app(env={"CORS_ORIGINS": "http://console.example:3001"})) as c:
        r = c.get("/runs", headers={"Origin": "http://console.example:3001"})
        assert r.headers["access-control-allow-origin"] == "http://console.example:3001"
        assert (
            c.get("/runs", headers={"Origin": "http://localhost:3001"}).headers.get(
                "access-control-allow-origin"
            )
            is None
        )


def test_health_is_exactly_ok_and_details_need_the_token(make_app: Any) -> None:
    """Item 5: /health is exactly {"status": "ok"}; details on an authenticated route."""
    with TestClient(make_app(env={"LLMFLOW_API_TOKEN": "s3cret"})) as c:
        assert c.get("/health").json() == {"status": "ok"}
        assert c.get("/api/v1/health").status_code == 401
        d = c.get("/api/v1/health", headers={"Authorization": "Bearer s3cret"}).json()
        assert d["status"] == "healthy" and "store" in d and "worker" in d


def test_control_of_a_finished_run_is_200_unchanged_and_stop_says_stopped(make_app: Any) -> None:
    """Item 5: pause / resume / stop on a finished run: 200 with the run unchanged."""
    with TestClient(make_app(worker_enabled=False)) as c:
        pid = project(c)["id"]
        rid = c.post("/runs", json={"project_id": pid, "goal": "x"}).json()["id"]
        stopped = c.post(f"/runs/{rid}/stop")
        assert stopped.status_code == 200 and stopped.json()["status"] == "STOPPED"
        assert [e["type"] for e in c.get(f"/runs/{rid}/events").json()][-1] == "RUN_STOP"
        assert "STOPPED" in c.get(f"/runs/{rid}/events").json()[-1]["payload"]
        for action in ("pause", "resume", "stop"):
            r = c.post(f"/runs/{rid}/{action}")
            assert r.status_code == 200 and r.json() == stopped.json()
        rid2 = c.post("/runs", json={"project_id": pid, "goal": "y"}).json()["id"]
        c.post("/worker/process")
        done = c.get(f"/runs/{rid2}").json()
        assert done["status"] == "COMPLETED"
        for action in ("pause", "resume", "stop"):
            assert c.post(f"/runs/{rid2}/{action}").json() == done


def test_directive_returns_the_recorded_event_with_its_id(make_app: Any) -> None:
    """Item 5: POST /runs/{id}/directive answers with the event, id included."""
    with TestClient(make_app(worker_enabled=False)) as c:
        pid = project(c)["id"]
        rid = c.post("/runs", json={"project_id": pid, "goal": "x"}).json()["id"]
        d = c.post(f"/runs/{rid}/directive", json={"text": "use Java 21"}).json()
        assert (
            isinstance(d["id"], int)
            and d["run_id"] == rid
            and d["type"] == "DIRECTIVE"
            and d["payload"] == "use Java 21"
        )
        assert c.get(f"/runs/{rid}/events").json()[-1] == d


@pytest.mark.timeout(120)
def test_sse_stream_stays_open_after_the_run_ends_with_keepalives(make_app: Any) -> None:
    """Item 5: Agent Runner's stream stays open once the run has finished (keep-alives)."""
    with LiveServer(make_app()) as srv, srv.client() as c:
        pid = project(c)["id"]
        rid = c.post("/runs", json={"project_id": pid, "goal": "x"}).json()["id"]
        finished(c, rid)
        seen: list[str] = []
        keepalives = 0
        with c.stream("GET", f"/runs/{rid}/events/stream") as r:
            assert r.status_code == 200
            for line in r.iter_lines():
                if line.startswith("event: "):
                    seen.append(line[7:])
                if line == ": keepalive" and "RUN_COMPLETED" in seen:
                    keepalives += 1
                    if keepalives == 2:
                        break  # still open after the end, two keep-alives later
        assert seen[0] == "RUN_CREATED" and seen[-1] == "RUN_COMPLETED"
        # Last-Event-ID resumes after a line: nothing twice
        events = c.get(f"/runs/{rid}/events").json()
        with c.stream(
            "GET", f"/runs/{rid}/events/stream", headers={"Last-Event-ID": str(events[2]["id"])}
        ) as r:
            ids = []
            for line in r.iter_lines():
                if line.startswith("id: "):
                    ids.append(int(line[4:]))
                if line.startswith("data: ") and json.loads(line[6:])["type"] == "RUN_COMPLETED":
                    break
        assert ids == [e["id"] for e in events[3:]]


def test_unknown_run_stream_is_404(client: TestClient) -> None:
    assert client.get("/runs/424242/events/stream").status_code == 404
    assert client.get("/runs/nope/events/stream").json() == {"detail": "Run not found"}


def test_project_path_tilde_user_that_does_not_exist_is_400_not_500(client: TestClient) -> None:
    """Known defect: Path('~0').expanduser() raises RuntimeError; it is a clean 400."""
    for api, kw in (
        ("/projects", {"params": {"name": "t", "local_path": "~0/x"}}),
        ("/api/v1/projects", {"json": {"name": "t", "local_path": "~nosuchuser0"}}),
    ):
        r = client.post(api, **kw)
        assert r.status_code == 400, r.text
        assert "cannot resolve" in r.json()["detail"]


def test_options_set_workflow_parameters_and_step_timeouts(make_app: Any, mvn: Path) -> None:
    """Item 6 and 4: options.parameters sets the workflow's parameters (the test command);
    options.timeout_seconds is the timeout of steps without their own."""
    with TestClient(make_app()) as c:
        pid = project(c, "q", "projects/q")["id"]
        opts = {
            "models": {"coder": "fake:?answer=" + quote(FILES)},
            "parameters": {"test_command": "mvn -B verify"},
            "timeout_seconds": 77,
        }
        run = c.post(
            "/runs", json={"project_id": pid, "goal": "x", "run_type": "workflow", "options": opts}
        ).json()
        assert finished(c, run["id"])["status"] == "COMPLETED"
        lines = [e["payload"] for e in c.get(f"/runs/{run['id']}/events").json()]
        assert "Running: mvn -B verify" in lines
        # each attempt's deadline: planner keeps its own 300 s, save_plan (none of its own) gets 77
        native = c.get(f"/api/v1/runs/{run['id']}/events").json()["events"]
        from datetime import datetime

        budget = {
            e["step_id"]: e["payload"]["timeout_at"]
            - datetime.fromisoformat(e["ts"].replace("Z", "+00:00")).timestamp()
            for e in native
            if e["type"] == "ATTEMPT_STARTED" and e["payload"].get("timeout_at")
        }
        assert (
            round(budget["planner"]) == 300
            and round(budget["save_plan"]) == 77
            and round(budget["maven_test"]) == 1800
        )
        r = c.post(
            "/runs",
            json={
                "project_id": pid,
                "goal": "x",
                "run_type": "workflow",
                "options": {"parameters": {"nope": 1}},
            },
        )
        assert r.status_code == 422 and "test_command" in r.json()["detail"][0]["msg"]
