"""A WebSocket fuzzer against a real Uvicorn: text and binary frames, frames past the size
limit, floods, on the session socket (/ws) and the run socket (/api/v1/runs/{id}/ws).
Whatever a client sends, the server closes the socket with a proper code or answers, logs
no traceback, and keeps answering HTTP and new sockets afterwards."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.server.helpers import EXAMPLES, LiveServer, base_env
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

pytestmark = pytest.mark.timeout(240)

FRAME_LIMIT = 4096  # LLMFLOW_MAX_FRAME_BYTES for these tests: "huge" stays cheap to send


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    from llmflow.server.app import create_app
    from llmflow.server.config import ServerConfig
    from llmflow.settings import Settings

    home = tmp_path_factory.mktemp("wsfuzz")
    env = base_env(home, LLMFLOW_MAX_FRAME_BYTES=str(FRAME_LIMIT))
    cfg = ServerConfig.from_env(
        env, flows=[str(EXAMPLES / "hello")], config_dir=home / "conf", max_sessions=10_000
    )
    with LiveServer(create_app(Settings.from_env(env), cfg)) as s:
        yield s


@pytest.fixture(scope="module")
def run_id(server: LiveServer) -> str:
    with server.client() as c:
        return c.post(
            "/api/v1/runs", json={"flow": "hello", "inputs": {"prompt": "hi"}, "wait": True}
        ).json()["id"]


@pytest.fixture(autouse=True)
def no_tracebacks(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    with caplog.at_level(logging.ERROR):
        yield
    bad = [
        r
        for r in caplog.records
        if r.levelno >= logging.ERROR
        and (r.exc_info or "Traceback" in r.getMessage() or "Exception in ASGI" in r.getMessage())
    ]
    assert not bad, [r.getMessage() for r in bad]


def still_answers(server: LiveServer) -> None:
    assert httpx.get(f"{server.url}/health", timeout=10).json() == {"status": "ok"}
    with connect(f"{server.ws_url}/ws") as ws:
        assert json.loads(ws.recv(timeout=10))["content"] == "session_started"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
    max_leaves=12,
)
messages = st.one_of(
    st.fixed_dictionaries(
        {
            "type": st.sampled_from(
                [
                    "run_flow",
                    "manager_response",
                    "ui_message",
                    "answer",
                    "cancel",
                    "pause",
                    "resume",
                    "rerun",
                    "directive",
                    "nope",
                    "",
                ]
            )
        },
        optional={
            "flow": st.sampled_from(["hello", "nope", ""]) | st.text(max_size=10),
            "prompt": st.text(max_size=20),
            "content": json_values,
            "answer": json_values,
            "step": st.text(max_size=5),
            "confirm": st.booleans(),
        },
    ).map(json.dumps),
    json_values.map(json.dumps),
    st.text(max_size=60),  # not JSON, or JSON that is not an object
    # lone surrogates arrive as JSON escapes (a text frame itself must be UTF-8)
    st.sampled_from(
        [
            "{",
            "[]" * 500,
            json.dumps({"type": "run_flow", "flow": "hello", "prompt": "\ud800"}),
            json.dumps({"type": "directive", "text": "\udfff"}),
            "\x00",
            '{"type": "run_flow", "flow": "hello"' + "}" * 3,
        ]
    ),
)
frames = st.one_of(
    messages.map(lambda m: ("text", m)),
    st.binary(max_size=64).map(lambda b: ("binary", b)),
    st.just(("huge", "x" * (FRAME_LIMIT + 1))),
    st.just(("badutf8", b"\xff\xfe{")),  # a text frame that is not UTF-8: a protocol error
)


BAD = {"binary": 1003, "huge": 1009, "badutf8": 1007}  # the close code each bad frame earns


def _play(url: str, plan: list[tuple[str, Any]]) -> int | None:
    """Send the frames up to and including the first bad one (after it the server closes
    the socket); return the close code the server chose (None: the socket stayed open)."""
    with connect(url, max_size=2**22) as ws:
        try:
            for kind, payload in plan:
                if kind == "binary":
                    ws.send(payload)
                elif kind == "badutf8":
                    ws.send(payload, text=True)
                else:
                    ws.send(payload)
                if kind in BAD:
                    break
            while True:  # drain what the server answered until it is quiet or closes
                ws.recv(timeout=0.3)
        except TimeoutError:
            return None
        except ConnectionClosed as exc:
            return exc.rcvd.code if exc.rcvd else None


@given(plan=st.lists(frames, min_size=1, max_size=12), socket=st.sampled_from(["session", "run"]))
@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_no_frame_sequence_breaks_a_socket_or_the_server(
    server: LiveServer, run_id: str, plan: list[tuple[str, Any]], socket: str
) -> None:
    url = f"{server.ws_url}/ws" if socket == "session" else f"{server.ws_url}/api/v1/runs/{run_id}/ws"
    code = _play(url, plan)
    first_bad = next((k for k, _ in plan if k in BAD), None)
    assert code == (BAD[first_bad] if first_bad else None), (first_bad, code)
    still_answers(server)


def test_binary_and_oversized_frames_close_with_their_codes(server: LiveServer) -> None:
    with connect(f"{server.ws_url}/ws") as ws:
        ws.recv(timeout=10)
        ws.send(b"\x00\x01binary")
        with pytest.raises(ConnectionClosed) as info:
            while True:
                ws.recv(timeout=10)
    assert info.value.rcvd.code == 1003 and "text frames" in info.value.rcvd.reason
    with connect(f"{server.ws_url}/ws") as ws:
        ws.recv(timeout=10)
        ws.send("x" * (FRAME_LIMIT + 1))
        with pytest.raises(ConnectionClosed) as info:
            while True:
                ws.recv(timeout=10)
    assert info.value.rcvd.code == 1009 and "LLMFLOW_MAX_FRAME_BYTES" in info.value.rcvd.reason
    still_answers(server)


def test_a_flood_of_messages_is_answered_and_the_server_keeps_answering(
    server: LiveServer, run_id: str
) -> None:
    with connect(f"{server.ws_url}/api/v1/runs/{run_id}/ws") as ws:
        for i in range(2000):
            ws.send(json.dumps({"type": "nope", "n": i}))
        answers = 0
        while answers < 2000:
            frame = json.loads(ws.recv(timeout=30))
            answers += frame["type"] == "error"
    with connect(f"{server.ws_url}/ws") as ws:
        ws.recv(timeout=10)
        for _ in range(2000):
            ws.send("not json")
    with contextlib.ExitStack() as stack:  # and many sockets opened, then dropped at once
        for _ in range(50):
            stack.enter_context(connect(f"{server.ws_url}/ws"))
    still_answers(server)
