"""The native API (/api/v1): every route, its answers and its error codes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from .helpers import HUMAN_FLOW, SLOW, SLOW_FLOW, both_stores, wait_status, wait_until, write_flow


def test_health_reports_version_store_and_worker(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}  # open to anyone: says nothing more
    h = client.get("/api/v1/health").json()
    assert h["status"] == "healthy"
    assert h["version"]
    assert h["store"]["ok"] is True
    assert h["worker"]["running"] is True


def test_flows_lists_served_config_dir_and_builtin_flows(make_app: Any, home: Path) -> None:
    write_flow(home, "ask", HUMAN_FLOW)
    with TestClient(make_app()) as c:
        rows = {f["name"]: f for f in c.get("/api/v1/flows").json()["flows"]}
    assert {"review", "hello", "panel", "ask", "quarkus-bootstrap-v1", "agent"} <= set(rows)
    assert (
        rows["ask"]["origin"] == "config"
        and rows["review"]["origin"] == "flows"
        and rows["quarkus-bootstrap-v1"]["origin"] == "builtin"
    )
    assert rows["review"]["inputs"]["text"]["required"] is True


def test_an_invalid_flow_in_the_config_dir_is_listed_as_invalid(make_app: Any, home: Path) -> None:
    write_flow(home, "broken", "name: broken\nsteps: []\n")
    with TestClient(make_app()) as c:
        rows = {f["name"]: f for f in c.get("/api/v1/flows").json()["flows"]}
        assert rows["broken"]["valid"] is False and rows["broken"]["error"]
        r = c.post("/api/v1/runs", json={"flow": "broken"})
    assert r.status_code == 422


def test_show_flow_and_its_graph(client: TestClient) -> None:
    f = client.get("/api/v1/flows/review").json()
    assert [s["id"] for s in f["steps"]] == ["classify", "critics", "report", "save"]
    assert f["definition"]["name"] == "review"
    g = client.get("/api/v1/flows/review/graph").json()
    assert g["mermaid"].startswith("flowchart TD")
    text = client.get("/api/v1/flows/review/graph", params={"format": "text"})
    assert text.headers["content-type"].startswith("text/plain") and "classify" in text.text
    assert client.get("/api/v1/flows/nope").status_code == 404
    assert client.get("/api/v1/flows/nope/graph").status_code == 404
    assert client.get("/api/v1/flows/review/graph", params={"format": "svg"}).status_code == 422


def test_validate_a_served_flow_or_a_document_with_field_paths(client: TestClient) -> None:
    assert client.post("/api/v1/flows/validate", json={"flow": "review"}).json() == {
        "valid": True,
        "flow": "review",
        "diagnostics": [],
    }
    ok = client.post(
        "/api/v1/flows/validate",
        json={"document": {"name": "d", "steps": [{"id": "a", "llm": {"prompt": "hi"}}]}},
    ).json()
    assert ok["valid"] is True
    bad = client.post(
        "/api/v1/flows/validate",
        json={"document": "name: d\nsteps:\n  - id: a\n    llm: {prompt: hi, bogus: 1}\n"},
    ).json()
    assert bad["valid"] is False
    assert bad["diagnostics"][0]["loc"][:3] == ["body", "document", "steps"]
    assert client.post("/api/v1/flows/validate", json={"flow": "nope"}).status_code == 404
    assert client.post("/api/v1/flows/validate", json={}).status_code == 422


@both_stores
def test_create_with_wait_answers_with_the_finished_run(client: TestClient) -> None:
    r = client.post("/api/v1/runs", json={"flow": "review", "inputs": {"text": "hello"}, "wait": True})
    assert r.status_code == 200
    v = r.json()
    assert v["status"] == "COMPLETED"
    assert [s["status"] for s in v["steps"]] == ["COMPLETED"] * 4
    assert v["usage"]["input_tokens"] > 0
    assert v["steps"][1]["attempts"] and v["outputs"]["verdict"]


@both_stores
def test_a_queued_run_is_executed_by_the_worker(client: TestClient) -> None:
    r = client.post(
        "/api/v1/runs",
        json={
            "flow": "hello",
            "inputs": {"prompt": "why?"},
            "options": {
                "models": "fake:?answer=because",
                "timeout_seconds": 60,
                "name": "mine",
                "metadata": {"k": "v"},
            },
        },
    )
    assert r.status_code == 201
    summary = r.json()
    assert summary["status"] == "QUEUED" and summary["name"] == "mine"
    v = wait_status(client, f"/api/v1/runs/{summary['id']}", "COMPLETED")
    assert v["outputs"] == {"result": "because"}
    assert v["options"]["timeout"] == 60 and v["options"]["models"] == {"*": "fake:?answer=because"}


def test_create_run_errors_name_the_field(client: TestClient) -> None:
    def post(body: dict[str, Any]) -> tuple[int, Any]:
        r = client.post("/api/v1/runs", json=body)
        return r.status_code, r.json()["detail"]

    code, detail = post({"flow": "nope"})
    assert code == 404 and "nope" in detail
    code, detail = post({"flow": "review"})
    assert code == 422 and detail[0]["loc"] == ["body", "inputs", "text"]
    code, detail = post({"flow": "review", "inputs": {"text": "x", "txet": 1}})
    assert code == 422 and ["body", "inputs", "txet"] in [d["loc"] for d in detail]
    code, detail = post({"flow": "review", "document": "name: x"})
    assert code == 422
    code, detail = post({"flow": "review", "inputs": {"text": "x"}, "options": {"modles": {}}})
    assert code == 422 and detail[0]["loc"] == ["body", "options", "modles"]
    code, detail = post(
        {"flow": "review", "inputs": {"text": "x"}, "options": {"models": {"nostep": "fake:"}}}
    )
    assert code == 422 and detail[0]["loc"] == ["body", "models", "nostep"]
    code, detail = post({"flow": "review", "inputs": {"text": "x"}, "options": {"models": "no-provider"}})
    assert code == 422 and detail[0]["loc"][:3] == ["body", "options", "models"]
    code, detail = post({"flow": "review", "inputs": {"text": "x"}, "options": {"project_id": 999}})
    assert code == 404 and detail[0]["loc"] == ["body", "options", "project_id"]
    code, detail = post({"flow": "review", "inputs": {"text": "x"}, "options": {"timeout_seconds": -1}})
    assert code == 422 and detail[0]["loc"] == ["body", "options", "timeout_seconds"]
    r = client.post("/api/v1/runs", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422
    r = client.post(
        "/api/v1/runs",
        content=b'{"flow": "hello", "inputs": {"prompt": NaN}}',
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 422 and r.json()["detail"][0]["loc"][:2] == ["body", "inputs"]


def test_list_runs_filters_and_pages(make_app: Any) -> None:
    with TestClient(make_app(worker_enabled=False)) as c:
        ids = [
            c.post("/api/v1/runs", json={"flow": "hello", "inputs": {"prompt": f"p{i}"}}).json()["id"]
            for i in range(5)
        ]
        c.post("/api/v1/runs", json={"flow": "review", "inputs": {"text": "t"}})
        page = c.get("/api/v1/runs", params={"flow": "hello", "limit": 2}).json()
        assert page["total"] == 5 and len(page["runs"]) == 2
        assert [r["id"] for r in page["runs"]] == ids[::-1][:2]  # newest first
        rest = c.get("/api/v1/runs", params={"flow": "hello", "limit": 10, "offset": 2}).json()
        assert [r["id"] for r in rest["runs"]] == ids[::-1][2:]
        assert c.get("/api/v1/runs", params={"status": "QUEUED"}).json()["total"] == 6
        assert c.get("/api/v1/runs", params={"status": "COMPLETED"}).json()["runs"] == []
        assert c.get("/api/v1/runs", params={"status": "BOGUS"}).status_code == 422
        assert c.get("/api/v1/runs", params={"limit": 0}).status_code == 422


def test_events_after_a_cursor(client: TestClient) -> None:
    rid = client.post("/api/v1/runs", json={"flow": "hello", "inputs": {"prompt": "x"}, "wait": True}).json()[
        "id"
    ]
    every = client.get(f"/api/v1/runs/{rid}/events").json()
    seqs = [e["seq"] for e in every["events"]]
    assert seqs == list(range(1, len(seqs) + 1)) and every["next_after"] == seqs[-1]
    later = client.get(f"/api/v1/runs/{rid}/events", params={"after": 3, "limit": 2}).json()
    assert [e["seq"] for e in later["events"]] == [4, 5] and later["next_after"] == 5
    quiet = client.get(f"/api/v1/runs/{rid}/events", params={"tokens": False}).json()
    assert "LLM_TOKENS" not in {e["type"] for e in quiet["events"]}
    assert client.get(f"/api/v1/runs/{rid}/events", params={"after": -1}).status_code == 422


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/v1/runs/nope"),
        ("get", "/api/v1/runs/nope/events"),
        ("get", "/api/v1/runs/nope/events/stream"),
        ("get", "/api/v1/runs/nope/artifacts"),
        ("get", "/api/v1/runs/nope/artifacts/a.txt"),
        ("post", "/api/v1/runs/nope/cancel"),
        ("post", "/api/v1/runs/nope/pause"),
        ("post", "/api/v1/runs/nope/resume"),
    ],
)
def test_unknown_runs_are_404(client: TestClient, method: str, path: str) -> None:
    r = getattr(client, method)(path)
    assert r.status_code == 404 and "detail" in r.json()


def test_cancel_a_queued_run_and_cancel_again_is_409(make_app: Any) -> None:
    with TestClient(make_app(worker_enabled=False)) as c:
        rid = c.post("/api/v1/runs", json={"flow": "hello", "inputs": {"prompt": "x"}}).json()["id"]
        r = c.post(f"/api/v1/runs/{rid}/cancel").json()
        assert r["status"] == "CANCELED" and r["action"] == "cancel"
        again = c.post(f"/api/v1/runs/{rid}/cancel")
        assert again.status_code == 409 and "CANCELED" in again.json()["detail"]


def test_pause_before_start_is_not_claimed_and_resume_requeues_it(make_app: Any) -> None:
    with TestClient(make_app(worker_enabled=False)) as c:
        rid = c.post("/api/v1/runs", json={"flow": "hello", "inputs": {"prompt": "x"}}).json()["id"]
        assert c.post(f"/api/v1/runs/{rid}/pause").json()["status"] == "PAUSED"
        assert c.post(f"/api/v1/runs/{rid}/pause").status_code == 409
        assert c.post("/api/v1/worker/process").json()["processed"] == []  # paused runs are not claimed
        assert c.post(f"/api/v1/runs/{rid}/resume").json()["status"] == "QUEUED"
        assert c.post("/api/v1/worker/process").json()["processed"] == [rid]
        assert c.get(f"/api/v1/runs/{rid}").json()["status"] == "COMPLETED"
        assert c.post(f"/api/v1/runs/{rid}/resume").status_code == 409


def test_pause_and_resume_a_running_run(make_app: Any, home: Path) -> None:
    write_flow(home, "slow", SLOW_FLOW)
    with TestClient(make_app()) as c:
        rid = c.post("/api/v1/runs", json={"flow": "slow", "options": {"models": SLOW}}).json()["id"]
        wait_status(c, f"/api/v1/runs/{rid}", "RUNNING")
        assert c.post(f"/api/v1/runs/{rid}/pause").json()["status"] == "PAUSED"
        wait_until(
            lambda: not c.get("/api/v1/worker").json()["active_runs"], what="the runner to stop at the pause"
        )
        v = c.get(f"/api/v1/runs/{rid}").json()
        assert v["status"] == "PAUSED" and any(s["status"] == "PENDING" for s in v["steps"])
        c.post(f"/api/v1/runs/{rid}/resume")
        v = wait_status(c, f"/api/v1/runs/{rid}", "COMPLETED")
    assert all(s["status"] == "COMPLETED" for s in v["steps"])


def test_answers_to_human_input_including_one_sent_early(make_app: Any, home: Path) -> None:
    write_flow(home, "ask", HUMAN_FLOW)
    with TestClient(make_app(worker_enabled=False)) as c:
        rid = c.post("/api/v1/runs", json={"flow": "ask"}).json()["id"]
        # sent before the run started, before any question: kept for the first question
        assert c.post(f"/api/v1/runs/{rid}/answer", json={"answer": "yes"}).status_code == 200
        c.post("/api/v1/worker/process", params={"timeout": 0.5})
        wait_until(
            lambda: any(
                e["type"] == "HUMAN_INPUT_REQUESTED" and e["step_id"] == "name"
                for e in c.get(f"/api/v1/runs/{rid}/events").json()["events"]
            ),
            what="the second question",
        )
        c.post(f"/api/v1/runs/{rid}/answer", json={"answer": "Ada", "request_id": "name"})
        v = wait_status(c, f"/api/v1/runs/{rid}", "COMPLETED")
    assert v["outputs"] == {"approved": True, "name": "Ada"}


def test_rerun_a_step_in_place(client: TestClient) -> None:
    rid = client.post("/api/v1/runs", json={"flow": "review", "inputs": {"text": "x"}, "wait": True}).json()[
        "id"
    ]
    r = client.post(f"/api/v1/runs/{rid}/rerun", json={"step": "report", "downstream": True})
    assert r.status_code == 200 and r.json()["stale"] == ["save"]
    wait_until(
        lambda: (
            [
                e["step_id"]
                for e in client.get(f"/api/v1/runs/{rid}/events").json()["events"]
                if e["type"] == "STEP_COMPLETED"
            ].count("save")
            == 2
        ),
        what="the re-run",
    )
    v = wait_status(client, f"/api/v1/runs/{rid}", "COMPLETED")
    report = next(s for s in v["steps"] if s["id"] == "report")
    assert len(report["attempts"]) == 2
    assert client.post(f"/api/v1/runs/{rid}/rerun", json={"step": "nope"}).status_code == 409
    assert client.post(f"/api/v1/runs/{rid}/rerun", json={}).status_code == 422


def test_fork_reuses_outputs_before_the_step(client: TestClient) -> None:
    rid = client.post("/api/v1/runs", json={"flow": "review", "inputs": {"text": "x"}, "wait": True}).json()[
        "id"
    ]
    new = client.post(f"/api/v1/runs/{rid}/fork", json={"from_step": "report"})
    assert new.status_code == 201
    v = wait_status(client, f"/api/v1/runs/{new.json()['id']}", "COMPLETED")
    classify = next(s for s in v["steps"] if s["id"] == "classify")
    assert classify["attempts"] == []  # reused, not executed again


def test_directive_is_recorded(client: TestClient) -> None:
    rid = client.post("/api/v1/runs", json={"flow": "hello", "inputs": {"prompt": "x"}, "wait": True}).json()[
        "id"
    ]
    r = client.post(f"/api/v1/runs/{rid}/directive", json={"text": "be brief"}).json()
    assert r["recorded"][0]["type"] == "DIRECTIVE" and r["recorded"][0]["message"] == "be brief"
    assert client.post(f"/api/v1/runs/{rid}/directive", json={}).status_code == 422


def test_artifacts_list_and_download(client: TestClient) -> None:
    rid = client.post("/api/v1/runs", json={"flow": "review", "inputs": {"text": "x"}, "wait": True}).json()[
        "id"
    ]
    arts = client.get(f"/api/v1/runs/{rid}/artifacts").json()["artifacts"]
    assert [a["path"] for a in arts] == [f"reports/{rid}.md"]
    body = client.get(arts[0]["url"])
    assert body.status_code == 200 and body.text.startswith(f"# Review of run {rid}")
    assert len(body.content) == arts[0]["size"]
    assert client.get(f"/api/v1/runs/{rid}/artifacts/nope.md").status_code == 404
    assert client.get(f"/api/v1/runs/{rid}/artifacts/..%2F..%2Fllmflow.db").status_code == 404


def test_projects_and_a_run_in_the_project_directory(client: TestClient, home: Path) -> None:
    p = client.post("/api/v1/projects", json={"name": "site", "local_path": "work/site"})
    assert p.status_code == 201
    proj = p.json()
    assert proj["local_path"] == str((home / "work" / "site").resolve())
    assert client.post("/api/v1/projects", json={"name": "site", "local_path": "other"}).status_code == 409
    assert client.get("/api/v1/projects").json()["projects"] == [proj]
    v = client.post(
        "/api/v1/runs",
        json={"flow": "review", "inputs": {"text": "x"}, "options": {"project_id": proj["id"]}, "wait": True},
    ).json()
    assert v["status"] == "COMPLETED" and v["project_id"] == proj["id"]
    assert (home / "work" / "site" / "reports" / f"{v['id']}.md").is_file()
    assert client.get("/api/v1/runs", params={"project_id": proj["id"]}).json()["runs"][0]["id"] == v["id"]


def test_stats(client: TestClient) -> None:
    client.post("/api/v1/runs", json={"flow": "hello", "inputs": {"prompt": "x"}, "wait": True})
    s = client.get("/api/v1/stats").json()
    assert s["runs"]["total"] == 1 and s["runs"]["completed"] == 1
    assert client.get("/api/v1/stats", params={"flow": "review"}).json()["runs"]["total"] == 0


def test_posted_flow_documents_run_and_code_steps_are_refused(client: TestClient) -> None:
    doc = "name: adhoc\ninputs: {q: {type: string}}\nsteps:\n  - id: a\n    llm: {prompt: 'Q: {{ inputs.q }}'}\n"
    v = client.post("/api/v1/runs", json={"document": doc, "inputs": {"q": "hi"}, "wait": True}).json()
    assert v["status"] == "COMPLETED" and v["options"]["disallow_shell"] is True
    shell = {"name": "sh", "steps": [{"id": "x", "shell": {"command": "id"}}]}
    r = client.post("/api/v1/runs", json={"document": shell})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "document", "steps", 0]
    py = {"name": "py", "steps": [{"id": "x", "python": {"function": "os:getcwd"}}]}
    assert client.post("/api/v1/runs", json={"document": py}).status_code == 422
    ws = {"name": "w", "options": {"workspace": "/"}, "steps": [{"id": "a", "llm": {"prompt": "x"}}]}
    assert client.post("/api/v1/runs", json={"document": ws}).json()["detail"][0]["loc"] == [
        "body",
        "document",
        "options",
        "workspace",
    ]


@pytest.mark.timeout(60)  # the request must come back: with no worker the run never starts
def test_wait_timeout_answers_202_with_the_run_as_it_is(make_app: Any) -> None:
    with TestClient(make_app(worker_enabled=False)) as c:
        r = c.post(
            "/api/v1/runs",
            json={"flow": "hello", "inputs": {"prompt": "x"}, "wait": True, "wait_timeout": 0.3},
        )
        assert r.status_code == 202 and r.json()["status"] == "QUEUED"


def test_worker_status_and_process(make_app: Any) -> None:
    with TestClient(make_app(worker_enabled=False)) as c:
        assert c.get("/api/v1/worker").json()["running"] is False
        rid = c.post("/api/v1/runs", json={"flow": "hello", "inputs": {"prompt": "x"}}).json()["id"]
        assert c.post("/api/v1/worker/process").json() == {
            "message": "Processing triggered",
            "processed": [rid],
        }
        assert c.get(f"/api/v1/runs/{rid}").json()["status"] == "COMPLETED"
