"""Which templates the event loop may evaluate itself: :func:`bounded`. Imports nothing of
llmflow's, so the renderer (expressions.py) and the engine's planner (engine/state.py) can
both ask it."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from jinja2 import Environment, TemplateSyntaxError, nodes
from jinja2.parser import Parser

# A template that could run long (up to its time cap) is evaluated in a worker thread so the
# loop keeps serving the process's other runs: the scheduler's conditions and outputs
# (engine/runner.py), a step's prompt and arguments (expressions.render_async). One that only
# reads values, compares, tests and joins them with linear filters cannot: no loops, no
# calls, no macros or assignments (an ``{% if %}`` is fine), no arithmetic that multiplies
# sizes. Its work is linear in the values it reads, like storing them, so the loop evaluates
# it and saves a thread hop.
_BOUNDED_NODES = frozenset(
    {
        nodes.Output,
        nodes.If,  # a branch, not a loop
        nodes.TemplateData,
        nodes.Name,
        nodes.Getattr,
        nodes.Getitem,
        nodes.Slice,
        nodes.Const,
        nodes.List,
        nodes.Tuple,
        nodes.Dict,
        nodes.Pair,
        nodes.Compare,
        nodes.Operand,
        nodes.And,
        nodes.Or,
        nodes.Not,
        nodes.Neg,
        nodes.Pos,
        nodes.Add,
        nodes.Sub,
        nodes.Concat,
        nodes.CondExpr,
        nodes.Filter,
        nodes.Test,
    }
)
_LINEAR_FILTERS = frozenset(
    {
        "abs",
        "capitalize",
        "count",
        "d",
        "default",
        "e",
        "escape",
        "first",
        "float",
        "int",
        "join",
        "last",
        "length",
        "lower",
        "max",
        "min",
        "round",
        "string",
        "sum",
        "tojson",
        "trim",
        "upper",
    }
)


_SINGLE_EXPR = re.compile(r"^\s*\{\{(.*)\}\}\s*$", re.S)
# parsing only: the syntax is Jinja's default, as in the sandbox that renders (expressions.py)
_PARSER_ENV = Environment()


@lru_cache(maxsize=4096)
def bounded(text: str, *, condition: bool = False) -> bool:
    """Whether evaluating ``text`` (a template, or with ``condition`` one bare expression as
    ``when:`` holds it, ``{{ }}`` around it or not) takes time linear in the values it reads:
    see above. A text that does not parse is not bounded (its error is reported where it is
    evaluated)."""
    try:
        if condition:
            m = _SINGLE_EXPR.match(text)
            parser = Parser(_PARSER_ENV, (m.group(1) if m else text).strip(), state="variable")
            expr = parser.parse_expression()
            if not parser.stream.eos:
                return False  # not one expression
            tree = nodes.Template([nodes.Output([expr])])
        else:
            tree = _PARSER_ENV.parse(text)
    except TemplateSyntaxError:
        return False
    for node in tree.find_all(nodes.Node):
        if type(node) not in _BOUNDED_NODES:
            return False
        if isinstance(node, nodes.Filter) and node.name not in _LINEAR_FILTERS:
            return False
    return True


def bounded_value(value: Any) -> bool:
    """Every template inside ``value`` (strings in nested lists and dicts, as a step's
    arguments or a flow's ``outputs`` hold them) is :func:`bounded`."""
    if isinstance(value, str):
        return bounded(value)
    if isinstance(value, dict):
        return all(bounded_value(v) for v in value.values())
    if isinstance(value, list):
        return all(bounded_value(v) for v in value)
    return True
