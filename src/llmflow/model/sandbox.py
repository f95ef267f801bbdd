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
``evaluate`` open a budget; the size checks hold without one.

The deadline reads a monotonic clock: it is a watchdog on CPU time, never an input to a
decision (a render either finishes well inside it or fails the same way every time).
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from jinja2 import StrictUndefined, nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import pass_context
from jinja2.visitor import NodeTransformer

from llmflow.model import limits as _limits

MAX_POWER_BITS = 4096  # largest integer a template may build with '**'
_TICK_EVERY = 64  # operations between two looks at the clock
_FORMAT_NUMBER = re.compile(r"\d+")


class TemplateLimitError(SecurityError):
    """A template went past one of the sandbox's limits."""


class ValueTooLarge(TemplateLimitError):
    """A template tried to build a value past the size limit."""


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


def _cap() -> int:
    return _limits.current().template_output


def weight(value: Any, limit: int) -> int:
    """Characters of text plus items of containers in ``value``, counted deeply; stops
    counting once past ``limit`` (so the cost is bounded by the limit, not the value)."""
    total = 0
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str | bytes | bytearray):
            total += len(v)
        elif isinstance(v, dict):
            total += len(v)
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, list | tuple | set | frozenset):
            total += len(v)
            stack.extend(v)
        elif isinstance(v, range):
            total += len(v)
        else:
            total += 1
        if total > limit:
            return total
    return total


def _too_large(what: str, size: int | None = None) -> ValueTooLarge:
    cap = _cap()
    shown = f" ({size} characters/items)" if size is not None else ""
    return ValueTooLarge(
        f"{what} would build a value larger than {cap} characters/items{shown} (LLMFLOW_TEMPLATE_MAX_OUTPUT)"
    )


def check_weight(value: Any, what: str) -> Any:
    cap = _cap()
    w = weight(value, cap)
    if w > cap:
        raise _too_large(what)
    return value


def _check_ints(args: Any, what: str) -> None:
    cap = _cap()
    for a in args:
        if isinstance(a, int) and not isinstance(a, bool) and abs(a) > cap:
            raise _too_large(what, abs(a))


# a %-conversion's width / precision, and a {}-field's format spec
_PCT = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\d+|\*)?(?:\.(\d+|\*))?")
_BRACE_SPEC = re.compile(r"\{[^{}]*?:((?:[^{}]|\{[^{}]*\})*)\}")


def _check_format(fmt: Any, args: Any, what: str) -> None:
    """A format string may not ask for a field wider than the cap (``%099999999d``,
    ``{:>99999999}``), nor take its width from an argument that is (``%*d``, ``{:{w}}``)."""
    if not isinstance(fmt, str):
        return
    cap = _cap()
    numbers: list[str] = []
    from_args = False
    for m in _PCT.finditer(fmt):
        for g in m.groups():
            if g == "*":
                from_args = True
            elif g:
                numbers.append(g)
    for m in _BRACE_SPEC.finditer(fmt):
        spec = m.group(1)
        from_args = from_args or "{" in spec
        numbers += _FORMAT_NUMBER.findall(spec)
    if any(len(n) > 12 or int(n) > cap for n in numbers):
        raise _too_large(what)
    if from_args:
        flat = (
            list(args.values())
            if isinstance(args, dict)
            else list(args)
            if isinstance(args, tuple | list)
            else [args]
        )
        _check_ints(flat, what)


def _join_estimate(sep: str, items: Any) -> int:
    if not isinstance(items, list | tuple | set | frozenset | dict | str):
        return 0
    cap = _cap()
    return weight(list(items), cap) + len(sep) * len(items)


def _replace_estimate(s: Any, old: Any, new: Any, count: Any = -1) -> int:
    if not (isinstance(s, str) and isinstance(old, str) and isinstance(new, str)):
        return 0
    n = s.count(old) if old else len(s) + 1
    if isinstance(count, int) and count >= 0:
        n = min(n, count)
    return len(s) + n * max(0, len(new) - len(old))


def _precheck_method(obj: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Before a method of a str/bytes/list/tuple runs: refuse calls that would build a
    huge value in one step. (``str.format`` is checked where Jinja wraps it.)"""
    owner = getattr(obj, "__self__", None)
    name = getattr(obj, "__name__", "")
    if not isinstance(owner, str | bytes | list | tuple):
        return
    what = f"'.{name}()'"
    cap = _cap()
    if name in ("center", "ljust", "rjust", "zfill", "expandtabs"):
        _check_ints([*args, *kwargs.values()], what)
    elif name == "join" and args and isinstance(owner, str | bytes):
        if _join_estimate(str(owner), args[0]) > cap:
            raise _too_large(what)
    elif name == "replace" and len(args) >= 2:
        if (
            _replace_estimate(owner, args[0], args[1], args[2] if len(args) > 2 else kwargs.get("count", -1))
            > cap
        ):
            raise _too_large(what)
    elif name == "translate" and args and isinstance(owner, str) and isinstance(args[0], dict):
        longest = max((len(v) for v in args[0].values() if isinstance(v, str)), default=1)
        if len(owner) * longest > cap:
            raise _too_large(what)


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
            _check_ints([*real[1:], *kwargs.values()], what)
        elif name == "format" and real:
            _check_format(real[0], real[1:] if len(real) > 1 else kwargs, what)
        elif name == "replace" and len(real) >= 3:
            if (
                _replace_estimate(
                    str(real[0]), real[1], real[2], real[3] if len(real) > 3 else kwargs.get("count", -1)
                )
                > _cap()
            ):
                raise _too_large(what)
        elif name == "join" and real:
            sep = real[1] if len(real) > 1 else kwargs.get("d", "")
            if _join_estimate(str(sep), real[0]) > _cap():
                raise _too_large(what)
        return check_weight(fn(*args, **kwargs), what)

    return guarded


def _range(*args: Any) -> range:
    _check_ints(args, "range()")
    r = range(*args)
    lim = _limits.current().template_range
    if len(r) > lim:
        raise ValueTooLarge(f"range() of {len(r)} items is longer than {lim} (LLMFLOW_TEMPLATE_MAX_RANGE)")
    return r


def _lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:  # noqa: A002 - Jinja's names
    from jinja2.utils import generate_lorem_ipsum

    _check_ints([n, min, max], "lipsum()")
    if isinstance(n, int) and isinstance(max, int) and n * max * 12 > _cap():
        raise _too_large("lipsum()")
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
            _check_format(
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
        _precheck_method(__obj, args, kwargs)
        result = super().call(__context, __obj, *args, **kwargs)
        return check_weight(result, f"calling {getattr(__obj, '__name__', 'a function')}()")

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        _tick()
        cap = _cap()
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                if (
                    isinstance(seq, str | list | tuple)
                    and isinstance(n, int)
                    and n > 0
                    and weight(seq, cap) * n > cap
                ):
                    raise _too_large("'*'")
        elif operator == "+":
            if (
                isinstance(left, str | list | tuple)
                and isinstance(right, str | list | tuple)
                and weight(left, cap) + weight(right, cap) > cap
            ):
                raise _too_large("'+'")
        elif operator == "%":
            if isinstance(left, str):
                _check_format(left, right, "'%'")
        elif operator == "**" and isinstance(left, int) and isinstance(right, int) and right > 0:
            if abs(left) > 1 and left.bit_length() * right > MAX_POWER_BITS:
                raise ValueTooLarge(f"'**' would build an integer of more than {MAX_POWER_BITS} bits")
        return check_weight(super().call_binop(context, operator, left, right), f"'{operator}'")
