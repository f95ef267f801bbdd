"""How tokens cross from the embedded model's generating thread to the event loop.

The generating thread wakes the loop at most once per ``WAKE_SECONDS`` (the first token, the
end and errors at once); the loop hands the tokens buffered meanwhile on as one chunk. Here
generation is a stand-in that emits tokens from the worker thread as ``_generate`` does, so
the batching is checked without the model and without timing (a wake-up period of an hour)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from llmflow.errors import ProviderError
from llmflow.providers import local
from llmflow.providers.base import Chunk, Final, Status
from llmflow.providers.local import LocalProvider

from .conftest import collect, request, run

TOKENS = [f"t{i} " for i in range(100)]


@pytest.fixture
def no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local, "_import_llama", lambda: object())
    monkeypatch.setattr(LocalProvider, "_load", lambda self, path: local._LoadedModel(None, threading.Lock()))
    monkeypatch.setattr(local, "WAKE_SECONDS", 3600.0)


def generating(end: tuple[str, Any]) -> Any:
    def fake(loaded: Any, prompt: str, options: dict[str, Any], emit: Any, cancelled: Any) -> None:
        assert threading.current_thread() is not threading.main_thread()
        for t in TOKENS:
            emit(("chunk", t))
        emit(end)

    return fake


def test_tokens_between_wake_ups_arrive_as_one_chunk(no_model: None, monkeypatch: pytest.MonkeyPatch) -> None:
    text = "".join(TOKENS).rstrip()
    monkeypatch.setattr(local, "_generate", generating(("final", (text, 12, 100, "length"))))
    items = run(LocalProvider(), request("gemma3-270m", params={"max_tokens": 100}))

    assert all(isinstance(i, Status) for i in items[:-1] if not isinstance(i, Chunk))  # "loading", if any
    chunks = [i.text for i in items if isinstance(i, Chunk)]
    # the first token wakes the loop at once; the rest wait for the next wake-up: the end
    assert 1 <= len(chunks) <= 2 and chunks[0].startswith("t0 ")
    assert "".join(chunks) == "".join(TOKENS)
    assert items[-1] == Final(text, local.Usage(12, 100), model="local:gemma3-270m", finish_reason="length")


def test_buffered_tokens_arrive_before_an_error(no_model: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local, "_generate", generating(("error", RuntimeError("boom"))))
    seen: list[str] = []

    async def consume() -> None:
        async for item in LocalProvider().stream(request("gemma3-270m")):
            if isinstance(item, Chunk):
                seen.append(item.text)

    with pytest.raises(ProviderError, match="boom"):
        asyncio.run(consume())
    assert "".join(seen) == "".join(TOKENS)


def test_without_a_wake_up_period_no_token_is_lost(no_model: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local, "WAKE_SECONDS", 0.0)
    text = "".join(TOKENS).rstrip()
    monkeypatch.setattr(local, "_generate", generating(("final", (text, 12, 100, "stop"))))

    items = asyncio.run(collect(LocalProvider(), request("gemma3-270m", stream=True)))
    assert "".join(i.text for i in items if isinstance(i, Chunk)) == "".join(TOKENS)
    assert isinstance(items[-1], Final) and items[-1].text == text
