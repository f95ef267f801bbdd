"""An optional price table: USD per 1M input / output tokens, by ``provider:model``.

The defaults below are EXAMPLES (list prices seen in 2025) so cost reports show
something; prices change, so give your own table for anything you rely on::

    # prices.yaml  (LLMFLOW_PRICES=prices.yaml)
    openai:gpt-4o-mini: {input: 0.15, output: 0.60}
    mycorp:llama-70b:   {input: 0.0, output: 0.0}

A model matches its exact entry, else the longest entry it starts with (so dated
snapshots such as ``openai:gpt-4o-mini-2024-07-18`` use ``openai:gpt-4o-mini``).
``fake``, ``local`` and ``ollama`` models run on your machine and cost 0. Unknown models
have no price: :func:`cost` returns ``None``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmflow.providers.base import Usage, split_model

FREE_PROVIDERS = frozenset({"fake", "local", "ollama"})
_ALIASES = {"google": "gemini"}


@dataclass(frozen=True)
class Price:
    input: float  # USD per 1M input tokens
    output: float  # USD per 1M output tokens


# EXAMPLES ONLY — not kept up to date. Override with load_prices() / LLMFLOW_PRICES.
EXAMPLE_PRICES: dict[str, Price] = {
    "openai:gpt-4o-mini": Price(0.15, 0.60),
    "openai:gpt-4o": Price(2.50, 10.00),
    "openai:gpt-4.1-mini": Price(0.40, 1.60),
    "anthropic:claude-3-5-haiku": Price(0.80, 4.00),
    "anthropic:claude-sonnet-4": Price(3.00, 15.00),
    "gemini:gemini-2.5-flash": Price(0.30, 2.50),
    "gemini:gemini-2.5-pro": Price(1.25, 10.00),
}


def _normalise(spec: str) -> str:
    provider, name = split_model(spec.partition("?")[0])
    return f"{_ALIASES.get(provider, provider)}:{name}"


def _price(value: Any, key: str) -> Price:
    if isinstance(value, Price):
        return value
    if isinstance(value, Mapping) and {"input", "output"} <= set(value):
        return Price(float(value["input"]), float(value["output"]))
    if isinstance(value, list | tuple) and len(value) == 2:
        return Price(float(value[0]), float(value[1]))
    raise ValueError(f"price for {key!r} must be {{input: USD per 1M, output: USD per 1M}}, got {value!r}")


def price_table(overrides: Mapping[str, Any] | None = None, *, include_examples: bool = True) -> dict[str, Price]:
    """The example prices (unless ``include_examples=False``) updated with ``overrides``."""
    table = dict(EXAMPLE_PRICES) if include_examples else {}
    for key, value in (overrides or {}).items():
        table[_normalise(key)] = _price(value, key)
    return table


def load_prices(source: str | Path | Mapping[str, Any], *, include_examples: bool = True) -> dict[str, Price]:
    """A price table from a mapping, a YAML/JSON file path, or inline YAML/JSON text."""
    if isinstance(source, Mapping):
        return price_table(source, include_examples=include_examples)
    text = str(source)
    path = Path(text)
    if "\n" not in text and len(text) < 4096 and path.suffix.lower() in (".yaml", ".yml", ".json"):
        if not path.is_file():
            raise FileNotFoundError(f"price table {text} does not exist")
        text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except ValueError:
        import yaml

        data = yaml.safe_load(text)
    if not isinstance(data, Mapping):
        raise ValueError("a price table must map 'provider:model' to {input: ..., output: ...}")
    return price_table(data, include_examples=include_examples)


def lookup(model_spec: str, table: Mapping[str, Price] | None = None) -> Price | None:
    """The price of ``model_spec``: exact entry, else the longest matching prefix."""
    table = EXAMPLE_PRICES if table is None else table
    spec = _normalise(model_spec)
    if spec in table:
        return table[spec]
    matches = [key for key in table if spec.startswith(key)]
    return table[max(matches, key=len)] if matches else None


def cost(model_spec: str, usage: Usage, table: Mapping[str, Price] | None = None) -> float | None:
    """USD for ``usage`` on ``model_spec``; 0.0 for models on this machine; None when unpriced."""
    if split_model(model_spec)[0] in FREE_PROVIDERS and lookup(model_spec, table) is None:
        return 0.0
    price = lookup(model_spec, table)
    if price is None:
        return None
    return (usage.input_tokens * price.input + usage.output_tokens * price.output) / 1_000_000
