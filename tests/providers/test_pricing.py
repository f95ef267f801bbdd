"""Prices: genai-prices' maintained table by default, your own table (LLMFLOW_PRICES) first,
0 for models on this machine, None for what nothing prices; and the cost a run records."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from llmflow.providers.base import Usage
from llmflow.providers.pricing import Price, cost, listed_cost, load_prices, lookup, price_table

genai_prices = pytest.importorskip("genai_prices")


def listed(provider: str, model: str, usage: Usage) -> float:
    """What genai-prices itself says (the test does not hard-code a price that will change)."""
    return float(
        genai_prices.calc_price(
            genai_prices.Usage(input_tokens=usage.input_tokens, output_tokens=usage.output_tokens),
            model,
            provider_id=provider,
        ).total_price
    )


def test_hosted_models_are_priced_from_genai_prices():
    usage = Usage(1_000_000, 200_000)
    assert cost("openai:gpt-4o-mini", usage) == pytest.approx(listed("openai", "gpt-4o-mini", usage))
    assert cost("anthropic:claude-sonnet-4-5", usage) == pytest.approx(
        listed("anthropic", "claude-sonnet-4-5", usage)
    )
    assert cost("gemini:gemini-2.5-flash", usage) == pytest.approx(
        listed("google", "gemini-2.5-flash", usage)
    )
    assert cost("google:gemini-2.5-flash", usage) == cost("gemini:gemini-2.5-flash", usage)  # an alias
    assert cost("openai:gpt-4o-mini-2024-07-18", usage) == pytest.approx(
        listed("openai", "gpt-4o-mini", usage)
    )
    assert cost("openai:gpt-4o-mini", usage) > 0


def test_your_table_wins_and_matches_the_longest_prefix():
    table = price_table({"openai:gpt-4o": [1, 1], "openai:gpt-4o-mini": [2, 2]})
    assert lookup("openai:gpt-4o-mini-2024-07-18", table) == Price(2, 2)
    assert lookup("openai:gpt-4o-2024-08-06", table) == Price(1, 1)
    assert cost("openai:gpt-4o-mini", Usage(1_000_000, 500_000), table) == pytest.approx(3.0)


def test_local_models_are_free_and_unknown_models_unpriced():
    assert cost("local:gemma3-270m", Usage(10, 10)) == 0.0
    assert cost("ollama:llama3.1:8b", Usage(10, 10)) == 0.0
    assert cost("fake:critic?latency=1", Usage(10, 10)) == 0.0
    assert cost("mycorp:secret", Usage(10, 10)) is None  # a host you named: only your table prices it
    assert cost("openai:no-such-model-xyz", Usage(10, 10)) is None
    assert listed_cost("vllm:qwen", Usage(10, 10)) is None
    assert cost("mycorp:secret", Usage(1_000_000, 0), price_table({"mycorp:secret": [3, 4]})) == 3.0


def test_tables_from_a_yaml_file_inline_json_and_bad_input(tmp_path: Path):
    path = tmp_path / "prices.yaml"
    path.write_text("openai:gpt-4o-mini: {input: 1.0, output: 2.0}\nmycorp:m: {input: 3, output: 4}\n")
    assert load_prices(path) == {"openai:gpt-4o-mini": Price(1.0, 2.0), "mycorp:m": Price(3, 4)}
    assert load_prices('{"a:b": [1, 2]}') == {"a:b": Price(1, 2)}
    with pytest.raises(FileNotFoundError):
        load_prices("nope/prices.yaml")
    with pytest.raises(ValueError):
        load_prices({"a:b": "cheap"})


def test_a_run_records_the_cost_from_llmflow_prices(tmp_path: Path):
    """End to end: LLMFLOW_PRICES prices a model; the run's cost is what the table says."""
    (tmp_path / "f.yaml").write_text("name: f\nsteps:\n  - id: a\n    llm: 'one two three'\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMFLOW_")}
    env.update(
        LLMFLOW_HOME=str(tmp_path),
        LLMFLOW_BLOCK_REAL_MODELS="1",
        LLMFLOW_PRICES='{"fake:priced": {"input": 1000000, "output": 2000000}}',
    )
    p = subprocess.run(
        [sys.executable, "-m", "llmflow", "run", "f.yaml", "--model", "fake:priced", "--json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    run = json.loads(p.stdout)
    tokens_in, tokens_out = run["usage"]["input_tokens"], run["usage"]["output_tokens"]
    assert run["usage"]["cost"] == pytest.approx(tokens_in * 1.0 + tokens_out * 2.0)
