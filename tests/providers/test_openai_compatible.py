"""The pydantic-ai path against real OpenAI-compatible HTTP servers on loopback.

Two servers: a small FastAPI app speaking /v1/chat/completions with SSE streaming (exact
usage, and the error statuses a hosted API sends), and llama-cpp-python's own server running
the embedded Gemma model (a real OpenAI-compatible server, marked slow/real_model).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llmflow.errors import ProviderError, ProviderUnavailableError, RateLimitError
from llmflow.providers.base import ChatMessage, ModelRequest
from llmflow.providers.registry import ProviderRegistry

from .conftest import ThreadedServer, chunks, final, free_port, request, run

fastapi = pytest.importorskip("fastapi")
pytest.importorskip("pydantic_ai")
SECRET = "sk-test-SECRET-123456"


class FakeOpenAI:
    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.auth: list[str | None] = []

    def app(self) -> Any:
        from fastapi import FastAPI
        from fastapi.responses import JSONResponse, StreamingResponse

        app = FastAPI()

        @app.post("/v1/chat/completions")
        async def chat(req: fastapi.Request) -> Any:
            body = await req.json()
            self.bodies.append(body)
            self.auth.append(req.headers.get("authorization"))
            model = body["model"]
            if model == "limited":
                error = {
                    "error": {
                        "message": "Rate limit reached",
                        "type": "rate_limit_error",
                        "code": "rate_limit_exceeded",
                    }
                }
                return JSONResponse(error, status_code=429, headers={"Retry-After": "7"})
            if model == "auth":
                error = {
                    "error": {
                        "message": f"Incorrect API key provided: {SECRET}",
                        "type": "invalid_request_error",
                        "code": "invalid_api_key",
                    }
                }
                return JSONResponse(error, status_code=401)
            if model == "boom":
                return JSONResponse(
                    {"error": {"message": "upstream exploded", "type": "server_error"}}, status_code=500
                )
            if model == "boom-key":  # a server error whose text talks about keys
                return JSONResponse(
                    {
                        "error": {
                            "message": "Internal error while checking the API key",
                            "type": "server_error",
                            "code": "invalid_api_key",
                        }
                    },
                    status_code=500,
                )
            text = (
                json.dumps({"label": "news"}) if body.get("response_format") else "Hello from the test server"
            )
            return StreamingResponse(self._sse(model, text), media_type="text/event-stream")

        return app

    async def _sse(self, model: str, text: str) -> Any:
        def event(choices: list[dict[str, Any]], **extra: Any) -> str:
            data = {
                "id": "chatcmpl-1",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": model,
                "choices": choices,
                **extra,
            }
            return f"data: {json.dumps(data)}\n\n"

        words = text.split(" ")
        for i, word in enumerate(words):
            piece = word if i == 0 else " " + word
            yield event(
                [{"index": 0, "delta": {"role": "assistant", "content": piece}, "finish_reason": None}]
            )
        yield event([{"index": 0, "delta": {}, "finish_reason": "stop"}])
        yield event(
            [], usage={"prompt_tokens": 12, "completion_tokens": len(words), "total_tokens": 12 + len(words)}
        )
        yield "data: [DONE]\n\n"


@pytest.fixture(scope="module")
def fake_openai() -> Iterator[tuple[FakeOpenAI, str]]:
    state = FakeOpenAI()
    with ThreadedServer(state.app()) as server:
        yield state, server.url + "/v1"


def localhost(url: str, **extra: str) -> Any:
    env = {"LLMFLOW_PROVIDER_LOCALHOST_BASE_URL": url, "LLMFLOW_PROVIDER_LOCALHOST_API_KEY": SECRET, **extra}
    return ProviderRegistry(env)


def test_streams_text_and_reports_usage(fake_openai: tuple[FakeOpenAI, str]) -> None:
    state, url = fake_openai
    provider, model = localhost(url).resolve("localhost:tiny")
    req = ModelRequest(
        model,
        [ChatMessage("system", "Be brief."), ChatMessage("user", "Hi")],
        params={"max_tokens": 20, "temperature": 0.0},
    )
    items = run(provider, req)
    assert chunks(items) == ["Hello", " from", " the", " test", " server"]
    result = final(items)
    assert result.text == "Hello from the test server"
    assert (result.usage.input_tokens, result.usage.output_tokens) == (12, 5)
    assert result.model == "localhost:tiny" and result.finish_reason == "stop"
    body = state.bodies[-1]
    assert body["stream"] is True and body["max_tokens"] == 20 and "max_completion_tokens" not in body
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert state.auth[-1] == f"Bearer {SECRET}"


def test_output_schema_is_passed_to_the_server(fake_openai: tuple[FakeOpenAI, str]) -> None:
    state, url = fake_openai
    provider, model = localhost(url).resolve("localhost:tiny")
    schema = {"type": "object", "properties": {"label": {"type": "string"}}, "required": ["label"]}
    result = final(run(provider, request(model, "Classify", output_schema=schema)))
    assert json.loads(result.text) == {"label": "news"}
    body = state.bodies[-1]
    assert body["response_format"] == {"type": "json_object"}  # prompted mode: schema in the instructions
    assert '"label"' in body["messages"][0]["content"] and body["messages"][0]["role"] == "system"


def test_native_structured_output_can_be_switched_on(fake_openai: tuple[FakeOpenAI, str]) -> None:
    state, url = fake_openai
    registry = localhost(url, LLMFLOW_PROVIDER_LOCALHOST_STRUCTURED_OUTPUT="native")
    provider, model = registry.resolve("localhost:tiny")
    schema = {
        "type": "object",
        "properties": {"label": {"type": "string"}},
        "required": ["label"],
        "title": "Verdict",
    }
    run(provider, request(model, "Classify", output_schema=schema))
    fmt = state.bodies[-1]["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["name"] == "Verdict"


def test_429_maps_to_rate_limit_error_with_retry_after(fake_openai: tuple[FakeOpenAI, str]) -> None:
    state, url = fake_openai
    provider, _ = localhost(url).resolve("localhost:limited")
    calls = len(state.bodies)
    with pytest.raises(RateLimitError) as info:
        run(provider, request("limited"))
    assert info.value.retry_after == 7.0 and info.value.retryable
    assert len(state.bodies) == calls + 1  # no hidden SDK retries: the engine decides


def test_401_is_not_retryable_names_the_env_var_and_hides_the_key(
    fake_openai: tuple[FakeOpenAI, str],
) -> None:
    _, url = fake_openai
    provider, _ = localhost(url).resolve("localhost:auth")
    with pytest.raises(ProviderError) as info:
        run(provider, request("auth"))
    error = info.value
    assert not error.retryable
    assert "LLMFLOW_PROVIDER_LOCALHOST_API_KEY" in (error.hint or "")
    assert SECRET not in str(error) and SECRET not in repr(error.args) and SECRET not in (error.hint or "")
    assert error.__cause__ is None or SECRET not in str(error.__cause__)


def test_5xx_is_retryable(fake_openai: tuple[FakeOpenAI, str]) -> None:
    _, url = fake_openai
    provider, _ = localhost(url).resolve("localhost:boom")
    with pytest.raises(ProviderError) as info:
        run(provider, request("boom"))
    assert info.value.retryable and not isinstance(info.value, RateLimitError)


def test_a_5xx_that_mentions_the_api_key_is_a_server_error_not_rejected_credentials(
    fake_openai: tuple[FakeOpenAI, str],
) -> None:
    _, url = fake_openai
    provider, _ = localhost(url).resolve("localhost:boom-key")
    with pytest.raises(ProviderError) as info:
        run(provider, request("boom-key"))
    error = info.value
    assert error.retryable and "HTTP 500" in error.message
    assert "rejected the credentials" not in error.message and "API_KEY" not in (error.hint or "")


def test_connection_refused_is_a_retryable_provider_error() -> None:
    provider, _ = localhost(f"http://127.0.0.1:{free_port()}/v1").resolve("localhost:tiny")
    with pytest.raises(ProviderError) as info:
        run(provider, request("tiny"))
    assert info.value.retryable and "could not reach localhost:tiny" in str(info.value)


def test_openai_without_a_key_says_which_env_var_to_set() -> None:
    provider, _ = ProviderRegistry({}).resolve("openai:gpt-4o-mini")
    with pytest.raises(ProviderUnavailableError, match="OPENAI_API_KEY"):
        run(provider, request("gpt-4o-mini"))


@pytest.mark.parametrize(
    ("spec", "var"),
    [
        ("anthropic:claude-3-5-haiku-latest", "ANTHROPIC_API_KEY"),
        ("gemini:gemini-2.5-flash", "GEMINI_API_KEY"),
    ],
)
def test_hosted_providers_without_keys_name_their_env_var(spec: str, var: str) -> None:
    provider, model = ProviderRegistry({}).resolve(spec)
    with pytest.raises(ProviderUnavailableError) as info:
        run(provider, request(model))
    assert var in str(info.value)


@pytest.mark.parametrize(
    ("spec", "env", "module", "line"),
    [
        (
            "anthropic:claude-x",
            {"ANTHROPIC_API_KEY": "k"},
            "pydantic_ai.models.anthropic",
            "pip install 'llmflow[anthropic]'",
        ),
        (
            "gemini:gemini-x",
            {"GEMINI_API_KEY": "k"},
            "pydantic_ai.models.google",
            "pip install 'llmflow[gemini]'",
        ),
        (
            "openai:gpt-x",
            {"OPENAI_API_KEY": "k"},
            "pydantic_ai.models.openai",
            "pip install 'llmflow[openai]'",
        ),
    ],
)
def test_missing_extra_gives_the_exact_pip_line(
    monkeypatch: pytest.MonkeyPatch, spec: str, env: dict[str, str], module: str, line: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # makes importing it fail
    provider, model = ProviderRegistry(env).resolve(spec)
    with pytest.raises(ProviderUnavailableError) as info:
        run(provider, request(model))
    assert line in str(info.value)


# --- llama-cpp-python's own OpenAI-compatible server, running the embedded model ----------------


@pytest.fixture(scope="module")
def llama_server(gemma_path: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    try:
        import llama_cpp.server.app  # noqa: F401 — needs llama-cpp-python[server]
    except ImportError as exc:
        pytest.skip(f"llama-cpp-python[server] is not installed: {exc}")
    port = free_port()
    log = Path(tmp_path_factory.mktemp("llama-server")) / "server.log"
    cmd = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        gemma_path,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--chat_format",
        "gemma",
        "--n_ctx",
        "2048",
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONWARNINGS": "ignore"}
        )
    try:
        _wait_until_serving(proc, port, log)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_until_serving(proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
    import httpx

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"llama-cpp server exited: {log.read_text(errors='replace')[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise RuntimeError("llama-cpp server did not start within 120 s")


@pytest.mark.slow
@pytest.mark.real_model
def test_real_llama_cpp_server_streams_text(llama_server: str) -> None:
    provider, model = localhost(llama_server).resolve("localhost:gemma3-270m")
    req = request(
        model, "What is the capital of France?", params={"max_tokens": 16, "temperature": 0.0, "seed": 1}
    )
    items = run(provider, req)
    pieces = chunks(items)
    result = final(items)
    assert len(pieces) > 1 and "".join(pieces) == result.text and result.text.strip()
    # llama-cpp-python's server sends no usage while streaming, so usage is estimated in words.
    assert result.usage.input_tokens > 0 and result.usage.output_tokens > 0
    assert result.finish_reason in ("stop", "length")
