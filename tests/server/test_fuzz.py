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
schema = schemathesis.openapi.from_dict(
    create_app(Settings(home=Path("/nonexistent")), ServerConfig()).openapi(), config=_config
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    home = tmp_path_factory.mktemp("fuzz")
    env = base_env(home)
    cfg = ServerConfig.from_env(
        env, flows=[str(EXAMPLES / "hello")], config_dir=home / "conf", wait_timeout=2.0, max_sessions=50
    )
    with LiveServer(create_app(Settings.from_env(env), cfg)) as s:
        yield s


def detail_is_explained(ctx: Any, response: Any, case: Any) -> bool | None:
    """A 4xx answer carries {"detail": ...}; a 422 lists the failing fields with their path."""
    if response.status_code == 400 and response.text == "Invalid HTTP request received.":
        return None  # refused by Uvicorn's HTTP parser before the app sees it (e.g. a raw control character)
    if 400 <= response.status_code < 500:
        body = response.json()
        assert isinstance(body, dict) and "detail" in body, (
            f"{response.status_code} without detail: {response.text[:200]}"
        )
        if response.status_code == 422 and isinstance(body["detail"], list):
            assert all(isinstance(d, dict) and "loc" in d for d in body["detail"]), body
    return None


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_no_request_gets_a_server_error(case: Any, server: LiveServer) -> None:
    response = case.call(base_url=server.url, timeout=30)
    case.validate_response(response, checks=[not_a_server_error, detail_is_explained])


# -- unicode edge cases ---------------------------------------------------------------------------
# Schemathesis generates valid UTF-8 text; these go further: lone surrogates (as JSON escapes,
# the only way they travel), NUL, byte order marks, direction overrides, combining marks,
# astral characters, non-characters, invalid UTF-8 bytes in a query, non-finite numbers.
# Each operation's cases come from Schemathesis; one string (or key) in the body, the query or
# the path is swapped for an edge case, and the request is sent as raw bytes.
import json  # noqa: E402
import re  # noqa: E402
from urllib.parse import quote  # noqa: E402

import httpx  # noqa: E402
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

EDGES = [
    "\ud800",
    "\udfff",
    "a\udc80b",
    "\ud83d",
    "\x00",
    "\ufeff",
    "\u202e",
    "e\u0301",
    "\U0001f600",
    "\u2028",
    "\uffff",
    "\U0010ffff",
    "𝔘𝔫𝔦",
    "",
    " " * 3,
    "x" * 20_000,
]
RAW_QUERY = ["%ED%A0%80", "%FF", "%C0%AF", "%00", "%EF%BB%BF"]  # surrogate, invalid, overlong, NUL, BOM
OPERATIONS = [r.ok() for r in schema.get_all_operations()]


def _swap(value: Any, edge: Any, pick: int) -> tuple[Any, bool]:
    """``value`` with its pick-th string (or key) replaced by ``edge``."""
    counter = [pick]

    def walk(v: Any) -> Any:
        if isinstance(v, str):
            counter[0] -= 1
            return edge if counter[0] == -1 else v
        if isinstance(v, list):
            return [walk(x) for x in v]
        if isinstance(v, dict):
            out = {}
            for k, x in v.items():
                counter[0] -= 1
                out[edge if counter[0] == -1 and isinstance(edge, str) else k] = walk(x)
            return out
        return v

    out = walk(value)
    return out, counter[0] < 0


@st.composite
def edge_requests(draw: Any) -> tuple[str, str, bytes | None, str]:
    op = draw(st.sampled_from(OPERATIONS))
    case = draw(op.as_strategy())
    edge = draw(st.sampled_from([*EDGES, float("nan"), float("inf"), 10**40, -(10**40)]))
    body = case.body if isinstance(case.body, dict | list) else None
    where = draw(st.sampled_from(["body", "query", "path", "raw-query"]))
    path = case.formatted_path
    query = dict(case.query or {})
    if where == "body" and body is not None:
        body, _ = _swap(body, edge, draw(st.integers(0, 8)))
    elif where == "query" and query and isinstance(edge, str):
        query[draw(st.sampled_from(sorted(query)))] = edge
    elif where == "path" and case.path_parameters and isinstance(edge, str):
        name = draw(st.sampled_from(sorted(case.path_parameters)))
        path = op.path.replace("{" + name + "}", quote(edge.encode("utf-8", "surrogatepass"), safe=""))
        for k, v in case.path_parameters.items():
            path = path.replace("{" + k + "}", quote(str(v), safe=""))
    qs = "&".join(
        f"{quote(str(k))}={quote(str(v).encode('utf-8', 'surrogatepass'), safe='')}" for k, v in query.items()
    )
    if where == "raw-query":
        qs = (
            qs + "&" if qs else ""
        ) + f"{draw(st.sampled_from(sorted(query) or ['q']))}={draw(st.sampled_from(RAW_QUERY))}"
    data = (
        json.dumps(body, ensure_ascii=True).encode() if body is not None else None
    )  # NaN as a bare token, surrogates as escapes
    return case.method.upper(), path + (f"?{qs}" if qs else ""), data, case.media_type or "application/json"


@given(req=edge_requests())
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_unicode_edge_cases_never_get_a_server_error(
    server: LiveServer, req: tuple[str, str, bytes | None, str]
) -> None:
    method, url, data, media = req
    if "/events/stream" in url or url.startswith("/runs/") and url.endswith("/stream"):
        return  # streams never end by themselves
    headers = {"content-type": media} if data is not None else {}
    r = httpx.request(method, server.url + url, content=data, headers=headers, timeout=30)
    if r.status_code == 400 and r.text == "Invalid HTTP request received.":
        return  # refused by Uvicorn's HTTP parser before the app sees it
    assert r.status_code < 500, (method, url, data[:200] if data else None, r.status_code, r.text[:300])
    if 400 <= r.status_code < 500:
        body = r.json()
        assert "detail" in body, r.text[:200]
        assert not re.search(r"[\ud800-\udfff]", json.dumps(body, ensure_ascii=False, default=str)), (
            "an answer echoed a lone surrogate"
        )


BODY_OPERATIONS = sorted({(o.method.upper(), o.path) for o in OPERATIONS if o.body}, key=str)
SURROGATE_BODIES = [
    b'{"\\ud800": 1}',
    b'{"flow": "\\ud800", "name": "\\udfff", "goal": "\\ud83d", "text": "\\udc80", "step": "\\ud800", "local_path": "\\ud800", "answer": "\\ud800", "from_step": "\\ud800", "project_id": 1, "prompt": "\\ud800"}',
    b'{"inputs": {"\\ud800": "\\udfff"}, "options": {"metadata": {"k": "\\ud800"}}, "parameters": {"\\udfff": 1}, "document": "name: \\ud800"}',
    b'["\\ud800"]',
    b'"\\ud800"',
]


@pytest.mark.parametrize(("method", "path"), BODY_OPERATIONS)
def test_lone_surrogates_in_any_json_body_are_a_4xx(server: LiveServer, method: str, path: str) -> None:
    url = server.url + re.sub(r"\{[^}]*\}", "x", path)
    for data in SURROGATE_BODIES:
        r = httpx.request(method, url, content=data, headers={"content-type": "application/json"}, timeout=30)
        assert 400 <= r.status_code < 500, (method, path, data, r.status_code, r.text[:300])
        assert "detail" in r.json()
