"""The one expression language: Jinja2's sandbox with strict undefined.

Templates (prompts, paths, commands) are ``{{ ... }}`` text; conditions (``when``,
``until``, route ``when``) are either a bare expression or one ``{{ ... }}``.
Namespaces: ``inputs``, ``steps.<id>.output`` / ``.outputs``, ``item`` (for_each),
``matrix``, ``run``, ``agent``, ``parameters``, ``loop``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, nodes
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from llmflow.errors import TemplateError

NAMESPACES = ("inputs", "steps", "item", "matrix", "run", "agent", "parameters", "loop", "env")
_SINGLE_EXPR = re.compile(r"^\s*\{\{(.*)\}\}\s*$", re.S)


def _tojson(value: Any, indent: int | None = None) -> str:
    return json.dumps(value, indent=indent, ensure_ascii=False, default=str)


@lru_cache(maxsize=1)
def environment() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)
    env.filters["tojson"] = _tojson
    env.policies["json.dumps_function"] = _tojson
    return env


def is_template(text: str) -> bool:
    return "{{" in text or "{%" in text


@lru_cache(maxsize=4096)
def _compile_template(text: str):  # noqa: ANN202
    return environment().from_string(text)


@lru_cache(maxsize=4096)
def _compile_expr(expr: str):  # noqa: ANN202
    return environment().compile_expression(expr, undefined_to_none=False)


def condition_source(text: str) -> str:
    m = _SINGLE_EXPR.match(text)
    return m.group(1).strip() if m else text.strip()


def _explain(exc: Exception, source: str) -> TemplateError:
    if isinstance(exc, SecurityError):
        return TemplateError(
            f"unsafe expression in {source!r}: {exc}",
            hint="templates may only read values; attributes starting with '_' are not allowed",
        )
    if isinstance(exc, UndefinedError):
        return TemplateError(
            f"{exc} in {source!r}",
            hint="check the name; available: inputs, steps.<id>.output, item, matrix, run, agent, parameters",
        )
    if isinstance(exc, TemplateSyntaxError):
        return TemplateError(f"syntax error in {source!r}: {exc.message}")
    return TemplateError(f"could not evaluate {source!r}: {type(exc).__name__}: {exc}")


def render(text: str, context: dict[str, Any]) -> str:
    """Render a template string. Non-template strings are returned unchanged."""
    if not is_template(text):
        return text
    try:
        return _compile_template(text).render(context)
    except Exception as exc:  # noqa: BLE001 - every template failure becomes a TemplateError
        raise _explain(exc, text) from None


def render_value(value: Any, context: dict[str, Any]) -> Any:
    """Render strings inside nested lists/dicts. A string that is exactly one ``{{ expr }}``
    keeps the expression's native type (a list stays a list)."""
    if isinstance(value, str):
        m = _SINGLE_EXPR.match(value)
        if m and "{{" not in m.group(1) and "}}" not in m.group(1):
            return evaluate(m.group(1), context)
        return render(value, context)
    if isinstance(value, list):
        return [render_value(v, context) for v in value]
    if isinstance(value, dict):
        return {k: render_value(v, context) for k, v in value.items()}
    return value


def evaluate(expr: str, context: dict[str, Any]) -> Any:
    src = condition_source(expr)
    try:
        return _compile_expr(src)(**context)
    except Exception as exc:  # noqa: BLE001
        raise _explain(exc, expr) from None


def truthy(expr: str, context: dict[str, Any]) -> bool:
    return bool(evaluate(expr, context))


# -- static analysis ------------------------------------------------------------------------


@dataclass(frozen=True)
class Reference:
    namespace: str
    name: str | None  # e.g. step id for "steps", input name for "inputs"


@dataclass
class Analysis:
    references: list[Reference]
    error: str | None = None
    hint: str | None = None


def analyse(text: str, *, condition: bool = False) -> Analysis:
    """Parse without rendering: syntax errors, unsafe attributes, and referenced names."""
    env = environment()
    try:
        if condition:
            src = condition_source(text)
            tree = env.parse("{{ (" + src + ") }}")
        else:
            tree = env.parse(text)
    except TemplateSyntaxError as exc:
        return Analysis([], f"syntax error: {exc.message}", "check brackets and quotes in the expression")
    refs: list[Reference] = []
    for node in tree.find_all(nodes.Getattr):
        if node.attr.startswith("_"):
            return Analysis(
                [],
                f"unsafe attribute '{node.attr}'",
                "templates may only read values; attributes starting with '_' are not allowed",
            )
    for node in tree.find_all(nodes.Getitem):
        arg = node.arg
        if isinstance(arg, nodes.Const) and isinstance(arg.value, str) and arg.value.startswith("_"):
            return Analysis([], f"unsafe attribute '{arg.value}'", "attributes starting with '_' are not allowed")
    declared = {n.name for n in tree.find_all(nodes.Name) if n.ctx in ("store", "param")}
    seen: set[tuple[str, str | None]] = set()
    for node in tree.find_all(nodes.Name):
        if node.ctx != "load" or node.name in declared:
            continue
        seen.add((node.name, None))
    for node in tree.find_all(nodes.Getattr):
        if isinstance(node.node, nodes.Name) and node.node.ctx == "load" and node.node.name not in declared:
            seen.discard((node.node.name, None))
            seen.add((node.node.name, node.attr))
    for node in tree.find_all(nodes.Getitem):
        if (
            isinstance(node.node, nodes.Name)
            and node.node.ctx == "load"
            and isinstance(node.arg, nodes.Const)
            and isinstance(node.arg.value, str)
        ):
            seen.discard((node.node.name, None))
            seen.add((node.node.name, node.arg.value))
    # a bare name seen also with an attribute is covered by the attribute form
    named = {ns for ns, n in seen if n is not None}
    for ns, n in sorted(seen, key=lambda x: (x[0], x[1] or "")):
        if n is None and ns in named:
            continue
        refs.append(Reference(ns, n))
    return Analysis(refs)
