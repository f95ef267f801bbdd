"""The evaluations API (POST /api/v1/evals, GET /api/v1/evals[/{id}], compare) on a real
app with TestClient, and the Python API llmflow.evaluate(...)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

import llmflow
from llmflow.server.app import create_app
from llmflow.server.config import ServerConfig
from llmflow.settings import Settings

FLOW = """
name: classify
inputs:
  text: {type: string}
steps:
  - id: label
    llm: {prompt: "Classify the sentiment of: {{ inputs.text }}"}
"""
SCRIPTS = "good: {answers: {great: positive, awful: negative}}\nbad: {answers: {great: positive, awful: positive}}\n"
RECORDS = [
    {"id": "r1", "text": "a great day", "label": "positive"},
    {"id": "r2", "text": "an awful day", "label": "negative"},
]


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMFLOW_")}
    env.update(
        LLMFLOW_HOME=str(home),
        LLMFLOW_MODEL="fake:good",
        LLMFLOW_BLOCK_REAL_MODELS="1",
        LLMFLOW_FAKE_SCRIPTS=str(home / "s.yaml"),
        WORKER_CHECK_INTERVAL="0.2",
    )
    return env


@pytest.fixture
def home(tmp_path: Path) -> Path:
    (tmp_path / "classify.yaml").write_text(FLOW)
    (tmp_path / "s.yaml").write_text(SCRIPTS)
    return tmp_path


@pytest.fixture
def client(home: Path) -> Iterator[TestClient]:
    env = _env(home)
    app = create_app(
        Settings.from_env(env),
        ServerConfig.from_env(env, flows=[str(home / "classify.yaml")], config_dir=home / "conf"),
    )
    with TestClient(app) as c:
        yield c


def _wait(client: TestClient, eval_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        v = client.get(f"/api/v1/evals/{eval_id}").json()
        if v["status"] != "RUNNING":
            return v
        time.sleep(0.05)
    raise AssertionError(f"evaluation {eval_id} did not finish")


def test_post_starts_an_evaluation_and_get_shows_it_with_its_runs(client: TestClient) -> None:
    r = client.post(
        "/api/v1/evals",
        json={
            "flow": "classify",
            "records": RECORDS,
            "metrics": ["exact", {"type": "contains", "value": "ive"}],
        },
    )
    assert r.status_code == 202, r.text
    eid = r.json()["id"]
    v = _wait(client, eid)
    assert v["status"] == "COMPLETED" and v["summary"]["overall"]["passed"] == 2
    run = client.get(f"/api/v1/runs/{v['results'][0]['run_id']}")
    assert run.status_code == 200 and run.json()["batch_id"] == eid
    listed = client.get("/api/v1/evals").json()["evals"]
    assert [e["id"] for e in listed] == [eid] and listed[0]["pass_rate"] == 1.0
    assert client.get("/api/v1/evals/nope").status_code == 404


def test_wait_true_answers_when_done_and_compare_finds_the_regression(client: TestClient) -> None:
    a = client.post("/api/v1/evals", json={"flow": "classify", "records": RECORDS, "wait": True})
    b = client.post(
        "/api/v1/evals",
        json={"flow": "classify", "records": RECORDS, "models": {"*": "fake:bad"}, "wait": True},
    )
    assert a.status_code == b.status_code == 200
    assert b.json()["summary"]["overall"]["passed"] == 1
    c = client.get(f"/api/v1/evals/{a.json()['id']}/compare/{b.json()['id']}").json()
    assert [r["record_id"] for r in c["regressed"]] == ["r2"]


def test_bad_requests_are_4xx_and_code_metrics_are_refused(client: TestClient) -> None:
    assert client.post("/api/v1/evals", json={"flow": "nope", "records": RECORDS}).status_code == 404
    r = client.post("/api/v1/evals", json={"flow": "classify", "records": RECORDS, "metrics": ["os:getcwd"]})
    assert r.status_code == 422 and "python metrics run code" in r.json()["detail"]
    r = client.post("/api/v1/evals", json={"flow": "classify", "records": RECORDS, "metrics": ["exackt"]})
    assert r.status_code == 422 and "unknown metric" in r.json()["detail"]
    assert client.post("/api/v1/evals", json={"flow": "classify", "data": "/etc/passwd"}).status_code == 422
    r = client.post(
        "/api/v1/evals",
        json={
            "flow": "classify",
            "records": RECORDS,
            "metrics": [{"type": "json_schema", "schema": "/etc/schema.json"}],
        },
    )
    assert r.status_code == 422 and "never a file path" in r.json()["detail"]
    assert client.get("/api/v1/evals").json()["evals"] == []


def test_the_python_api_evaluates_and_reports(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in _env(home).items():
        monkeypatch.setenv(k, v)
    monkeypatch.chdir(home)

    @llmflow.metric(threshold=1.0)
    def is_label(output: str) -> bool:
        return output in ("positive", "negative")

    ev = llmflow.evaluate(
        str(home / "classify.yaml"),
        records=RECORDS,
        metrics=["exact", is_label],
        variants={"model": ["fake:good", "fake:bad"]},
        min_pass_rate=0.9,
    )
    assert ev.status == "COMPLETED" and not ev.passed and len(ev.gate_failed) == 1
    rates = {v["parameters"]["model"]: v["pass_rate"] for v in ev.summary["variants"]}
    assert rates == {"fake:good": 1.0, "fake:bad": 0.5}
    assert ev.results[0]["scores"]["is_label"]["passed"] is True
    assert "<testsuites" in ev.report("junit") and llmflow.evaluate(resume=ev.id).id == ev.id


def test_an_evaluation_on_the_postgres_store(home: Path, pg_url: str) -> None:
    from llmflow.runtime import build_runtime

    env = {**_env(home), "LLMFLOW_DATABASE_URL": pg_url}
    rt = build_runtime(env=env, home=home)
    try:
        ev = llmflow.evaluate(
            str(home / "classify.yaml"),
            records=RECORDS,
            metrics=["exact"],
            models={"*": "fake:bad"},
            runtime=rt,
        )
        assert (ev.status, ev.summary["overall"]["passed"]) == ("COMPLETED", 1)
        assert [r.record_id for r in rt.store.eval_results(ev.id)] == ["r1", "r2"]
        assert rt.store.get_eval(ev.id).summary["overall"]["pass_rate"] == 0.5
    finally:
        rt.close()


def test_max_records_limits_the_evaluation(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in _env(home).items():
        monkeypatch.setenv(k, v)
    ev = llmflow.evaluate(str(home / "classify.yaml"), records=RECORDS, max_records=1, home=home)
    assert ev.summary["overall"]["total"] == 1 and [r["record_id"] for r in ev.results] == ["r1"]
