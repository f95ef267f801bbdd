"""Resolving provider:model specs: blocking real calls, unknown names, custom hosts."""

from __future__ import annotations

import subprocess
import sys

import pytest

from llmflow.errors import ProviderUnavailableError
from llmflow.providers.base import Usage
from llmflow.providers.fake import FakeProvider, FakeScript
from llmflow.providers.ollama import OllamaProvider
from llmflow.providers.pydantic_ai_provider import PydanticAIProvider
from llmflow.providers.registry import DEFAULT_MODEL, ProviderRegistry

from .conftest import final, request, run


@pytest.mark.parametrize(
    "spec",
    [
        "local:gemma3-270m",
        "openai:gpt-4o-mini",
        "anthropic:claude-x",
        "gemini:g",
        "google:g",
        "ollama:llama3.1",
    ],
)
def test_real_providers_are_blocked_when_not_allowed(spec: str) -> None:
    registry = ProviderRegistry({}, allow_real=False)
    with pytest.raises(ProviderUnavailableError, match="real model calls are blocked in tests; opt in with"):
        registry.resolve(spec)


def test_custom_hosts_are_blocked_too() -> None:
    registry = ProviderRegistry({"LLMFLOW_PROVIDER_VLLM_BASE_URL": "http://127.0.0.1:1/v1"}, allow_real=False)
    with pytest.raises(ProviderUnavailableError, match="blocked"):
        registry.resolve("vllm:qwen")


def test_fake_is_always_allowed_and_gets_the_scripts() -> None:
    registry = ProviderRegistry({}, allow_real=False, fake_scripts={"critic": FakeScript(answers=["yes"])})
    provider, model = registry.resolve("fake:critic")
    assert isinstance(provider, FakeProvider) and model == "critic"
    assert final(run(provider, request(model))).text == "yes"


def test_instances_are_cached_per_provider_name() -> None:
    registry = ProviderRegistry({}, allow_real=False)
    assert registry.resolve("fake:a")[0] is registry.resolve("fake:b?latency=1")[0]
    assert registry.resolve("fake:b?latency=1")[1] == "b?latency=1"


def test_unknown_provider_lists_the_known_ones() -> None:
    registry = ProviderRegistry(
        {"LLMFLOW_PROVIDER_MYHOST_BASE_URL": "http://127.0.0.1:1/v1"}, allow_real=False
    )
    with pytest.raises(ProviderUnavailableError) as info:
        registry.resolve("nosuch:model")
    message = str(info.value)
    assert "unknown provider 'nosuch'" in message
    for name in ("fake", "local", "openai", "anthropic", "gemini", "google", "ollama", "myhost"):
        assert name in message
    assert "LLMFLOW_PROVIDER_NOSUCH_BASE_URL" in (info.value.hint or "")


def test_a_spec_without_provider_says_how_to_write_it() -> None:
    with pytest.raises(ProviderUnavailableError, match="provider:model"):
        ProviderRegistry({}).resolve("gpt-4o-mini")


def test_empty_spec_means_the_default_model() -> None:
    assert DEFAULT_MODEL == "local:gemma3-270m"
    provider, model = ProviderRegistry({}).resolve("")
    assert provider.name == "local" and model == "gemma3-270m"
    provider, model = ProviderRegistry({}, allow_real=False, default_model="fake:critic").resolve("")
    assert provider.name == "fake" and model == "critic"


def test_custom_openai_compatible_host_from_env() -> None:
    env = {
        "LLMFLOW_PROVIDER_LOCALHOST_BASE_URL": "http://127.0.0.1:8000/v1",
        "LLMFLOW_PROVIDER_LOCALHOST_API_KEY": "k-123",
    }
    registry = ProviderRegistry(env)
    provider, model = registry.resolve("localhost:qwen2.5")
    assert isinstance(provider, PydanticAIProvider) and model == "qwen2.5"
    assert provider.connection.base_url == "http://127.0.0.1:8000/v1"
    assert provider.connection.kind == "compatible"
    assert "k-123" not in repr(provider.connection)


def test_builtin_names_win_over_custom_hosts() -> None:
    registry = ProviderRegistry({"LLMFLOW_PROVIDER_OLLAMA_BASE_URL": "http://127.0.0.1:1/v1"})
    assert isinstance(registry.resolve("ollama:llama3.1")[0], OllamaProvider)


def test_ollama_settings_come_from_env() -> None:
    env = {
        "OLLAMA_BASE_URL": "http://10.9.9.9:1234/",
        "OLLAMA_TIMEOUT_SECONDS": "7",
        "OLLAMA_HEARTBEAT_INTERVAL": "0",
    }
    provider = ProviderRegistry(env, ollama_pull=True).resolve("ollama:llama3.1:8b")[0]
    assert isinstance(provider, OllamaProvider)
    assert (provider.base_url, provider.timeout, provider.allow_pull, provider.heartbeat_interval) == (
        "http://10.9.9.9:1234",
        7.0,
        True,
        0.0,
    )


def test_google_is_an_alias_for_gemini() -> None:
    registry = ProviderRegistry({"GOOGLE_API_KEY": "g"})
    assert registry.resolve("google:gemini-2.5-flash")[0] is registry.resolve("gemini:gemini-2.5-flash")[0]


def test_cost_uses_the_price_overrides() -> None:
    registry = ProviderRegistry({}, prices={"openai:gpt-4o-mini": {"input": 1, "output": 1}})
    assert registry.cost("openai:gpt-4o-mini", Usage(500_000, 500_000)) == pytest.approx(1.0)


def test_importing_providers_is_cheap_and_reads_no_env() -> None:
    code = """
import os, sys
class Spy(dict):
    def __getitem__(self, k): raise AssertionError(f"env read at import: {k}")
    def get(self, k, d=None): raise AssertionError(f"env read at import: {k}")
os.environ = Spy(os.environ)
import llmflow.providers.base, llmflow.providers.fake, llmflow.providers.fake_schema, llmflow.providers.local
import llmflow.providers.ollama, llmflow.providers.pydantic_ai_provider, llmflow.providers.registry
import llmflow.providers.limits, llmflow.providers.pricing
heavy = [m for m in ("llama_cpp", "pydantic_ai", "openai", "anthropic", "google.genai", "httpx", "yaml") if m in sys.modules]
assert not heavy, heavy
"""
    subprocess.run([sys.executable, "-c", code], check=True)
