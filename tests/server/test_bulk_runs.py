"""POST /api/v1/runs/bulk: several runs in one request, all queued or none."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from .helpers import both_stores, wait_status

DOC = {
    "name": "posted",
    "inputs": {"prompt": {"type": "string"}},
    "steps": [{"id": "answer", "llm": {"prompt": "{{ inputs.prompt }}"}}],
}


def _count(c: TestClient) -> int:
    return int(c.get("/api/v1/runs", params={"limit": 1}).json()["total"])


@both_stores
def test_bulk_queues_every_run_in_order_and_each_runs(client: TestClient) -> None:
    body = {
        "runs": [
            {
                "flow": "hello",
                "inputs": {"prompt": "one"},
                "options": {"models": "fake:?answer=first", "name": "a"},
            },
            {"flow": "review", "inputs": {"text": "an article"}},
            {"document": DOC, "inputs": {"prompt": "x"}, "options": {"models": "fake:?answer=third"}},
        ]
    }
    r = client.post("/api/v1/runs/bulk", json=body)
    assert r.status_code == 201, r.text
    runs = r.json()["runs"]
    # each item is the summary POST /api/v1/runs answers, in the order of the request
    assert [x["flow"] for x in runs] == ["hello", "review", "posted"]
    assert [x["status"] for x in runs] == ["QUEUED"] * 3 and runs[0]["name"] == "a"
    assert len({x["id"] for x in runs}) == 3
    single = client.post("/api/v1/runs", json={"flow": "hello", "inputs": {"prompt": "p"}}).json()
    assert set(runs[0]) == set(single) and set(runs[0]["links"]) == set(single["links"])
    done = [wait_status(client, f"/api/v1/runs/{x['id']}", "COMPLETED") for x in runs]
    assert done[0]["outputs"] == {"result": "first"}
    assert done[2]["steps"][0]["output"] == "third"
    assert [e["type"] for e in client.get(f"/api/v1/runs/{runs[1]['id']}/events").json()["events"]][0] == (
        "RUN_CREATED"
    )


@both_stores
def test_one_refused_run_refuses_the_request_naming_its_index(make_app: Any) -> None:
    with TestClient(make_app(worker_enabled=False)) as c:

        def post(items: list[dict[str, Any]]) -> tuple[int, Any]:
            r = c.post("/api/v1/runs/bulk", json={"runs": items})
            return r.status_code, r.json()["detail"]

        good = {"flow": "hello", "inputs": {"prompt": "hi"}}
        before = _count(c)
        code, detail = post([good, {"flow": "review"}])  # a missing input
        assert code == 422 and detail[0]["loc"] == ["body", "runs", 1, "inputs", "text"]
        code, detail = post([good, good, {"flow": "nope"}])
        assert code == 404 and detail.startswith("runs[2]: ") and "nope" in detail
        code, detail = post([{**good, "options": {"models": {"nostep": "fake:"}}}])
        assert code == 422 and detail[0]["loc"] == ["body", "runs", 0, "models", "nostep"]
        code, detail = post([good, {**good, "options": {"project_id": 999}}])
        assert code == 404 and detail[0]["loc"] == ["body", "runs", 1, "options", "project_id"]
        code, detail = post([good, {"document": {"name": "bad", "steps": "no"}}])
        assert code == 422 and detail[0]["loc"][:4] == ["body", "runs", 1, "document"]
        code, detail = post([good, {"flow": "hello", "document": DOC}])  # both: the schema says so
        assert code == 422 and detail[0]["loc"][:3] == ["body", "runs", 1]
        code, detail = post([good, {**good, "wait": True}])  # bulk runs are never waited for
        assert code == 422 and detail[0]["loc"] == ["body", "runs", 1, "wait"]
        assert _count(c) == before  # nothing was created by any refused request
        code, detail = post([])
        assert code == 422 and detail[0]["loc"] == ["body", "runs"]
        code, detail = post([good] * 1001)
        assert code == 422 and detail[0]["loc"] == ["body", "runs"]
        r = c.post("/api/v1/runs/bulk", json={"runs": [good], "extra": 1})
        assert r.status_code == 422
        assert _count(c) == before
        r = c.post("/api/v1/runs/bulk", json={"runs": [good] * 50})
        assert r.status_code == 201 and len(r.json()["runs"]) == 50
        assert _count(c) == before + 50


def test_a_posted_document_may_not_run_code_in_bulk_either(client: TestClient) -> None:
    doc = {"name": "sh", "steps": [{"id": "s", "shell": "echo hi"}]}
    r = client.post(
        "/api/v1/runs/bulk", json={"runs": [{"flow": "hello", "inputs": {"prompt": "x"}}, {"document": doc}]}
    )
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"][:4] == ["body", "runs", 1, "document"]
    assert _count(client) == 0
