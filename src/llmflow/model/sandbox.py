"""The template sandbox: Jinja2's immutable sandbox, bounded in time and size.

A flow's templates are written by whoever wrote the flow, which on a server can be anyone
who may post one. Jinja's sandbox already refuses unsafe attributes; this module adds the
bounds that keep one template from freezing or exhausting the process (see
:mod:`llmflow.model.limits` for the values and their settings):

- **time**: every render or evaluation has a deadline. It is checked as the template
  works: on each item a ``{% for %}`` loop takes, each call (functions, macros, methods,
  filters), each operator we intercept and each piece of output. A template past its
  deadline stops with :class:`RenderTimeout`.
- **size**: no value a template builds may weigh more than ``template_output`` (characters
  of text plus items of containers, counted deeply), and the text one render produces in
  all (output, blocks, macro bodies) is capped the same. Operations that could build a
  huge value in one C call are checked *before* they run: ``*``, ``+``, ``%``, ``**``,
  ``range()``, ``str.center/ljust/rjust/zfill/expandtabs/format/join/replace/translate`` and
  the filters that pad, repeat or replace.
- Jinja's compile-time constant folding is off (``optimized=False``): it would run filters
  and operators before any of these checks could.

The checks hook Jinja where it is designed to be hooked: the sandbox's ``call`` and
``call_binop`` (``intercepted_binops``), the filter table, the globals, and one pass over
the parsed template (``_generate``) that routes loop iterables, ``~`` concatenations and
output through the guards. Only :func:`llmflow.model.expressions.render` /
``evaluate`` open a budget; the size checks hold without one. What a value weighs and what
an operation would build are :mod:`llmflow.model.template_sizes`.

The deadline reads a monotonic clock: it is a watchdog on CPU time, never an input to a
decision (a render either finishes well inside it or fails the same way every time).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from jinja2 import StrictUndefined, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import pass_context
from jinja2.visitor import NodeTransformer

from llmflow.model import limits as _limits
from llmflow.model.template_sizes import (
    TemplateLimitError,
    ValueTooLarge,
    check_format,
    check_ints,
    check_weight,
    join_estimate,
    precheck_method,
    replace_estimate,
    size_cap,
    too_large,
    weight,
)

MAX_POWER_BITS = 4096  # largest integer a template may build with '**'
_TICK_EVERY = 64  # operations between two looks at the clock


class RenderTimeout(TemplateLimitError):
    """A template ran past its time limit."""


@dataclass
class Budget:
    """What one render (or evaluation) may still use."""

    limits: _limits.Limits
    deadline: float
    produced: int = 0
    ticks: int = 0

    def tick(self) -> None:
        self.ticks += 1
        if self.ticks % _TICK_EVERY == 0 and time.monotonic() > self.deadline:
            raise RenderTimeout(
                f"the template ran longer than {self.limits.template_seconds:g}s (LLMFLOW_TEMPLATE_TIMEOUT)"
            )


_BUDGET: ContextVar[Budget | None] = ContextVar("llmflow_template_budget", default=None)


@contextmanager
def budget() -> Iterator[Budget]:
    """A budget for one render; nested renders share the outer one."""
    outer = _BUDGET.get()
    if outer is not None:
        yield outer
        return
    lim = _limits.current()
    b = Budget(lim, time.monotonic() + lim.template_seconds)
    token = _BUDGET.set(b)
    try:
        yield b
    finally:
        _BUDGET.reset(token)


def _tick() -> None:
    b = _BUDGET.get()
    if b is not None:
        b.tick()


# filters that build text or lists from a size argument: the arguments they may not exceed
_SIZE_ARG_FILTERS = frozenset({"center", "indent", "wordwrap", "batch", "slice", "truncate"})
# filters written in Python that take seconds on inputs near the size cap, in one call the
# deadline cannot interrupt: the input they take (about half a second's work)
_SLOW_FILTER_INPUT = {
    "wordwrap": 300_000,
    "urlize": 1_000_000,
    "pprint": 200_000,
    "title": 3_000_000,
    "striptags": 3_000_000,
    "xmlattr": 100_000,
}


def _guard_filter(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    from jinja2.utils import _PassArg

    skip = 0 if _PassArg.from_obj(fn) is None else 1  # context / environment comes first

    @functools.wraps(fn)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        _tick()
        real = args[skip:]
        what = f"the filter '{name}'"
        slow = _SLOW_FILTER_INPUT.get(name)
        if slow is not None and real and weight(real[0], slow) > slow:
            raise ValueTooLarge(f"the filter '{name}' takes at most {slow} characters/items")
        if name in _SIZE_ARG_FILTERS:
            check_ints([*real[1:], *kwargs.values()], what)
        elif name == "format" and real:
            check_format(real[0], real[1:] if len(real) > 1 else kwargs, what)
        elif name == "replace" and len(real) >= 3:
            if (
                replace_estimate(
                    str(real[0]), real[1], real[2], real[3] if len(real) > 3 else kwargs.get("count", -1)
                )
                > size_cap()
            ):
                raise too_large(what)
        elif name == "join" and real:
            sep = real[1] if len(real) > 1 else kwargs.get("d", "")
            if join_estimate(str(sep), real[0]) > size_cap():
                raise too_large(what)
        return check_weight(fn(*args, **kwargs), what)

    return guarded


def _range(*args: Any) -> range:
    check_ints(args, "range()")
    r = range(*args)
    lim = _limits.current().template_range
    if len(r) > lim:
        raise ValueTooLarge(f"range() of {len(r)} items is longer than {lim} (LLMFLOW_TEMPLATE_MAX_RANGE)")
    return r


def _lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:  # noqa: A002 - Jinja's names
    from jinja2.utils import generate_lorem_ipsum

    check_ints([n, min, max], "lipsum()")
    if isinstance(n, int) and isinstance(max, int) and n * max * 12 > size_cap():
        raise too_large("lipsum()")
    return generate_lorem_ipsum(n, html, min, max)


# -- the guards the template pass routes through --------------------------------------------------


@pass_context
def _iter_guard(context: Any, value: Any) -> Any:
    """A loop's iterable: one tick per item."""
    b = _BUDGET.get()
    if b is None or isinstance(value, StrictUndefined):
        return value
    return _ticking(value, b)


