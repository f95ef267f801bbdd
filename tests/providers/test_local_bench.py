"""The embedded model's throughput benchmark compares like with like (bench/local_model.py).

The figure in docs/benchmarks.md (llmflow's tokens/s against llama-cpp-python's on a
128-token answer) only means something if both paths load the model with the same settings,
get the same prompt and options, and generate the same number of tokens: the checks here
are those premises, on the real model (no timing)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from llmflow.providers import local
from llmflow.providers.local import DEFAULT_CONTEXT, llama_settings

pytestmark = [pytest.mark.slow, pytest.mark.real_model]


def test_the_provider_loads_the_model_with_the_shared_settings(gemma_path: str) -> None:
    from llmflow.providers.local import LocalProvider

    loaded = LocalProvider()._load(None)
    settings = llama_settings(DEFAULT_CONTEXT)
    assert local._MODELS[gemma_path] is loaded
    assert loaded.llm.n_ctx() == settings["n_ctx"]
    assert loaded.llm.context_params.n_threads == settings["n_threads"]


def test_both_paths_generate_the_same_full_length_answer(gemma_path: str, tmp_path: Path) -> None:
    from bench.local_model import Direct, ThroughLlmflow

    max_tokens = 32
    flow = ThroughLlmflow(tmp_path, max_tokens)
    try:

        async def through() -> tuple[Any, ...]:
            return await flow.rep(render=False)

        n, stored_chunks, status, _wall, _gen, text, events = asyncio.run(through())
        direct = Direct(flow.messages(events), flow.params)
        dn, pieces, finish, _dwall, dtext = direct.rep()
        direct.llm.close()
    finally:
        flow.rt.close()

    assert status == "RUN_COMPLETED"
    # The question's answer is a long one-line list: no stop sequence ends it, so the model
    # generates max_tokens tokens (one streamed piece each) and both paths count the same.
    assert (finish, pieces) == ("length", max_tokens)
    assert text == dtext and n == dn
    assert max_tokens - 4 <= n <= max_tokens  # re-tokenising the stripped text may merge a few
    # the run's text is its stored LLM_TOKENS chunks joined: they hold the whole answer, in order
    assert 1 <= stored_chunks <= pieces
