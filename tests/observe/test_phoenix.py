"""End to end: a real Arize Phoenix (the `arize-phoenix` package, in its own venv: `make
phoenix`) as a subprocess on loopback ports with its own working directory receives the
traces of `llmflow run` processes over OTLP/HTTP and OTLP/gRPC; the runs' LLM spans are
found through Phoenix's own REST API."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.server.helpers import LLMFLOW, ROOT, base_env, free_port, wait_until

from llmflow.observe.ids import run_trace_id, span_id

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
PHOENIX = os.environ.get("LLMFLOW_TEST_PHOENIX") or str(ROOT / ".venv-phoenix" / "bin" / "phoenix")
PROJECT = "llmflow-e2e"
FLOW = """\
name: research
inputs: {q: {type: string, default: why is the sky blue}}
steps:
  - id: plan
    llm: "Plan an answer to: {{ inputs.q }}"
  - id: facts
    needs: [plan]
    llm: "Facts for {{ steps.plan.output }}"
  - id: critique
    needs: [plan]
    llm: "Critique {{ steps.plan.output }}"
  - id: answer
    needs: [facts, critique]
    llm: "Answer using {{ steps.facts.output }} and {{ steps.critique.output }}"
"""


@pytest.fixture(scope="module")
def phoenix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    if not Path(PHOENIX).exists() and not shutil.which(PHOENIX):
        msg = f"Arize Phoenix is not installed at {PHOENIX}: run `make phoenix` (or set LLMFLOW_TEST_PHOENIX)"
        if os.environ.get("CI"):
            pytest.fail(msg + " (CI is set, so this fails instead of skipping)")
        pytest.skip(msg)
    wd = tmp_path_factory.mktemp("phoenix")
    http_port, grpc_port = free_port(), free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PHOENIX_", "LLMFLOW_"))},
        "PHOENIX_WORKING_DIR": str(wd),
        "PHOENIX_HOST": "127.0.0.1",
        "PHOENIX_PORT": str(http_port),
        "PHOENIX_GRPC_PORT": str(grpc_port),
        "PHOENIX_ALLOW_EXTERNAL_RESOURCES": "false",  # offline: no downloads, no telemetry
        "PHOENIX_TELEMETRY_ENABLED": "false",
        "PHOENIX_ALLOWED_SANDBOX_PROVIDERS": "NONE",
    }
    log = (wd / "phoenix.log").open("wb")
    proc = subprocess.Popen([PHOENIX, "serve"], env=env, cwd=wd, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{http_port}"

    def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError(
                f"Phoenix exited with {proc.returncode}:\n{(wd / 'phoenix.log').read_text(errors='replace')[-3000:]}"
            )
        try:
            return httpx.get(url + "/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(up, 300, 0.5, what="Phoenix to start")
        yield {"url": url, "grpc": f"http://127.0.0.1:{grpc_port}"}
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()


def llmflow_run(home: Path, **otel: str) -> str:
    env = base_env(
        home,
        LLMFLOW_MODEL="fake:writer?latency=0.2",
        LLMFLOW_OTEL_CAPTURE_CONTENT="1",
        OTEL_SERVICE_NAME="llmflow-e2e",
        OTEL_RESOURCE_ATTRIBUTES=f"openinference.project.name={PROJECT}",
        **otel,
    )
    r = subprocess.run(
        [LLMFLOW, "run", "research.yaml", "--json"],
        env=env,
        cwd=home,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert r.returncode == 0, r.stderr + r.stdout
    import json

    return json.loads(r.stdout)["id"]


def spans_of(phoenix: dict[str, Any], trace_id: int) -> list[dict[str, Any]]:
    r = httpx.get(
        f"{phoenix['url']}/v1/projects/{PROJECT}/spans/otlpv1",
        params={"trace_id": f"{trace_id:032x}", "limit": 1000},
        timeout=30,
    )
    return r.json().get("data", []) if r.status_code == 200 else []


def attrs(span: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for a in span.get("attributes") or []:
        v = a["value"]
        out[a["key"]] = next(
            (
                x
                for x in (
                    v.get("string_value"),
                    v.get("int_value"),
                    v.get("double_value"),
                    v.get("bool_value"),
                )
                if x is not None
            ),
            None,
        )
    return out


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_phoenix_shows_the_runs_trace_with_llm_spans(
    phoenix: dict[str, Any], tmp_path: Path, protocol: str
) -> None:
    (tmp_path / "research.yaml").write_text(FLOW)
    endpoint = phoenix["url"] if protocol == "http/protobuf" else phoenix["grpc"]
    run_id = llmflow_run(tmp_path, OTEL_EXPORTER_OTLP_ENDPOINT=endpoint, OTEL_EXPORTER_OTLP_PROTOCOL=protocol)
    trace_id = run_trace_id(run_id)
    spans = wait_until(
        lambda: (s := spans_of(phoenix, trace_id)) and len(s) >= 13 and s,
        120,
        0.5,
        what=f"the trace of run {run_id} in Phoenix",
    )
    by_name: dict[str, list[dict[str, Any]]] = {}
    for s in spans:
        by_name.setdefault(s["name"], []).append(s)
    assert len(by_name["run research"]) == 1 and len(by_name["chat writer"]) == 4
    root = by_name["run research"][0]
    assert root["span_id"] == f"{span_id(run_id):016x}" and not root.get("parent_span_id")
    step_ids = {s["span_id"] for name, ss in by_name.items() if name.startswith("step ") for s in ss}
    assert len(step_ids) == 4 and all(
        s["parent_span_id"] == root["span_id"]
        for name, ss in by_name.items()
        if name.startswith("step ")
        for s in ss
    )
    for llm in by_name["chat writer"]:
        a = attrs(llm)
        assert (
            a["openinference.span.kind"] == "LLM"
            and a["gen_ai.request.model"] == "writer"
            and a["gen_ai.operation.name"] == "chat"
        )
        assert int(a["gen_ai.usage.input_tokens"]) > 0 and int(a["llm.token_count.total"]) > 0
        assert "fake answer to" in a["output.value"]
    # Phoenix itself counts them as LLM spans of the run's trace (its trace listing)
    r = httpx.get(
        f"{phoenix['url']}/v1/projects/{PROJECT}/traces",
        params={"include_spans": "true", "limit": 100},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    ours = [t for t in r.json()["data"] if t.get("trace_id") == f"{trace_id:032x}"]
    assert len(ours) == 1


def test_a_run_continued_by_another_process_stays_one_trace(phoenix: dict[str, Any], tmp_path: Path) -> None:
    """`llmflow run` in one process, `llmflow runs rerun` of a step in another: Phoenix holds
    one trace, the re-run under the first run span."""
    (tmp_path / "research.yaml").write_text(FLOW)
    otel = {"OTEL_EXPORTER_OTLP_ENDPOINT": phoenix["url"]}
    run_id = llmflow_run(tmp_path, **otel)
    env = base_env(
        tmp_path,
        LLMFLOW_MODEL="fake:writer?latency=0.2",
        OTEL_SERVICE_NAME="llmflow-e2e",
        OTEL_RESOURCE_ATTRIBUTES=f"openinference.project.name={PROJECT}",
        **otel,
    )
    r = subprocess.run(
        [LLMFLOW, "runs", "rerun", run_id, "--step", "critique"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert r.returncode == 0, r.stderr + r.stdout
    trace_id = run_trace_id(run_id)

    def both() -> list[dict[str, Any]]:
        spans = spans_of(phoenix, trace_id)
        return (
            spans
            if any(s["name"] == "run research (re-run)" for s in spans)
            and any(s["name"] == "run research" for s in spans)
            else []
        )

    spans = wait_until(both, 120, 0.5, what="the re-run's spans in the run's trace")
    first = next(s for s in spans if s["name"] == "run research")
    again = next(s for s in spans if s["name"] == "run research (re-run)")
    assert again["parent_span_id"] == first["span_id"]
    critiques = [s for s in spans if s["name"] == "step critique"]
    assert len(critiques) == 2 and {c["parent_span_id"] for c in critiques} == {
        first["span_id"],
        again["span_id"],
    }
