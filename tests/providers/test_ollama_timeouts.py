"""Ollama timeouts in Agent Runner's order: the request's (the step's) timeout wins,
OLLAMA_TIMEOUT_SECONDS is the last fallback, never a cap (issue 15, item 4)."""

from __future__ import annotations

import pytest

from llmflow.errors import StepTimeoutError
from llmflow.providers.ollama import OllamaProvider

from .conftest import final, request, run
from .test_ollama import FakeOllama, ollama  # noqa: F401 - the loopback Ollama fixture


def test_the_steps_timeout_wins_over_a_shorter_env_fallback(ollama: tuple[FakeOllama, str]) -> None:  # noqa: F811
    _, url = ollama
    env = {"OLLAMA_BASE_URL": url, "OLLAMA_TIMEOUT_SECONDS": "0.2", "OLLAMA_HEARTBEAT_INTERVAL": "0"}
    provider = OllamaProvider.from_env(env)
    # slow-model's first token comes after 0.75 s: the step's 30 s applies, not the env's 0.2 s
    assert final(run(provider, request("slow-model", timeout=30))).text == "Hello from Ollama"
    # without a step timeout the env's 0.2 s is the timeout, named in the error, not retried
    with pytest.raises(StepTimeoutError) as info:
        run(provider, request("slow-model"))
    assert "within 0.2s (OLLAMA_TIMEOUT_SECONDS)" in str(info.value) and info.value.retryable is False


def test_a_step_timeout_shorter_than_the_env_is_named_as_the_steps(ollama: tuple[FakeOllama, str]) -> None:  # noqa: F811
    _, url = ollama
    provider = OllamaProvider(url, timeout=300, heartbeat_interval=0)
    with pytest.raises(StepTimeoutError, match=r"within 0\.2s \(the step's timeout\)"):
        run(provider, request("slow-model", timeout=0.2))
