"""Prices: example defaults, overrides from a mapping or file, and cost()."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmflow.providers.base import Usage
from llmflow.providers.pricing import EXAMPLE_PRICES, Price, cost, load_prices, lookup, price_table


def test_cost_uses_usd_per_million_tokens() -> None:
    table = {"openai:gpt-4o-mini": Price(0.15, 0.60)}
    usage = Usage(input_tokens=1_000_000, output_tokens=500_000)
    assert cost("openai:gpt-4o-mini", usage, table) == pytest.approx(0.45)


def test_dated_snapshots_match_the_longest_prefix() -> None:
    table = price_table({"openai:gpt-4o": [1, 1], "openai:gpt-4o-mini": [2, 2]}, include_examples=False)
    assert lookup("openai:gpt-4o-mini-2024-07-18", table) == Price(2, 2)
    assert lookup("openai:gpt-4o-2024-08-06", table) == Price(1, 1)


def test_unknown_models_have_no_price_and_local_models_are_free() -> None:
    assert cost("mycorp:secret", Usage(10, 10)) is None
    assert cost("local:gemma3-270m", Usage(10, 10)) == 0.0
    assert cost("ollama:llama3.1:8b", Usage(10, 10)) == 0.0
    assert cost("fake:critic?latency=1", Usage(10, 10)) == 0.0


def test_google_is_an_alias_of_gemini() -> None:
    assert lookup("google:gemini-2.5-flash") == EXAMPLE_PRICES["gemini:gemini-2.5-flash"]


def test_overrides_from_a_yaml_file(tmp_path: Path) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text("openai:gpt-4o-mini: {input: 1.0, output: 2.0}\nmycorp:m: {input: 3, output: 4}\n")
    table = load_prices(path)
    assert table["openai:gpt-4o-mini"] == Price(1.0, 2.0)
    assert cost("mycorp:m", Usage(1_000_000, 0), table) == 3.0
    assert "gemini:gemini-2.5-flash" in table  # examples kept unless excluded


def test_inline_json_and_missing_files() -> None:
    assert load_prices('{"a:b": [1, 2]}', include_examples=False) == {"a:b": Price(1, 2)}
    with pytest.raises(FileNotFoundError):
        load_prices("nope/prices.yaml")
    with pytest.raises(ValueError):
        load_prices({"a:b": "cheap"})
