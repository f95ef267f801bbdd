"""Deterministic JSON values shaped like a JSON schema, for the fake model.

Covers the schemas flows use for structured output: ``object`` (``properties``,
``required``), ``string`` (``enum``, ``minLength``/``maxLength``), ``number`` and
``integer`` (``minimum``/``maximum``), ``boolean``, ``array`` (``items``, ``minItems``),
``enum``, ``const``, ``anyOf``/``oneOf``/``allOf`` (first branch), ``$ref`` into
``$defs``/``definitions``, and ``type`` lists (first non-null type).
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

_MAX_DEPTH = 8


def value_for_schema(schema: dict[str, Any], seed: str) -> Any:
    """A value that validates against ``schema``, the same for the same ``seed``."""
    return _value(schema, schema, seed, 0)


def _pick(seed: str, path: str, n: int) -> int:
    return int(hashlib.sha256(f"{seed}/{path}".encode()).hexdigest()[:8], 16) % max(n, 1)


def _resolve(root: dict[str, Any], ref: str) -> dict[str, Any]:
    node: Any = root
    for part in ref.removeprefix("#/").split("/"):
        if not isinstance(node, dict) or part not in node:
            return {}
        node = node[part]
    return node if isinstance(node, dict) else {}


def _type_of(schema: dict[str, Any]) -> str | None:
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None and "properties" in schema:
        return "object"
    return kind


def _value(schema: dict[str, Any], root: dict[str, Any], path: str, depth: int) -> Any:
    if not isinstance(schema, dict) or depth > _MAX_DEPTH:
        return None
    if "$ref" in schema:
        return _value(_resolve(root, schema["$ref"]), root, path, depth + 1)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        options = schema["enum"]
        return options[_pick(path, "enum", len(options))]
    for combinator in ("anyOf", "oneOf", "allOf"):
        branches = schema.get(combinator)
        if branches:
            usable = [
                b for b in branches if not (isinstance(b, dict) and b.get("type") == "null")
            ] or branches
            return _value(usable[0], root, path, depth + 1)
    kind = _type_of(schema)
    if kind == "object":
        props = schema.get("properties") or {}
        return {key: _value(sub, root, f"{path}/{key}", depth + 1) for key, sub in props.items()}
    if kind == "array":
        count = max(1, int(schema.get("minItems", 1)))
        if "maxItems" in schema:
            count = min(count, int(schema["maxItems"]))
        items = schema.get("items") or {"type": "string"}
        return [_value(items, root, f"{path}/{i}", depth + 1) for i in range(count)]
    if kind == "string":
        text = f"fake-{hashlib.sha256(path.encode()).hexdigest()[:6]}"
        text = text.ljust(int(schema.get("minLength", 0)), "x")
        if "maxLength" in schema:
            text = text[: int(schema["maxLength"])]
        return text
    if kind in ("number", "integer"):
        return _number(schema, path, integer=kind == "integer")
    if kind == "boolean":
        return _pick(path, "b", 2) == 1
    if kind == "null":
        return None
    return f"fake-{hashlib.sha256(path.encode()).hexdigest()[:6]}"


def _number(schema: dict[str, Any], path: str, *, integer: bool) -> int | float:
    low = float(schema.get("minimum", schema.get("exclusiveMinimum", 0)))
    high = float(schema.get("maximum", schema.get("exclusiveMaximum", low + 100)))
    fraction = (_pick(path, "n", 1000) + 1) / 1002  # strictly inside (0, 1): exclusive bounds hold
    if integer:
        lo, hi = math.ceil(low), math.floor(high)
        lo += 1 if "exclusiveMinimum" in schema and lo == low else 0
        hi -= 1 if "exclusiveMaximum" in schema and hi == high else 0
        return lo + _pick(path, "i", max(hi - lo, 0) + 1)
    if high <= low:
        return low
    value = low + (high - low) * fraction
    rounded = round(value, 3)
    return rounded if low < rounded < high else value
