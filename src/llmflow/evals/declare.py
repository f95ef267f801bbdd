"""Metric declarations -> metrics: a name, ``TYPE=ARG``, ``module:function``, a declared
name, a YAML mapping, or a function (see :mod:`llmflow.evals.metrics` for the types)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llmflow.errors import EvalError
from llmflow.evals.metrics import (
    Bdd,
    Contains,
    Exact,
    FieldEquals,
    JsonSchema,
    Judge,
    Metric,
    Numeric,
    Python,
    Regex,
    Similarity,
)
from llmflow.evals.registry import _REF, MetricInfo
from llmflow.model.registry import registry

TYPES: dict[str, type[Metric]] = {
    c.TYPE: c
    for c in (Exact, Contains, Regex, JsonSchema, FieldEquals, Numeric, Similarity, Judge, Python, Bdd)
}
ALIASES = {
    "equals": "exact",
    "answer_exact_match": "exact",
    "json": "json_schema",
    "schema": "json_schema",
    "fields": "field",
    "semantic": "similarity",
    "llm_judge": "judge",
    "function": "python",
}


def parse_metric(raw: Any, declared: Mapping[str, Any] | None = None, *, allow_code: bool = True) -> Metric:
    """One metric from its declaration (see the module docstring). ``declared``: the metrics
    of the eval file, by name. ``allow_code=False`` refuses Python metrics (requests over
    HTTP may not run code)."""
    declared = declared or {}
    if isinstance(raw, str):
        text = raw.strip()
        if text in declared:
            return parse_metric(declared[text], None, allow_code=allow_code)
        if text.startswith("{"):
            import yaml

            try:
                raw = yaml.safe_load(text)
            except yaml.YAMLError as exc:
                raise EvalError(f"--metric {text!r} is not a YAML mapping: {exc}") from None
            return parse_metric(raw, declared, allow_code=allow_code)
        kind, sep, arg = text.partition("=")
        kind = ALIASES.get(kind.strip(), kind.strip())
        if kind in TYPES:
            cls = TYPES[kind]
            if not sep:
                raw = {"type": kind}
            elif cls.SHORTHAND is None:
                raise EvalError(
                    f"metric {kind!r} takes no argument ({text!r})", hint=f"write --metric {kind}"
                )
            elif cls.SHORTHAND == "threshold":
                raw = {"type": kind, "threshold": arg}
            else:
                raw = {"type": kind, cls.SHORTHAND: arg}
        elif not sep and (registry.metric(text) is not None or _REF.match(text)):
            raw = {"type": "python", "name": text.rsplit(":", 1)[-1], "function": text}
        else:
            known = sorted({*TYPES, *declared, *registry.metrics})
            from llmflow.model.diagnostics import did_you_mean

            raise EvalError(
                f"unknown metric {text!r}",
                hint=did_you_mean(kind, known)
                or f"metrics: {', '.join(known)}; or module:function, or a mapping {{type: ..., ...}}",
            )
    if callable(raw):
        raw = {
            "type": "python",
            "function": raw,
            "name": getattr(
                raw, "__llmflow_metric__", MetricInfo(getattr(raw, "__name__", "metric"), 0.5)
            ).name,
        }
    if isinstance(raw, Metric):
        return raw
    if not isinstance(raw, Mapping):
        raise EvalError(
            f"a metric is a name, TYPE=ARG, module:function or a mapping, not {type(raw).__name__}"
        )
    d = dict(raw)
    given = str(d.pop("type", "") or "")
    kind = ALIASES.get(given, given)
    if not kind and "function" in d:
        kind = "python"
    if kind not in TYPES:
        from llmflow.model.diagnostics import did_you_mean

        raise EvalError(
            f"unknown metric type {kind!r}" if kind else f"metric {d.get('name', '?')!r} has no 'type'",
            hint=did_you_mean(kind, list(TYPES)) or f"types: {', '.join(TYPES)}",
        )
    if (
        kind == "json_schema"
        and not allow_code
        and isinstance(d.get("schema"), str)
        and not d["schema"].lstrip().startswith("{")
    ):
        raise EvalError(
            "a posted json_schema metric carries its schema inline (a mapping or JSON text), never a file path",
            hint="send the schema itself",
        )
    if kind == "python" and not allow_code:
        raise EvalError(
            "python metrics run code, which this server does not allow for posted evaluations",
            hint="use a built-in metric, or start the server with --allow-shell",
        )
    cls = TYPES[kind]
    name = str(d.pop("name", "") or _default_name(kind, d))
    threshold = d.pop("threshold", None)
    if threshold is not None:
        try:
            threshold = float(threshold)
        except (TypeError, ValueError):
            raise EvalError(
                f"metric {name!r}: threshold must be a number in [0, 1], not {threshold!r}"
            ) from None
    output = d.pop("output", None)
    return cls(name, threshold, output, **d)


def _default_name(kind: str, d: Mapping[str, Any]) -> str:
    if kind == "field" and d.get("field"):
        return f"field:{d['field']}"
    if kind == "python" and isinstance(d.get("function"), str):
        return str(d["function"]).rsplit(":", 1)[-1]
    return kind


def parse_metrics(
    raws: list[Any], declared: Mapping[str, Any] | None = None, *, allow_code: bool = True
) -> list[Metric]:
    """Several metrics; names are made unique (``contains``, ``contains#2``)."""
    out: list[Metric] = []
    seen: dict[str, int] = {}
    for raw in raws:
        m = parse_metric(raw, declared, allow_code=allow_code)
        n = seen.get(m.name, 0) + 1
        seen[m.name] = n
        if n > 1:
            m.name = f"{m.name}#{n}"
        out.append(m)
    return out
