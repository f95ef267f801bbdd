"""Native Ollama against a loopback server that speaks its routes (/api/tags, /api/pull, /api/chat)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest

from llmflow.errors import ProviderError, ProviderUnavailableError, StepTimeoutError
from llmflow.providers.base import Chunk, Status
from llmflow.providers.ollama import OllamaProvider

from .conftest import ThreadedServer, chunks, final, free_port, request, run, statuses

fastapi = pytest.importorskip("fastapi")


class FakeOllama:
    """State of the test server: installed models and what it was asked."""

    def __init__(self) -> None:
        self.models = [
            "llama3.1:latest",
            "qwen2.5:0.5b",
            "slow-model:latest",
            "broken-model:latest",
            "midway-model:latest",
        ]
        self.calls: list[tuple[str, Any]] = []

    def app(self) -> Any:
        from fastapi import FastAPI
        from fastapi.responses import JSONResponse, StreamingResponse

        app = FastAPI()

        @app.get("/api/tags")
        async def tags() -> dict:
            self.calls.append(("tags", None))
            return {"models": [{"name": m, "model": m} for m in self.models]}

        @app.post("/api/pull")
        async def pull(req: fastapi.Request) -> StreamingResponse:
            body = await req.json()
            self.calls.append(("pull", body))

            async def lines() -> Any:
                for status in ("pulling manifest", "downloading", "success"):
                    yield json.dumps({"status": status}) + "\n"
                self.models.append(body["model"] + ":latest")

            return StreamingResponse(lines(), media_type="application/x-ndjson")

        @app.post("/api/chat")
        async def chat(req: fastapi.Request) -> Any:
            body = await req.json()
            self.calls.append(("chat", body))
            model = body["model"]
            if model.startswith("broken"):
                return JSONResponse({"error": "model runner crashed"}, status_code=500)
            first_delay = 0.75 if model.startswith("slow") else 0.0
            gap = 0.3 if model.startswith("slow") else 0.0

            async def lines() -> Any:
                await asyncio.sleep(first_delay)
                if model.startswith("midway"):
                    yield (
                        json.dumps(
                            {
                                "model": model,
                                "message": {"role": "assistant", "content": "par"},
                                "done": False,
                            }
                        )
                        + "\n"
                    )
                    yield json.dumps({"error": "out of memory"}) + "\n"
                    return
                words = ["Hello", " from", " Ollama"]
                for i, word in enumerate(words):
                    if i:
                        await asyncio.sleep(gap)
                    yield (
                        json.dumps(
                            {"model": model, "message": {"role": "assistant", "content": word}, "done": False}
                        )
                        + "\n"
                    )
                yield (
                    json.dumps(
                        {
                            "model": model,
                            "message": {"role": "assistant", "content": ""},
                            "done": True,
                            "done_reason": "stop",
                            "prompt_eval_count": 11,
                            "eval_count": 3,
                        }
                    )
                    + "\n"
                )

            return StreamingResponse(lines(), media_type="application/x-ndjson")

        return app


@pytest.fixture(scope="module")
def ollama() -> Iterator[tuple[FakeOllama, str]]:
    state = FakeOllama()
    with ThreadedServer(state.app()) as server:
        yield state, server.url


def provider(url: str, **kwargs: Any) -> OllamaProvider:
    return OllamaProvider(url, **kwargs)


def test_streams_chat_text_and_usage(ollama: tuple[FakeOllama, str]) -> None:
    state, url = ollama
    items = run(
        provider(url),
        request("llama3.1", "Say hello", params={"temperature": 0.2, "max_tokens": 9, "seed": 4}),
    )
    assert chunks(items) == ["Hello", " from", " Ollama"]
    result = final(items)
    assert result.text == "Hello from Ollama"
    assert (result.usage.input_tokens, result.usage.output_tokens) == (11, 3)
    assert result.model == "ollama:llama3.1" and result.finish_reason == "stop"
    body = [b for kind, b in state.calls if kind == "chat"][-1]
    assert body["messages"] == [{"role": "user", "content": "Say hello"}]
    assert body["options"] == {"temperature": 0.2, "num_predict": 9, "seed": 4}
    assert body["stream"] is True


def test_output_schema_is_sent_as_format(ollama: tuple[FakeOllama, str]) -> None:
    state, url = ollama
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    run(provider(url), request("qwen2.5:0.5b", output_schema=schema))
    assert [b for kind, b in state.calls if kind == "chat"][-1]["format"] == schema


def test_tags_are_checked_once_per_model(ollama: tuple[FakeOllama, str]) -> None:
    state, url = ollama
    p = provider(url)
    before = sum(1 for kind, _ in state.calls if kind == "tags")
    run(p, request("llama3.1"))
    run(p, request("llama3.1"))
    assert sum(1 for kind, _ in state.calls if kind == "tags") == before + 1


def test_missing_model_without_pull_says_how_to_get_it(ollama: tuple[FakeOllama, str]) -> None:
    _, url = ollama
    with pytest.raises(ProviderUnavailableError) as info:
        run(provider(url), request("mistral"))
    assert "has no model 'mistral'" in str(info.value)
    assert "ollama pull mistral" in (info.value.hint or "") and "LLMFLOW_OLLAMA_PULL=1" in (
        info.value.hint or ""
    )


def test_missing_model_is_pulled_when_allowed(ollama: tuple[FakeOllama, str]) -> None:
    state, url = ollama
    items = run(provider(url, allow_pull=True), request("phi3"))
    assert items[0] == Status("loading", "Pulling phi3 into Ollama (LLMFLOW_OLLAMA_PULL is on)")
    assert ("pull", {"model": "phi3", "stream": True}) in state.calls
    assert final(items).text == "Hello from Ollama"


def test_slow_first_token_yields_heartbeats_then_stops_them(ollama: tuple[FakeOllama, str]) -> None:
    _, url = ollama
    items = run(provider(url, heartbeat_interval=0.2), request("slow-model"))
    beats = statuses(items)
    assert len(beats) >= 2
    assert all(
        b.kind == "heartbeat" and b.message.startswith("Still waiting on slow-model... ") for b in beats
    )
    assert beats[0].message.endswith("s elapsed")
    first_chunk = next(i for i, item in enumerate(items) if isinstance(item, Chunk))
    assert not statuses(items[first_chunk:])  # later gaps (0.3 s) between tokens are not heartbeats
    assert final(items).text == "Hello from Ollama"


def test_heartbeat_interval_zero_disables_heartbeats(ollama: tuple[FakeOllama, str]) -> None:
    _, url = ollama
    assert statuses(run(provider(url, heartbeat_interval=0), request("slow-model"))) == []


def test_server_error_is_retryable(ollama: tuple[FakeOllama, str]) -> None:
    _, url = ollama
    with pytest.raises(ProviderError) as info:
        run(provider(url), request("broken-model"))
    assert info.value.retryable and "model runner crashed" in str(info.value)


def test_error_inside_the_stream_is_a_provider_error(ollama: tuple[FakeOllama, str]) -> None:
    _, url = ollama
    with pytest.raises(ProviderError, match="out of memory"):
        run(provider(url), request("midway-model"))


def test_timeout_is_a_step_timeout(ollama: tuple[FakeOllama, str]) -> None:
    _, url = ollama
    with pytest.raises(StepTimeoutError):
        run(provider(url, timeout=0.2, heartbeat_interval=0), request("slow-model"))


def test_not_running_names_the_url_and_the_fix() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ProviderUnavailableError) as info:
        run(provider(url), request("llama3.1"))
    assert (
        str(info.value)
        == f"Ollama is not reachable at {url}: start it or set OLLAMA_HOST (or OLLAMA_BASE_URL)"
    )
    assert not info.value.retryable
