"""The trust boundaries (steps/trust.py, docs/security.md) through the real surfaces: the
critical shell bypass of issue 14 against `llmflow serve`, what a posted flow may do
without --allow-shell, and cross-site requests (CSRF) on every surface."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from .helpers import ENDED, ServeProcess, base_env, free_port, wait_http, wait_status, write_flow

PWN_FLOW = """\
name: pwn
steps:
  - id: own
    shell: {command: "touch MARKER"}
"""

SAFE_FLOW = """\
name: summarise
inputs:
  text: {type: string, default: x}
steps:
  - id: say
    llm: {prompt: "Summarise {{ inputs.text }}"}
"""


def _write_doc(path: str, content: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": "writer",
        "steps": [{"id": "w", "write_file": {"path": path, "content": content}}],
        **extra,
    }


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """`llmflow serve` as an operator starts it: no token, no --allow-shell, the home as the
    working directory (so conf/ and .llmflow/ are right there)."""
    home = tmp_path_factory.mktemp("served") / "home"
    home.mkdir()
    write_flow(home, "summarise", SAFE_FLOW)
    write_flow(home, "sh", PWN_FLOW.replace("name: pwn", "name: sh").replace("MARKER", str(home / "sh-ran")))
    port = free_port()
    proc = ServeProcess(
        ["serve", "--port", str(port)], base_env(home), home, home.parent / "serve.log"
    ).start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url, 60, proc)
        yield url, home
    finally:
        proc.stop()


@pytest.mark.slow
def test_the_shell_bypass_of_issue_14_is_refused_at_every_step(served: tuple[str, Path]) -> None:
    url, home = served
    marker = home / "pwned"
    pwn = PWN_FLOW.replace("MARKER", str(marker))
    with httpx.Client(base_url=url, timeout=60) as c:
        # 1. a project at the llmflow home (or above it, or in its conf/ or .llmflow/) is refused
        for surface in ("native", "agent-runner"):
            for path in (".", "conf", "conf/flows", ".llmflow", ".."):
                if surface == "native":
                    r = c.post("/api/v1/projects", json={"name": f"r{path}", "local_path": path})
                else:
                    r = c.post("/projects", params={"name": f"ar{path}", "local_path": path})
                assert r.status_code == 400, (surface, path, r.text)
        # 2. a posted write_file without a project writes into the run's own workspace only
        r = c.post("/api/v1/runs", json={"document": _write_doc("conf/flows/pwn.yaml", pwn)})
        assert r.status_code == 201, r.text
        v = wait_status(c, f"/api/v1/runs/{r.json()['id']}", *ENDED, timeout=60)
        assert v["status"] == "COMPLETED"
        assert Path(v["workspace"]).is_relative_to(home / ".llmflow" / "runs" / v["id"])
        assert not (home / "conf" / "flows" / "pwn.yaml").exists()
        # 3. from a legitimate project, no path reaches conf/ or the store: not '..', not a
        #    symlink inside the project that leads there
        work = home / "work"
        work.mkdir()
        (work / "cfg").symlink_to(home / "conf")
        pid = c.post("/api/v1/projects", json={"name": "work", "local_path": "work"}).json()["id"]
        for path in (
            "../conf/flows/pwn.yaml",
            "cfg/flows/pwn.yaml",
            "../.llmflow/llmflow.db",
            str(home / "conf" / "flows" / "pwn.yaml"),
        ):
            r = c.post(
                "/api/v1/runs", json={"document": _write_doc(path, pwn), "options": {"project_id": pid}}
            )
            v = wait_status(c, f"/api/v1/runs/{r.json()['id']}", *ENDED, timeout=60)
            assert v["status"] == "FAILED", (path, v["status"])
            assert any(
                w in v["steps"][0]["error"]
                for w in ("escapes the workspace", "absolute path", "runs may not write to")
            ), v["steps"][0]["error"]
        assert not (home / "conf" / "flows" / "pwn.yaml").exists()
        # 4. so there is no flow 'pwn' to run, and the shell command never ran
        assert c.post("/api/v1/runs", json={"flow": "pwn"}).status_code == 404
        # 5. a posted flow with the shell step itself is refused before anything runs
        r = c.post("/api/v1/runs", json={"document": pwn})
        assert r.status_code == 422 and "--allow-shell" in r.json()["detail"][0]["hint"]
        # 6. and a plain cross-site form post cannot create the project in the first place
        r = c.post(
            "/projects",
            params={"name": "csrf", "local_path": str(home.parent / "elsewhere")},
            headers={"Origin": "http://evil.example", "Content-Type": "application/x-www-form-urlencoded"},
        )
        assert r.status_code == 403 and "evil.example" in r.json()["detail"]
    assert not marker.exists()
    assert (home / ".llmflow" / "llmflow.db").stat().st_size > 0


# -- what a posted flow may do without --allow-shell --------------------------------------------------

REFUSED = {
    "shell step": ({"name": "x", "steps": [{"id": "s", "shell": "echo hi"}]}, "shell step"),
    "python step": (
        {"name": "x", "steps": [{"id": "p", "python": {"function": "os:system", "args": {"command": "id"}}}]},
        "python step",
    ),
    "nested in parallel": (
        {"name": "x", "steps": [{"id": "g", "parallel": [{"id": "s", "shell": "id"}]}]},
        "shell step",
    ),
    "sub-flow by path": (
        {"name": "x", "steps": [{"id": "f", "flow": "conf/flows/sh.yaml"}]},
        "only a flow this server serves",
    ),
    "sub-flow by template": (
        {
            "name": "x",
            "steps": [{"id": "f", "flow": "{{ inputs.which }}"}],
            "inputs": {"which": {"type": "string", "default": "sh"}},
        },
        "only a flow this server serves",
    ),
    "sub-flow that runs shell": (
        {"name": "x", "steps": [{"id": "f", "flow": "sh"}]},
        "which runs code on the server",
    ),
    "sub-flow with overrides": (
        {
            "name": "x",
            "steps": [{"id": "f", "flow": {"flow": "summarise", "overrides": ["+steps.0.shell=id"]}}],
        },
        "overrides",
    ),
    "importable tool": (
        {
            "name": "x",
            "agents": {"a": {"tools": ["os:system"]}},
            "steps": [{"id": "l", "llm": {"prompt": "x", "agent": "a"}}],
        },
        "runs code",
    ),
    "importable agent_obj": (
        {
            "name": "x",
            "agents": {"a": {"agent_obj": "subprocess.Popen"}},
            "steps": [{"id": "l", "llm": {"prompt": "x", "agent": "a"}}],
        },
        "names code to import",
    ),
    "its own workspace": (
        {"name": "x", "options": {"workspace": "/tmp"}, "steps": [{"id": "l", "llm": "x"}]},
        "cannot choose its workspace",
    ),
    "its own storage": (
        {
            "name": "x",
            "storage": {"type": "file", "path": "/tmp/out.jsonl"},
            "steps": [{"id": "l", "llm": "x"}],
        },
        "where its results are stored",
    ),
    "its own results file (Buttermilk's parameters.save)": (
        {
            "name": "x",
            "parameters": {"save": {"type": "file", "path": "/tmp/out.jsonl"}},
            "steps": [{"id": "l", "llm": "x"}],
        },
        "where its results are stored",
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_a_posted_flow_may_not_lead_to_code_execution(make_app: Any, home: Path, case: str) -> None:
    write_flow(home, "sh", PWN_FLOW.replace("name: pwn", "name: sh").replace("MARKER", str(home / "m")))
    write_flow(home, "summarise", SAFE_FLOW)
    doc, words = REFUSED[case]
    with TestClient(make_app()) as c:
        for route in ("/api/v1/runs", "/api/v1/flows/validate"):
            r = c.post(route, json={"document": doc})
            body = r.json()
            problems = body["detail"] if route.endswith("runs") else body["diagnostics"]
            assert (r.status_code, body.get("valid")) == (
                (422, None) if route.endswith("runs") else (200, False)
            ), r.text
            assert any(words in p["msg"] for p in problems), problems
            assert problems[0]["loc"][:2] == ["body", "document"]
        assert c.get("/api/v1/runs").json()["total"] == 0


def test_a_posted_flow_may_run_served_sub_flows_without_code_and_write_in_its_workspace(
    make_app: Any, home: Path
) -> None:
    write_flow(home, "summarise", SAFE_FLOW)
    doc = {
        "name": "ok",
        "steps": [
            {"id": "sub", "flow": {"flow": "summarise", "inputs": {"text": "tea"}}},
            {"id": "w", "write_file": {"path": "out/notes.md", "content": "{{ steps.sub.output }}"}},
        ],
    }
    with TestClient(make_app()) as c:
        v = c.post("/api/v1/runs", json={"document": doc, "wait": True}).json()
    assert v["status"] == "COMPLETED", v
    assert (Path(v["workspace"]) / "out" / "notes.md").read_text()


def test_allow_shell_lets_posted_flows_run_code(make_app: Any) -> None:
    with TestClient(make_app(allow_shell=True)) as c:
        assert (
            c.post("/api/v1/flows/validate", json={"document": REFUSED["python step"][0]}).json()["valid"]
            is True
        )
        # the workspace and storage of a posted flow stay the server's choice even then
        assert (
            c.post("/api/v1/flows/validate", json={"document": REFUSED["its own workspace"][0]}).json()[
                "valid"
            ]
            is False
        )


def test_a_posted_run_writes_no_hidden_files_that_other_programs_execute(
    make_app: Any, home: Path, tmp_path: Path
) -> None:
    proj = tmp_path / "proj"
    with TestClient(make_app()) as c:
        pid = c.post("/api/v1/projects", json={"name": "p", "local_path": str(proj)}).json()["id"]
        for path in (".bashrc", ".git/hooks/pre-commit", "lib/evil.pth"):
            v = c.post(
                "/api/v1/runs",
                json={"document": _write_doc(path, "x"), "options": {"project_id": pid}, "wait": True},
            ).json()
            assert v["status"] == "FAILED" and "files other programs execute" in v["steps"][0]["error"], (
                path,
                v["steps"][0]["error"],
            )
        v = c.post(
            "/api/v1/runs",
            json={
                "document": _write_doc("src/app.py", "print(1)"),
                "options": {"project_id": pid},
                "wait": True,
            },
        ).json()
        assert v["status"] == "COMPLETED"
    assert (proj / "src" / "app.py").exists() and not (proj / ".bashrc").exists()


# -- cross-site requests --------------------------------------------------------------------------

CROSS_SITE = [
    ({"Origin": "http://evil.example"}, "evil.example"),
    ({"Origin": "null"}, "'null'"),
    ({"Sec-Fetch-Site": "cross-site"}, "Sec-Fetch-Site"),
    ({"Origin": "http://evil.example:8000", "Host": "evil.example:8000"}, "evil.example"),  # DNS rebinding
]


@pytest.mark.parametrize(("headers", "named"), CROSS_SITE)
def test_cross_site_requests_cannot_create_projects_or_runs_on_any_surface(
    make_app: Any, home: Path, headers: dict[str, str], named: str
) -> None:
    with TestClient(make_app()) as c:
        attempts = [
            c.post("/projects", params={"name": "a", "local_path": "work/a"}, headers=headers),
            c.post("/api/v1/projects", json={"name": "b", "local_path": "work/b"}, headers=headers),
            c.post("/api/v1/runs", json={"flow": "hello"}, headers=headers),
            c.post("/runs", json={"project_id": 1, "goal": "x"}, headers=headers),
            c.post("/flow/hello", json={"prompt": "x"}, headers=headers),
            c.get("/flow/hello", params={"prompt": "x"}, headers=headers),
        ]
        for r in attempts:
            assert r.status_code == 403, (r.request.url, r.text)
            assert (
                named in r.json()["detail"]
                and "LLMFLOW_CORS_ORIGINS" in r.json()["detail"]
                or "Sec-Fetch-Site" in r.json()["detail"]
            )
        assert (
            c.get("/api/v1/projects").json()["projects"] == [] and c.get("/api/v1/runs").json()["total"] == 0
        )
        # reading stays possible (CORS decides what a page may read)
        assert c.get("/api/v1/runs", headers=headers).status_code == 200


def test_agent_runners_console_scripts_and_the_servers_own_pages_may_post(make_app: Any, home: Path) -> None:
    with TestClient(make_app(), base_url="http://127.0.0.1:8000") as c:
        # Agent Runner's console at :3001 posts the query form with fetch (a default CORS origin)
        r = c.post(
            "/projects?name=ar&local_path=work/ar",
            headers={"Origin": "http://localhost:3001", "Sec-Fetch-Site": "same-site"},
        )
        assert r.status_code == 200, r.text
        # the web console served by this server: same origin
        assert (
            c.post(
                "/api/v1/projects",
                json={"name": "web", "local_path": "work/web"},
                headers={"Origin": "http://127.0.0.1:8000", "Sec-Fetch-Site": "same-origin"},
            ).status_code
            == 201
        )
        # curl and scripts send neither header
        assert c.post("/api/v1/projects", json={"name": "cli", "local_path": "work/cli"}).status_code == 201
    with TestClient(make_app(cors_origins=["*"])) as c:  # Buttermilk's CORS: '*' lets every origin in
        assert (
            c.post(
                "/api/v1/projects",
                json={"name": "any", "local_path": "work/any"},
                headers={"Origin": "http://evil.example"},
            ).status_code
            == 201
        )


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"]
)
def test_json_routes_take_only_json_bodies(client: TestClient, content_type: str) -> None:
    # a form can only send these types: they never create anything
    for route, body in (
        ("/api/v1/runs", {"flow": "hello"}),
        ("/api/v1/projects", {"name": "f", "local_path": "work/f"}),
        ("/runs", {"project_id": 1, "goal": "g"}),
        ("/flow/hello", {"prompt": "x"}),
    ):
        r = client.post(route, content=json.dumps(body), headers={"Content-Type": content_type})
        assert r.status_code == 422, (route, r.text)


@pytest.mark.slow
def test_a_cross_site_page_cannot_open_a_websocket(make_app: Any) -> None:
    from .helpers import LiveServer

    with LiveServer(make_app()) as srv:
        with pytest.raises(InvalidStatus) as info:
            with connect(f"{srv.ws_url}/ws", origin="http://evil.example"):  # type: ignore[arg-type]
                pass
        assert info.value.response.status_code == 403
        with connect(f"{srv.ws_url}/ws", origin="http://localhost:3001") as ws:  # type: ignore[arg-type]
            assert json.loads(ws.recv(timeout=10))["content"] == "session_started"
        with connect(f"{srv.ws_url}/ws") as ws:  # a script: no Origin
            assert json.loads(ws.recv(timeout=10))["content"] == "session_started"
