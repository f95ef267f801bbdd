"""Buttermilk's HTTP API: flow listing, running flows over HTTP, sessions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from .helpers import HUMAN_FLOW, both_stores, wait_until, write_flow


def test_flow_choices_on_both_paths_and_as_html(client: TestClient) -> None:
    for path in ("/flows", "/api/flows"):
        body = client.get(path, headers={"accept": "application/json"}).json()
        assert {"review", "hello", "quarkus-bootstrap-v1"} <= set(body["flow_choices"])
    html = client.get("/api/flows", headers={"accept": "text/html"})
    assert html.headers["content-type"].startswith("text/html") and '<option value="review">' in html.text
    info = client.get("/api/flows/review/info").json()
    assert info["inputs"] == ["text"] and info["datasets"] == []
    assert client.get("/api/flows/nope/info").status_code == 404


@both_stores
def test_post_flow_runs_it_and_answers_with_the_result(client: TestClient) -> None:
    r = client.post("/flow/hello", json={"flow": "hello", "prompt": "Why is the sky blue?"})
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "COMPLETED" and body["output"].startswith("fake answer to: Why is the sky blue?")
    assert client.get(f"/api/v1/runs/{body['run_id']}").json()["inputs"] == {"prompt": "Why is the sky blue?"}


def test_q_text_and_parameters_map_onto_inputs(client: TestClient) -> None:
    r = client.post(
        "/flow/review",
        json={"q": "ignored?", "text": "An article", "record_id": "r1", "parameters": {"unknown": 1}},
    )
    # review has no 'prompt' input but one required text input: the prompt goes to the
    # declared 'text' only when text itself is not given -> here text wins and prompt has nowhere to go
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "prompt"]
    r = client.post(
        "/flow/review", json={"text": "An article", "record_id": "r1", "parameters": {"unknown": 1}}
    )
    assert r.status_code == 200
    assert client.get(f"/api/v1/runs/{r.json()['run_id']}").json()["inputs"] == {"text": "An article"}
    r = client.post("/flow/review", json={"q": "Use the prompt as the text"})
    assert r.status_code == 200
    assert client.get(f"/api/v1/runs/{r.json()['run_id']}").json()["inputs"] == {
        "text": "Use the prompt as the text"
    }
    r = client.post("/flow/hello", json={"parameters": {"prompt": "from parameters"}})
    assert r.json()["output"].startswith("fake answer to: from parameters")


def test_get_flow_needs_a_prompt(client: TestClient) -> None:
    assert client.get("/flow/hello").status_code == 400
    r = client.get("/flow/hello", params={"prompt": "hi"})
    assert r.status_code == 200 and r.json()["status"] == "COMPLETED"


def test_unknown_flows_are_404(client: TestClient) -> None:
    assert client.post("/flow/nope", json={"prompt": "x"}).status_code == 404
    assert client.get("/flow/nope", params={"prompt": "x"}).status_code == 404


def test_async_start_returns_the_run_and_a_websocket_url(make_app: Any, home: Path) -> None:
    write_flow(home, "ask", HUMAN_FLOW)
    with TestClient(make_app()) as c:
        for r in (
            c.post("/flow/hello?async=true", json={"prompt": "x"}),
            c.post("/flow/ask", json={"wait": False}),
        ):
            assert r.status_code == 202
            body = r.json()
            assert body["websocket_url"] == f"/ws/{body['session_id']}" and body["run_id"]
            status = c.get(f"/api/session/{body['session_id']}/status").json()
            assert status["run_id"] == body["run_id"]
        ask = body
        wait_until(
            lambda: c.get(f"/api/session/{ask['session_id']}/status").json()["status"] == "active",
            what="the session to be active",
        )
        assert c.post("/flow/ask", json={"wait": False, "session_id": ask["session_id"]}).status_code == 409


def test_sessions_create_status_list_delete(client: TestClient) -> None:
    s = client.get("/api/session").json()
    assert s["session_id"] == s["sessionId"] and s["status"] == "initializing"
    st = client.get(f"/api/session/{s['session_id']}/status").json()
    assert set(st) >= {"session_id", "status", "flow_name", "created_at", "last_activity", "is_expired"}
    assert st["is_expired"] is False
    listed = client.get("/api/sessions").json()
    assert listed["total"] == 1 and listed["sessions"][0]["session_id"] == s["session_id"]
    assert client.delete(f"/api/session/{s['session_id']}").json() == {
        "message": f"Session {s['session_id']} cleaned up successfully"
    }
    assert client.delete(f"/api/session/{s['session_id']}").status_code == 404
    assert client.get(f"/api/session/{s['session_id']}/status").status_code == 404
    assert client.get("/api/session/bad id!/status").status_code == 404


def test_deleting_a_session_cancels_its_running_flow(make_app: Any, home: Path) -> None:
    write_flow(home, "ask", HUMAN_FLOW)
    with TestClient(make_app()) as c:
        body = c.post("/flow/ask?async=true", json={}).json()
        wait_until(
            lambda: any(
                e["type"] == "HUMAN_INPUT_REQUESTED"
                for e in c.get(f"/api/v1/runs/{body['run_id']}/events").json()["events"]
            ),
            what="the question",
        )
        c.delete(f"/api/session/{body['session_id']}")
        wait_until(
            lambda: c.get(f"/api/v1/runs/{body['run_id']}").json()["status"] == "CANCELED",
            what="the run to be canceled",
        )


def test_too_many_sessions_is_429(make_app: Any) -> None:
    with TestClient(make_app(max_sessions=2)) as c:
        assert c.get("/api/session").status_code == 200
        assert c.get("/api/session").status_code == 200
        assert c.get("/api/session").status_code == 429
        assert c.post("/flow/hello?async=true", json={"prompt": "x"}).status_code == 429
