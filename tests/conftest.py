"""Shared test setup: every test gets its own llmflow home, and real model calls are blocked
unless the test opts in with ``@pytest.mark.real_model``."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _isolated_llmflow(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    home = tmp_path_factory.mktemp("llmflow-home")
    monkeypatch.setenv("LLMFLOW_HOME", str(home))
    for var in (
        "LLMFLOW_DATABASE_URL",
        "LLMFLOW_MODEL",
        "LLMFLOW_CONFIG_DIR",
        "OLLAMA_PLANNER_MODEL",
        "OLLAMA_CODER_MODEL",
        "LLMFLOW_API_TOKEN",
    ):
        monkeypatch.delenv(var, raising=False)
    if request.node.get_closest_marker("real_model") is None:
        monkeypatch.setenv("LLMFLOW_BLOCK_REAL_MODELS", "1")
    else:
        monkeypatch.delenv("LLMFLOW_BLOCK_REAL_MODELS", raising=False)
