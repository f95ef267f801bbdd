"""What a model call cost, in USD.

Prices come from `genai-prices <https://github.com/pydantic/genai-prices>`_ (Pydantic's
maintained table of LLM API prices, installed with every hosted-provider extra because
pydantic-ai depends on it), looked up by provider and model: ``openai:gpt-4o-mini``,
``anthropic:claude-sonnet-4-5``, ``gemini:gemini-2.5-flash`` (dated snapshots such as
``openai:gpt-4o-mini-2024-07-18`` match their model). Your own table wins over it:

    # prices.yaml  (LLMFLOW_PRICES=prices.yaml, or inline JSON/YAML)
    openai:gpt-4o-mini: {input: 0.15, output: 0.60}     # USD per 1M tokens
    mycorp:llama-70b:   {input: 0.0, output: 0.0}

An entry matches its exact model, else the longest entry the model starts with.
``fake``, ``local`` and ``ollama`` models run on your machine and cost 0. Anything else
unknown (an OpenAI-compatible host you named, a model genai-prices does not list, or
genai-prices not installed) has no price: :func:`cost` returns ``None``.
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
# llmflow provider -> genai-prices provider id (only providers whose list prices apply)
GENAI_PROVIDERS = {"openai": "openai", "anthropic": "anthropic", "gemini": "google"}


@dataclass(frozen=True)
class Price:
    input: float  # USD per 1M input tokens
    output: float  # USD per 1M output tokens


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


def price_table(overrides: Mapping[str, Any] | None = None) -> dict[str, Price]:
    """Your prices, keyed by normalised ``provider:model`` (they win over genai-prices)."""
    return {_normalise(key): _price(value, key) for key, value in (overrides or {}).items()}


def load_prices(source: str | Path | Mapping[str, Any]) -> dict[str, Price]:
    """A price table from a mapping, a YAML/JSON file path, or inline YAML/JSON text."""
    if isinstance(source, Mapping):
        return price_table(source)
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
    return price_table(data)


def lookup(model_spec: str, table: Mapping[str, Price] | None) -> Price | None:
    """The price ``table`` gives ``model_spec``: exact entry, else the longest matching prefix."""
    if not table:
        return None
    spec = _normalise(model_spec)
    if spec in table:
        return table[spec]
    matches = [key for key in table if spec.startswith(key)]
    return table[max(matches, key=len)] if matches else None


_UNLISTED: set[tuple[str, str]] = set()  # (provider, model) genai-prices does not know: asked once


def listed_cost(model_spec: str, usage: Usage) -> float | None:
    """USD from genai-prices, or None (not a listed provider or model, or not installed)."""
    provider, model = split_model(_normalise(model_spec))
    pid = GENAI_PROVIDERS.get(provider)
    if pid is None or not model or (pid, model) in _UNLISTED:
        return None
    try:
        import genai_prices
    except ImportError:
        return None
    try:
        calc = genai_prices.calc_price(
            genai_prices.Usage(input_tokens=usage.input_tokens, output_tokens=usage.output_tokens),
            model,
            provider_id=pid,
        )
    except LookupError:
        _UNLISTED.add((pid, model))
        return None
    return float(calc.total_price)


def cost(model_spec: str, usage: Usage, table: Mapping[str, Price] | None = None) -> float | None:
    """USD for ``usage`` on ``model_spec``: your table, else 0 for models on this machine,
    else genai-prices; None when nothing prices it."""
    price = lookup(model_spec, table)
    if price is not None:
        return (usage.input_tokens * price.input + usage.output_tokens * price.output) / 1_000_000
    if split_model(model_spec)[0] in FREE_PROVIDERS:
        return 0.0
    return listed_cost(model_spec, usage)
