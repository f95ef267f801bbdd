"""Tracing switched on by the standard variables through the ``llmflow.observers`` entry
point; a dead collector never fails or blocks a run and costs one warning."""

from __future__ import annotations

import asyncio
import logging
import socket
from pathlib import Path

import pytest

from llmflow.model.loader import parse_flow_text
from llmflow.observe.otel_setup import resource_attributes, tracing_enabled
from llmflow.observe.tracing import TraceObserver
from llmflow.runtime import build_runtime
from llmflow.settings import Settings

FLOW = "name: one\nsteps:\n  - id: a\n    llm: hi\n  - id: b\n    llm: 'again {{ steps.a.output }}'\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    ("env", "on"),
    [
        ({}, False),
        ({"LLMFLOW_OTEL": "1"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "LLMFLOW_OTEL": "0"}, False),
        ({"LLMFLOW_OTEL": "1", "OTEL_SDK_DISABLED": "true"}, False),
    ],
)
def test_tracing_is_switched_by_the_standard_variables(tmp_path: Path, env: dict[str, str], on: bool) -> None:
    assert tracing_enabled(env, Settings.from_env(env, home=tmp_path).otel) is on
    rt = build_runtime(env={"LLMFLOW_MODEL": "fake:", **env}, home=tmp_path)
    try:
        assert any(isinstance(o, TraceObserver) for o in rt.observers) is on
    finally:
        rt.close()


def test_service_name_and_resource_attributes() -> None:
    attrs = resource_attributes(
        {
            "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=prod,team=ml%20ops",
            "OTEL_SERVICE_NAME": "flows",
        }
    )
    assert attrs == {"deployment.environment": "prod", "team": "ml ops", "service.name": "flows"}
    assert resource_attributes({})["service.name"] == "llmflow"


def test_a_dead_collector_costs_one_warning_and_never_fails_a_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()  # nothing listens there
    env = {
        "LLMFLOW_MODEL": "fake:",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "2",
        "OTEL_SERVICE_NAME": f"dead-{port}",
    }
    rt = build_runtime(env=env, home=tmp_path)
    obs = next(o for o in rt.observers if isinstance(o, TraceObserver))
    caplog.set_level(logging.WARNING)
    try:
        for _ in range(3):
            st = asyncio.run(rt.run(parse_flow_text(FLOW)))
            assert str(st.status) == "COMPLETED", st.error
            obs.flush()  # wait for the export attempt of this run's spans
    finally:
        rt.close()
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert f"cannot export traces to http://127.0.0.1:{port}/v1/traces" in warnings[0].getMessage()
