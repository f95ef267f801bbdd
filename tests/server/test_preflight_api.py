"""Over HTTP, a run whose models cannot work is a 422 naming the model, the steps and the fix,
and no run is recorded (native and Agent Runner surfaces)."""

from __future__ import annotations

from fastapi.testclient import TestClient


def test_native_api_refuses_an_unknown_provider_with_the_fix(client: TestClient) -> None:
    r = client.post(
        "/api/v1/runs",
        json={"flow": "hello", "inputs": {"prompt": "hi"}, "options": {"models": {"answer": "opnai:gpt-4o"}}},
    )
    assert r.status_code == 422, r.text
    [d] = r.json()["detail"]
    assert d["loc"] == ["body", "options", "models", "answer"]
    assert (
        d["type"] == "bad-model"
        and "unknown provider 'opnai'" in d["msg"]
        and "did you mean 'openai'?" in d["hint"]
    )
    assert client.get("/api/v1/runs").json()["runs"] == []


def test_native_api_refuses_a_hosted_model_without_its_key(client: TestClient) -> None:
    r = client.post(
        "/api/v1/runs",
        json={
            "flow": "hello",
            "inputs": {"prompt": "hi"},
            "options": {"models": "anthropic:claude-3-5-haiku"},
        },
    )
    assert r.status_code == 422
    [d] = r.json()["detail"]
    assert d["loc"] == ["body", "options", "models"] and "ANTHROPIC_API_KEY is not set" in d["msg"]
    assert d["hint"].startswith("export ANTHROPIC_API_KEY=")


def test_a_posted_flow_with_a_bad_model_points_into_the_document(make_app) -> None:
    doc = {"name": "x", "steps": [{"id": "a", "llm": {"prompt": "hi", "model": "fake:?colour=red"}}]}
    with TestClient(make_app(env={"LLMFLOW_MODEL": ""})) as client:  # the step's own model counts
        r = client.post("/api/v1/runs", json={"document": doc})
        assert r.status_code == 422
        [d] = r.json()["detail"]
        assert "unknown fake model option(s): colour" in d["msg"]
        assert d["loc"] == ["body", "document", "steps", 0, "model"]


def test_agent_runner_surface_refuses_an_unresolvable_model_at_post_runs(client: TestClient) -> None:
    pid = client.post("/projects", params={"name": "p", "local_path": "p"}).json()["id"]
    # a bare name is an Ollama model there ("nosuch:model" too, issue 15); this one cannot work
    r = client.post(
        "/runs", json={"project_id": pid, "goal": "x", "options": {"models": {"plan": "fake:?colour=red"}}}
    )
    assert r.status_code == 422, r.text
    assert "unknown fake model option(s): colour" in str(r.json()["detail"])
    assert client.get("/runs").json() == []
