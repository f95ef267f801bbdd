"""Static analysis of templates and conditions, for validation: the names a template reads
(:class:`Reference`: ``inputs.x``, ``steps.<id>.output``, ...) and why it cannot run (a
syntax error, an unsafe attribute), found without rendering it
(:mod:`llmflow.model.expressions` renders)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from jinja2 import TemplateSyntaxError, nodes
from jinja2.parser import Parser

from llmflow.model.diagnostics import did_you_mean
from llmflow.model.expressions import (
    UNSAFE_HINT,
    condition_source,
    environment,
)
from llmflow.model.sandbox import GUARDS


@dataclass(frozen=True)
class Reference:
    namespace: str
    name: str | None  # e.g. step id for "steps", input name for "inputs"


@dataclass
class Analysis:
    references: list[Reference]
    error: str | None = None
    hint: str | None = None


def _parse_condition(src: str) -> nodes.Template:
    """Parse one bare expression (as ``when:`` holds it) into a template tree."""
    env = environment()
    if not src.strip():
        raise TemplateSyntaxError("empty expression", 1)
    parser = Parser(env, src, state="variable")
    try:
        expr = parser.parse_expression()
    except TemplateSyntaxError as exc:
        raise TemplateSyntaxError(
            (exc.message or "").replace("end of template", "end of expression"), exc.lineno
        ) from None
    if not parser.stream.eos:
        tok = parser.stream.current
        shown = "}}" if tok.type == "variable_end" else tok.value
        raise TemplateSyntaxError(f"a condition is one expression; unexpected {shown!r} after it", tok.lineno)
    return nodes.Template([nodes.Output([expr])])


@lru_cache(maxsize=4096)
def analyse(text: str, *, condition: bool = False) -> Analysis:
    """Parse without rendering: syntax errors, unsafe attributes, unknown filters and tests,
    and the names the text refers to. (One walk of the tree, cached by text: validation
    analyses every template of a flow.) Treat the result as read-only."""
    env = environment()
    try:
        tree = _parse_condition(condition_source(text)) if condition else env.parse(text)
    except TemplateSyntaxError as exc:
        return Analysis([], f"syntax error: {exc.message}", "check brackets and quotes in the expression")
    found: dict[type, list[Any]] = {
        nodes.Getattr: [],
        nodes.Getitem: [],
        nodes.Filter: [],
        nodes.Test: [],
        nodes.Name: [],
    }
    for node in tree.find_all((nodes.Getattr, nodes.Getitem, nodes.Filter, nodes.Test, nodes.Name)):
        found[type(node)].append(node)
    getattrs, getitems, filters, tests, names = (
        found[t] for t in (nodes.Getattr, nodes.Getitem, nodes.Filter, nodes.Test, nodes.Name)
    )
    for node in getattrs:
        if node.attr.startswith("_"):
            return Analysis([], f"unsafe attribute '{node.attr}'", UNSAFE_HINT)
    for node in getitems:
        arg = node.arg
        if isinstance(arg, nodes.Const) and isinstance(arg.value, str) and arg.value.startswith("_"):
            return Analysis([], f"unsafe attribute '{arg.value}'", UNSAFE_HINT)
    for node in filters:
        if node.name == "attr" and any(
            isinstance(a, nodes.Const) and str(a.value).startswith("_") for a in node.args
        ):
            return Analysis([], "unsafe attribute in 'attr' filter", UNSAFE_HINT)
        if node.name not in env.filters or node.name in GUARDS:
            return Analysis(
                [],
                f"unknown filter '{node.name}'",
                did_you_mean(node.name, [f for f in env.filters if f not in GUARDS])
                or "see docs/expressions.md for the filters",
            )
    for node in tests:
        if node.name not in env.tests:
            return Analysis(
                [],
                f"unknown test '{node.name}'",
                did_you_mean(node.name, env.tests) or "see docs/expressions.md for the tests",
            )
    declared = {n.name for n in names if n.ctx in ("store", "param")}
    seen: set[tuple[str, str | None]] = set()
    for node in names:
        if node.ctx != "load" or node.name in declared:
            continue
        seen.add((node.name, None))
    for node in getattrs:
        if isinstance(node.node, nodes.Name) and node.node.ctx == "load" and node.node.name not in declared:
            seen.discard((node.node.name, None))
            seen.add((node.node.name, node.attr))
    for node in getitems:
        if (
            isinstance(node.node, nodes.Name)
            and node.node.ctx == "load"
            and node.node.name not in declared
            and isinstance(node.arg, nodes.Const)
            and isinstance(node.arg.value, str)
        ):
            seen.discard((node.node.name, None))
            seen.add((node.node.name, node.arg.value))
    # a bare name seen also with an attribute is covered by the attribute form
    named = {ns for ns, n in seen if n is not None}
    refs = [
        Reference(ns, n)
        for ns, n in sorted(seen, key=lambda x: (x[0], x[1] or ""))
        if n is not None or ns not in named
    ]
    return Analysis(refs)
