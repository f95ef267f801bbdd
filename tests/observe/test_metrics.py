"""``/metrics`` on a real Uvicorn after a few runs, parsed with prometheus-client's own
parser: runs by flow and outcome, durations, model calls, tokens, queue, clients; behind the
token unless LLMFLOW_METRICS_PUBLIC=1."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.server.helpers import LiveServer, base_env, wait_until, write_flow

from llmflow.observe.ids import run_trace_id, span_id
from llmflow.server.app import create_app
from llmflow.server.config import ServerConfig
from llmflow.settings import Settings

TOKEN = "metrics-test-token-1234"
OK = """\
name: ok
steps:
  - id: a
    llm: "first"
  - id: b
    llm: "second {{ steps.a.output }}"
"""
BAD = """\
name: bad
steps:
  - id: boom
    shell: "exit 3"
"""
ASK = """\
name: ask
steps:
  - id: approve
    human: {prompt: "Ship it?", input: confirm}
  - id: after
    llm: "approved={{ steps.approve.output }}"
"""


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(all_: dict, name: str, **labels: str) -> float:
    return all_[(name, tuple(sorted(labels.items())))]


def serve(home: Path, **env: str) -> LiveServer:
    for name, text in (("ok", OK), ("bad", BAD), ("ask", ASK)):
        write_flow(home, name, text)
    e = base_env(home, LLMFLOW_API_TOKEN=TOKEN, LLMFLOW_ALLOW_SHELL="1", **env)
    return LiveServer(
        create_app(
            Settings.from_env(e),
            ServerConfig.from_env(e, config_dir=home / "conf", workers=1, allow_shell=True),
        )
    )


def test_metrics_after_a_few_runs(tmp_path: Path) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with serve(tmp_path) as srv, srv.client(headers=auth) as c:
        for flow in ("ok", "ok", "bad"):
            r = c.post("/api/v1/runs", json={"flow": flow, "wait": True, "wait_timeout": 60})
            assert r.status_code == 200, r.text
        slow = c.post("/api/v1/runs", json={"flow": "ask"}).json()["id"]
        # an SSE client follows the run (waiting for a person) while we scrape
        opened = threading.Event()
        ended: list[Any] = []

        def follow() -> None:
            with (
                httpx.Client(base_url=srv.url, headers=auth, timeout=60) as s,
                s.stream("GET", f"/api/v1/runs/{slow}/events/stream") as resp,
            ):
                opened.set()
                for _ in resp.iter_lines():
                    pass
                ended.append(resp.status_code)

        t = threading.Thread(target=follow, daemon=True)
        t.start()
        assert opened.wait(30)
        during = wait_until(
            lambda: (m := samples(c.get("/metrics").text)) and value(m, "llmflow_sse_clients") == 1 and m,
            30,
            what="the SSE client counted",
        )
        assert c.post(f"/api/v1/runs/{slow}/answer", json={"answer": "yes"}).status_code == 200
        t.join(60)
        assert ended == [200]
        wait_until(
            lambda: c.get(f"/api/v1/runs/{slow}").json()["status"] == "COMPLETED", 60, what="the slow run"
        )
        trace = c.get(f"/api/v1/runs/{slow}/trace").json()
        assert (
            trace["trace_id"] == f"{run_trace_id(slow):032x}"
            and trace["traceparent"] == f"00-{trace['trace_id']}-{span_id(slow):016x}-01"
        )
        assert c.get("/api/v1/runs/nope/trace").status_code == 404
        r = c.get("/metrics")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
        m = samples(r.text)
    assert (
        value(during, "llmflow_runs", status="RUNNING") + value(during, "llmflow_runs", status="WAITING") == 1
    )
    assert value(m, "llmflow_sse_clients") == 0
    assert value(m, "llmflow_runs_started_total", flow="ok") == 2
    assert value(m, "llmflow_runs_completed_total", flow="ok") == 2
    assert value(m, "llmflow_runs_failed_total", flow="bad") == 1
    assert value(m, "llmflow_runs_completed_total", flow="ask") == 1
    assert value(m, "llmflow_run_duration_seconds_count", flow="ok", status="COMPLETED") == 2
    assert value(m, "llmflow_run_duration_seconds_count", flow="ask", status="COMPLETED") == 1
    assert value(m, "llmflow_step_duration_seconds_count", flow="ok", kind="llm", status="COMPLETED") == 4
    assert value(m, "llmflow_step_duration_seconds_count", flow="bad", kind="shell", status="FAILED") == 1
    assert (
        value(m, "llmflow_model_calls_total", model="fake:", status="ok") == 5
    )  # 2 x 2 + the step after the answer
    assert value(m, "llmflow_tokens_total", model="fake:", direction="input") > 0
    assert value(m, "llmflow_tokens_total", model="fake:", direction="output") > 0
    assert value(m, "llmflow_event_append_latency_seconds_count") > 20
    assert value(m, "llmflow_queue_depth") == 0 and value(m, "llmflow_runs", status="QUEUED") == 0
    assert ("llmflow_websocket_clients", ()) in m and ("llmflow_cost_usd_total", (("model", "fake:"),)) in m


def test_metrics_need_the_token_unless_public(tmp_path: Path) -> None:
    with serve(tmp_path / "a") as srv, srv.client() as c:
        r = c.get("/metrics")
        assert r.status_code == 401
        assert c.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    with serve(tmp_path / "b", LLMFLOW_METRICS_PUBLIC="1") as srv, srv.client() as c:
        r = c.get("/metrics")
        assert r.status_code == 200 and "# TYPE llmflow_runs_started_total counter" in r.text
        assert c.get("/api/v1/runs").status_code == 401  # only the metrics are public


def test_websocket_clients_are_counted(tmp_path: Path) -> None:
    from websockets.sync.client import connect

    with serve(tmp_path) as srv, srv.client(headers={"Authorization": f"Bearer {TOKEN}"}) as c:
        rid = c.post("/api/v1/runs", json={"flow": "ask"}).json()["id"]
        with connect(f"{srv.ws_url}/api/v1/runs/{rid}/ws?token={TOKEN}"):
            wait_until(
                lambda: value(samples(c.get("/metrics").text), "llmflow_websocket_clients") == 1,
                30,
                what="the WebSocket counted",
            )
        wait_until(
            lambda: value(samples(c.get("/metrics").text), "llmflow_websocket_clients") == 0,
            30,
            what="the WebSocket gone",
        )


@pytest.fixture(autouse=True)
def _dirs(tmp_path: Path) -> None:
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