def _ticking(value: Any, b: Budget) -> Iterator[Any]:
    for item in value:
        b.tick()
        yield item


@pass_context
def _size_guard(context: Any, value: Any) -> Any:
    """A ``~`` concatenation's result."""
    _tick()
    return check_weight(value, "'~'")


@pass_context
def _output_guard(context: Any, value: Any) -> Any:
    """A piece of output (in the template, a block or a macro): counts what is produced."""
    b = _BUDGET.get()
    if b is None:
        return value
    b.tick()
    b.produced += len(value) if isinstance(value, str) else len(str(value))
    if b.produced > b.limits.template_output:
        raise ValueTooLarge(
            f"the template's output would exceed {b.limits.template_output} characters (LLMFLOW_TEMPLATE_MAX_OUTPUT)"
        )
    return value


GUARDS = {"llmflow_iter": _iter_guard, "llmflow_size": _size_guard, "llmflow_out": _output_guard}


def _filter(node: nodes.Expr, name: str) -> nodes.Filter:
    return nodes.Filter(node, name, [], [], None, None, lineno=node.lineno)


class _Guard(NodeTransformer):
    """Routes loop iterables, ``~`` and output through the guards."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        node = self.generic_visit(node)  # type: ignore[assignment]
        node.iter = _filter(node.iter, "llmflow_iter")  # type: ignore[arg-type]  # an iterable is an Expr in practice
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        node = self.generic_visit(node)  # type: ignore[assignment]
        return _filter(node, "llmflow_size")

    def visit_Output(self, node: nodes.Output) -> nodes.Node:
        node = self.generic_visit(node)  # type: ignore[assignment]
        node.nodes = [
            _filter(
                nodes.Const(c.data, lineno=c.lineno) if isinstance(c, nodes.TemplateData) else c,
                "llmflow_out",
            )
            for c in node.nodes
        ]
        return node


class Sandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox with time and size limits (see the module docstring)."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, **kw: Any) -> None:
        super().__init__(optimized=False, **kw)
        self.globals["range"] = _range
        self.globals["lipsum"] = _lipsum
        self.filters = {name: _guard_filter(name, fn) for name, fn in self.filters.items()}
        self.filters.update(GUARDS)

    def _generate(
        self, source: nodes.Template, name: str | None, filename: str | None, defer_init: bool = False
    ) -> str:
        return super()._generate(_Guard().visit(source), name, filename, defer_init)  # type: ignore[arg-type]

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        fmt, name = value.__self__, value.__name__

        def checked(*args: Any, **kwargs: Any) -> str:
            _tick()
            check_format(
                fmt,
                args[0] if name == "format_map" and args else {**dict(enumerate(args)), **kwargs},
                f"'.{name}()'",
            )
            return wrapped(*args, **kwargs)

        return checked

    def getattr(self, obj: Any, attribute: str) -> Any:
        # `inputs.items` is the input named "items", not dict.items: for mappings, keys win
        # over methods (Jinja tries the attribute first)
        if isinstance(obj, dict):
            try:
                return obj[attribute]
            except (KeyError, TypeError):
                pass
        return super().getattr(obj, attribute)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805 - Jinja's signature
        _tick()
        precheck_method(__obj, args, kwargs)
        result = super().call(__context, __obj, *args, **kwargs)
        return check_weight(result, f"calling {getattr(__obj, '__name__', 'a function')}()")

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        _tick()
        cap = size_cap()
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                if (
                    isinstance(seq, str | list | tuple)
                    and isinstance(n, int)
                    and n > 0
                    and weight(seq, cap) * n > cap
                ):
                    raise too_large("'*'")
        elif operator == "+":
            if (
                isinstance(left, str | list | tuple)
                and isinstance(right, str | list | tuple)
                and weight(left, cap) + weight(right, cap) > cap
            ):
                raise too_large("'+'")
        elif operator == "%":
            if isinstance(left, str):
                check_format(left, right, "'%'")
        elif operator == "**" and isinstance(left, int) and isinstance(right, int) and right > 0:
            if abs(left) > 1 and left.bit_length() * right > MAX_POWER_BITS:
                raise ValueTooLarge(f"'**' would build an integer of more than {MAX_POWER_BITS} bits")
        return check_weight(super().call_binop(context, operator, left, right), f"'{operator}'")
