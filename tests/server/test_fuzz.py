"""Schemathesis over the whole OpenAPI schema (all three surfaces) against a real server:
no request, however malformed, gets a 5xx; every 4xx says what was wrong in ``detail``,
and a 422 names the field path (``loc``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from llmflow.server.app import create_app
from llmflow.server.config import ServerConfig
from llmflow.settings import Settings

from .helpers import EXAMPLES, LiveServer, base_env

pytestmark = pytest.mark.slow

# The schema is static: build it from an app that is never started (nothing opens here).
# SSE answers never end by themselves: read one event of them, then move on.
_config = schemathesis.config.SchemathesisConfig.from_dict({"max-stream-events": 1})
schema = schemathesis.openapi.from_dict(create_app(Settings(home=Path("/nonexistent")), ServerConfig()).openapi(), config=_config)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    home = tmp_path_factory.mktemp("fuzz")
    env = base_env(home)
    cfg = ServerConfig.from_env(env, flows=[str(EXAMPLES / "hello")], config_dir=home / "conf", wait_timeout=2.0, max_sessions=50)
    with LiveServer(create_app(Settings.from_env(env), cfg)) as s:
        yield s


def detail_is_explained(ctx: Any, response: Any, case: Any) -> bool | None:
    """A 4xx answer carries {"detail": ...}; a 422 lists the failing fields with their path."""
    if response.status_code == 400 and response.text == "Invalid HTTP request received.":
        return None  # refused by Uvicorn's HTTP parser before the app sees it (e.g. a raw control character)
    if 400 <= response.status_code < 500:
        body = response.json()
        assert isinstance(body, dict) and "detail" in body, f"{response.status_code} without detail: {response.text[:200]}"
        if response.status_code == 422 and isinstance(body["detail"], list):
            assert all(isinstance(d, dict) and "loc" in d for d in body["detail"]), body
    return None


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_no_request_gets_a_server_error(case: Any, server: LiveServer) -> None:
    response = case.call(base_url=server.url, timeout=30)
    case.validate_response(response, checks=[not_a_server_error, detail_is_explained])
