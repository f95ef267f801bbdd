"""Bearer token, loopback-only without a token, CORS, shell steps in posted flows, the
projects root, request size limits."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from llmflow.cli.main import main
from llmflow.server.config import ServerConfig, is_loopback

from .helpers import SHELL_FLOW, LiveServer, write_flow

TOKEN = "s3cret-token"


@pytest.mark.parametrize("host", ["127.0.0.1", "127.1.2.3", "localhost", "::1", "[::1]"])
def test_loopback_hosts(host: str) -> None:
    assert is_loopback(host)
    assert ServerConfig(host=host).security_problem() is None


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "example.com"])
def test_other_hosts_need_a_token(host: str) -> None:
    assert not is_loopback(host)
    assert "LLMFLOW_API_TOKEN" in (ServerConfig(host=host).security_problem() or "")
    assert ServerConfig(host=host, api_token="t").security_problem() is None


def test_serve_refuses_to_start_on_a_public_address_without_a_token(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.delenv("LLMFLOW_API_TOKEN", raising=False)
    monkeypatch.setenv("LLMFLOW_HOME", str(tmp_path))
    with pytest.raises(SystemExit) as info:
        main(["serve", "--host", "0.0.0.0", "--port", "0"])
    assert info.value.code == 2
    assert "LLMFLOW_API_TOKEN" in capsys.readouterr().err


def test_every_route_but_health_needs_the_token(make_app: Any) -> None:
    app = make_app(api_token=TOKEN)
    with TestClient(app) as c:
        assert c.get("/health").status_code == 200
        schema = app.openapi()["paths"]
        paths = sorted(p for p, ops in schema.items() if "get" in ops and "{" not in p and p != "/health") + [
            "/docs",
            "/openapi.json",
        ]
        assert {"/api/v1/runs", "/runs", "/api/flows", "/api/session", "/worker/status"} <= set(paths)
        for p in paths:
            r = c.get(p)
            assert r.status_code == 401, p
            assert r.headers["www-authenticate"] == "Bearer"
        assert c.post("/api/v1/runs", json={"flow": "hello"}).status_code == 401
        assert c.get("/api/v1/runs", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.get("/api/v1/runs", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        assert c.get("/api/v1/runs", headers={"Authorization": f"bearer {TOKEN}"}).status_code == 200
        assert (
            c.get("/api/v1/runs", params={"token": TOKEN}).status_code == 401
        )  # query tokens: WebSockets only


@pytest.mark.slow
def test_websockets_need_the_token_too(make_app: Any) -> None:
    with LiveServer(make_app(api_token=TOKEN)) as srv:
        with pytest.raises(InvalidStatus) as info:
            with connect(f"{srv.ws_url}/ws"):
                pass
        assert info.value.response.status_code == 403
        with connect(f"{srv.ws_url}/ws", additional_headers={"Authorization": f"Bearer {TOKEN}"}) as ws:
            assert json.loads(ws.recv(timeout=10))["content"] == "session_started"
        with connect(f"{srv.ws_url}/ws?token={TOKEN}") as ws:
            assert json.loads(ws.recv(timeout=10))["content"] == "session_started"


def test_cors_origins_are_configurable_and_default_to_agent_runners_console(make_app: Any) -> None:
    with TestClient(make_app(cors_origins=["http://localhost:3001"], api_token=TOKEN)) as c:
        pre = c.options(
            "/runs", headers={"Origin": "http://localhost:3001", "Access-Control-Request-Method": "POST"}
        )
        assert (
            pre.status_code == 200 and pre.headers["access-control-allow-origin"] == "http://localhost:3001"
        )
        other = c.options(
            "/runs", headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"}
        )
        assert "access-control-allow-origin" not in other.headers
        r = c.get("/health", headers={"Origin": "http://localhost:3001"})
        assert r.headers["access-control-allow-origin"] == "http://localhost:3001"
    # Agent Runner's CORS_ORIGINS default applies (issue 15); LLMFLOW_CORS_ORIGINS="" turns it off
    with TestClient(make_app()) as c:
        assert (
            c.get("/health", headers={"Origin": "http://127.0.0.1:3001"}).headers[
                "access-control-allow-origin"
            ]
            == "http://127.0.0.1:3001"
        )
    with TestClient(make_app(env={"LLMFLOW_CORS_ORIGINS": ""})) as c:
        assert (
            "access-control-allow-origin"
            not in c.get("/health", headers={"Origin": "http://localhost:3001"}).headers
        )
    assert ServerConfig.from_env({"CORS_ORIGINS": "http://a:1/, http://b:2"}).cors_origins == [
        "http://a:1",
        "http://b:2",
    ]


def test_shell_steps_of_posted_flows_need_allow_shell(make_app: Any, home: Path) -> None:
    write_flow(home, "sh", SHELL_FLOW)
    doc = {"name": "posted", "steps": [{"id": "run", "shell": {"command": "echo posted"}}]}
    with TestClient(make_app()) as c:
        r = c.post("/api/v1/runs", json={"document": doc})
        assert r.status_code == 422 and "--allow-shell" in r.json()["detail"][0]["hint"]
        # the server's own flows may run shell steps
        v = c.post("/api/v1/runs", json={"flow": "sh", "wait": True}).json()
        assert v["status"] == "COMPLETED" and v["steps"][0]["output"]["stdout"] == "done\n"
    with TestClient(make_app(allow_shell=True)) as c:
        v = c.post("/api/v1/runs", json={"document": doc, "wait": True}).json()
        assert v["status"] == "COMPLETED" and v["steps"][0]["output"]["stdout"] == "posted\n"


def test_a_posted_flow_run_refuses_shell_even_if_it_gets_past_the_check(make_app: Any) -> None:
    # defence in depth: the run records disallow_shell, which the runtime enforces
    with TestClient(make_app()) as c:
        svc = c.app.state.services
        loaded = svc.parse_document({"name": "ok", "steps": [{"id": "a", "llm": {"prompt": "x"}}]})
        from llmflow.model.spec import Flow

        flow = Flow.model_validate(
            {"name": "sneaky", "steps": [{"id": "run", "kind": "shell", "command": "echo hi"}]}
        )
        loaded.flow = flow
        rec = svc.submit(loaded, {}, svc.options(posted=True))
        c.post("/api/v1/worker/process")
        v = c.get(f"/api/v1/runs/{rec.id}").json()
    assert v["status"] == "FAILED" and "disabled" in v["steps"][0]["error"]


def test_project_paths_may_be_anywhere_the_trust_boundaries_allow(
    make_app: Any, home: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (home / "conf" / "flows").mkdir(parents=True)
    (home / "to-conf").symlink_to(home / "conf")
    refused = {
        ".": "llmflow home",
        "": None,
        str(home): "llmflow home",
        "..": "llmflow home",
        "/": "filesystem root",
        "conf": "flow definitions",
        "conf/flows/x": "flow definitions",
        "to-conf/flows": "flow definitions",  # a symlink is followed before the check
        ".llmflow": "store and run files",
        ".llmflow/runs/other": "store and run files",
        "/etc/cron.d": "run by other programs",
        "/usr/lib": "run by other programs",
    }
    with TestClient(make_app()) as c:
        for path, why in refused.items():
            r = c.post("/projects", params={"name": f"p{abs(hash(path))}", "local_path": path})
            if why is None:
                assert r.status_code == 422, path  # empty: a validation error, as in Agent Runner
                continue
            assert r.status_code == 400, (path, r.text)
            d = r.json()["detail"]
            assert isinstance(d, str) and "local_path" in d and why in d, (path, d)
        r = c.post("/api/v1/projects", json={"name": "x", "local_path": "."})
        assert r.status_code == 400 and "local_path '.'" in r.json()["detail"]
        # as in Agent Runner, any other directory the server's user can use (issue 15)
        assert c.post("/projects", params={"name": "out", "local_path": str(outside)}).json()[
            "local_path"
        ] == str(outside)
        assert c.post("/projects", params={"name": "rel", "local_path": "../outside/p"}).json()[
            "local_path"
        ] == str(outside / "p")
        assert c.post("/projects", params={"name": "in", "local_path": "work/a"}).json()["local_path"] == str(
            home / "work" / "a"
        )
    root = tmp_path / "projects"
    root.mkdir()
    with TestClient(make_app(projects_root=root)) as c:
        assert c.post("/projects", params={"name": "in2", "local_path": "p"}).json()["local_path"] == str(
            root / "p"
        )
        r = c.post("/projects", params={"name": "out2", "local_path": str(outside)})
        assert r.status_code == 400 and "LLMFLOW_PROJECTS_ROOT" in r.json()["detail"]
    # a server other machines can reach keeps projects in a projects root
    with TestClient(
        make_app(host="0.0.0.0", api_token=TOKEN), headers={"Authorization": f"Bearer {TOKEN}"}
    ) as c:
        r = c.post("/projects", params={"name": "lan", "local_path": str(outside)})
        assert r.status_code == 400 and "set LLMFLOW_PROJECTS_ROOT" in r.json()["detail"]


def test_request_bodies_are_limited(make_app: Any) -> None:
    with TestClient(make_app(max_body_bytes=1000)) as c:
        big = {"flow": "hello", "inputs": {"prompt": "x" * 2000}}
        r = c.post("/api/v1/runs", json=big)
        assert r.status_code == 413 and "LLMFLOW_MAX_BODY_BYTES" in r.json()["detail"]

        def chunks() -> Any:
            for _ in range(4):
                yield b" " * 400
            yield b"{}"

        r = c.post("/api/v1/flows/validate", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413
        assert (
            c.post("/api/v1/runs", json={"flow": "hello", "inputs": {"prompt": "small"}}).status_code == 201
        )


def test_env_settings_are_read_by_the_config() -> None:
    cfg = ServerConfig.from_env(
        {
            "LLMFLOW_API_TOKEN": " t ",
            "LLMFLOW_CORS_ORIGINS": "http://a, http://b",
            "LLMFLOW_PROJECTS_ROOT": "/srv/p",
            "LLMFLOW_MAX_BODY_BYTES": "10",
            "LLMFLOW_MAX_FRAME_BYTES": "20",
            "DISABLE_WORKER": "1",
            "WORKER_CHECK_INTERVAL": "5",
        },
        workers=3,
    )
    assert (
        cfg.api_token,
        cfg.cors_origins,
        str(cfg.projects_root),
        cfg.max_body_bytes,
        cfg.max_frame_bytes,
        cfg.worker_enabled,
        cfg.check_interval,
        cfg.workers,
    ) == ("t", ["http://a", "http://b"], "/srv/p", 10, 20, False, 5.0, 3)
    with pytest.raises(ValueError, match="WORKER_CHECK_INTERVAL"):
        ServerConfig.from_env({"WORKER_CHECK_INTERVAL": "soon"})
    assert ServerConfig.from_env({}, workers=0).worker_enabled is False


@pytest.mark.slow
def test_the_token_never_reaches_the_access_log(tmp_path: Path) -> None:
    from .helpers import ServeProcess, base_env, free_port, wait_http

    home = tmp_path / "home"
    home.mkdir()
    port = free_port()
    secret = "tok-" + "9" * 24
    proc = ServeProcess(
        ["serve", "--port", str(port), "--log-level", "info"],
        base_env(home, LLMFLOW_API_TOKEN=secret),
        home,
        tmp_path / "serve.log",
    ).start()
    try:
        wait_http(f"http://127.0.0.1:{port}", 60, proc)
        with connect(f"ws://127.0.0.1:{port}/ws?token={secret}&since=0") as ws:
            assert json.loads(ws.recv(timeout=10))["content"] == "session_started"
        import httpx

        assert httpx.get(f"http://127.0.0.1:{port}/api/v1/runs", params={"token": secret}).status_code == 401
    finally:
        proc.stop()
    log = proc.output()
    assert '"WebSocket /ws?token=***&since=0"' in log and "GET /api/v1/runs?token=***" in log, log[-2000:]
    assert secret not in log
