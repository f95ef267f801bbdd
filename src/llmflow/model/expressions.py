"""The one expression language: Jinja2's sandbox with strict undefined.

Templates (prompts, paths, commands) are ``{{ ... }}`` text; conditions (``when``,
``until``, route ``when``) are either a bare expression or one ``{{ ... }}``.
Namespaces: ``inputs``, ``steps.<id>.output`` / ``.outputs``, ``item`` (for_each),
``matrix``, ``run``, ``agent``, ``parameters``, ``loop``. See docs/expressions.md.
Rendering is here; what a template reads, found without running it, is
:mod:`llmflow.model.template_analysis`; the sandbox's bounds, :mod:`llmflow.model.sandbox`.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateSyntaxError, Undefined
from jinja2.environment import TemplateExpression
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import missing as _MISSING

from llmflow.errors import TemplateError
from llmflow.model.sandbox import RenderTimeout, Sandbox, budget
from llmflow.model.template_bounds import bounded, bounded_value
from llmflow.model.template_sizes import ValueTooLarge

NAMESPACES = ("inputs", "steps", "item", "matrix", "run", "agent", "parameters", "loop")
# Jinja's own globals: always available, never a reference to flow data
JINJA_GLOBALS = (
    "range",
    "lipsum",
    "dict",
    "cycler",
    "joiner",
    "namespace",
    "true",
    "false",
    "none",
    "True",
    "False",
    "None",
)
_SINGLE_EXPR = re.compile(r"^\s*\{\{(.*)\}\}\s*$", re.S)
UNSAFE_HINT = "templates may only read values; attributes starting with '_' and methods that change data are not allowed"
NAMES_HINT = "available: inputs, steps.<id>.output / .outputs, item, matrix, run, agent, parameters, loop"


def _tojson(value: Any, indent: int | None = None) -> str:
    return json.dumps(value, indent=indent, ensure_ascii=False, default=str)


class _Undefined(StrictUndefined):
    """StrictUndefined whose message lists what *is* available."""

    __slots__ = ()

    @property
    def _undefined_message(self) -> str:
        obj, name = self._undefined_obj, self._undefined_name
        if self._undefined_hint or obj is _MISSING:
            return super()._undefined_message
        if isinstance(obj, dict):
            keys = [str(k) for k in obj]
            shown = ", ".join(keys[:12]) + (", ..." if len(keys) > 12 else "")
            return f"no key {name!r} here (available: {shown or 'nothing'})"
        if isinstance(obj, list | tuple) and not isinstance(name, str):
            return f"index {name!r} is out of range for a list of {len(obj)}"
        return f"a {type(obj).__name__} value has no attribute {name!r}"


@lru_cache(maxsize=1)
def environment() -> ImmutableSandboxedEnvironment:
    env = Sandbox(undefined=_Undefined, autoescape=False, keep_trailing_newline=True)
    env.filters["tojson"] = _tojson
    env.policies["json.dumps_function"] = _tojson
    return env


def is_template(text: str) -> bool:
    return "{{" in text or "{%" in text


# A compiled template's globals are a ChainMap over the environment's, which Jinja copies into
# a new dict on every render; the environment's globals never change once it is made, so each
# template keeps a plain copy (a third of an expression's cost, measured).


@lru_cache(maxsize=4096)
def _compile_template(text: str) -> Template:
    t = environment().from_string(text)
    t.globals = dict(t.globals)
    return t


@lru_cache(maxsize=4096)
def _compile_expr(expr: str) -> TemplateExpression:
    e = environment().compile_expression(expr, undefined_to_none=False)
    e._template.globals = dict(e._template.globals)
    return e


def condition_source(text: str) -> str:
    m = _SINGLE_EXPR.match(text)
    return m.group(1).strip() if m else text.strip()


# how a failed render is told: (error type, message, hint), the first match wins (the
# sandbox's limits are SecurityErrors too, so they come before it)
_EXPLAINED: tuple[tuple[type[BaseException], str, str | None], ...] = (
    (
        RenderTimeout,
        "template took too long: {exc}, in {shown}",
        "templates may not loop for long; do heavy work in a python step, or raise LLMFLOW_TEMPLATE_TIMEOUT",
    ),
    (
        ValueTooLarge,
        "value too large in {shown}: {exc}",
        "templates may not build huge strings, lists or numbers",
    ),
    (
        RecursionError,
        "template nests too deeply in {shown}",
        "macros and recursive loops may not recurse without end",
    ),
    (MemoryError, "template ran out of memory in {shown}", "templates may not build huge values"),
    (SecurityError, "unsafe expression in {shown}: {exc}", UNSAFE_HINT),
    (UndefinedError, "undefined value in {shown}: {exc}", f"check the name; {NAMES_HINT}"),
    (TemplateSyntaxError, "syntax error in {shown}: {message}", "check brackets and quotes"),
    (Exception, "could not evaluate {shown}: {kind}: {exc}", None),
)


def _explain(exc: Exception, source: str) -> TemplateError:
    shown = repr(source if len(source) <= 200 else source[:200] + "...")
    message, hint = next((m, h) for kind, m, h in _EXPLAINED if isinstance(exc, kind))
    text = message.format(exc=exc, shown=shown, message=getattr(exc, "message", exc), kind=type(exc).__name__)
    return TemplateError(text, hint=hint)


def render(text: str, context: dict[str, Any]) -> str:
    """Render a template string, within the current limits' time and output caps
    (:mod:`llmflow.model.limits`). Non-template strings are returned unchanged."""
    if not is_template(text):
        return text
    try:
        with budget():
            return str(_compile_template(text).render(context))
    except Exception as exc:  # noqa: BLE001 - every template failure becomes a TemplateError
        raise _explain(exc, text) from None


def render_value(value: Any, context: dict[str, Any]) -> Any:
    """Render strings inside nested lists/dicts (one time budget for the whole value). A
    string that is exactly one ``{{ expr }}`` keeps the expression's native type (a list
    stays a list)."""
    with budget():
        return _render_value(value, context)


def _render_value(value: Any, context: dict[str, Any]) -> Any:
    if isinstance(value, str):
        m = _SINGLE_EXPR.match(value)
        if m and "{{" not in m.group(1) and "}}" not in m.group(1):
            return evaluate(m.group(1), context)
        return render(value, context)
    if isinstance(value, list):
        return [_render_value(v, context) for v in value]
    if isinstance(value, dict):
        return {k: _render_value(v, context) for k, v in value.items()}
    return value


def evaluate(expr: str, context: dict[str, Any]) -> Any:
    """The value of one expression (``when:``, ``for_each:``), within the current limits."""
    src = condition_source(expr)
    try:
        with budget():
            value = _compile_expr(src)(**context)
        if isinstance(value, Undefined):
            value._fail_with_undefined_error()  # strict: an undefined result is an error
        return value
    except Exception as exc:  # noqa: BLE001
        raise _explain(exc, expr) from None


# -- look-ups: templates that only read values ------------------------------------------------
# Most templates of a flow are literal text around ``{{ inputs.q }}`` / ``{{ steps.a.output }}``.
# Those cannot loop, call or build anything, so they are rendered here, without Jinja and
# without a thread hop, with Jinja's result; anything else (and any look-up that is not a plain
# dict key or list index, or a value that is not a scalar) takes the Jinja path.
_LOOKUP = re.compile(r"\{\{ *([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*|\[[0-9]+\])*) *\}\}")
_PART = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[([0-9]+)\]")
_SCALARS = (str, int, float, bool, type(None))
_NO = object()


@lru_cache(maxsize=4096)
def _lookups(text: str) -> tuple[Any, ...] | None:
    """``text`` as literal strings and look-up paths (tuples of keys and indexes), or None
    when it has anything else Jinja would interpret."""
    out: list[Any] = []
    pos = 0
    for m in _LOOKUP.finditer(text):
        out.append(text[pos : m.start()])
        expr = m.group(1)
        head = re.match(r"[A-Za-z_][A-Za-z0-9_]*", expr)
        assert head is not None
        path: list[Any] = [head.group(0)]
        path += [k if k else int(i) for k, i in _PART.findall(expr[head.end() :])]
        out.append(tuple(path))
        pos = m.end()
    out.append(text[pos:])
    if any(isinstance(x, str) and ("{{" in x or "{%" in x or "{#" in x) for x in out):
        return None
    return tuple(out)


def _look_up(path: tuple[Any, ...], context: dict[str, Any]) -> Any:
    v: Any = context.get(path[0], _NO)
    for k in path[1:]:
        t = type(v)
        if t is dict:
            if isinstance(k, int) or hasattr(dict, k):  # Jinja would try the attribute first
                return _NO
            v = v.get(k, _NO)
        elif t is list and isinstance(k, int):
            v = v[k] if k < len(v) else _NO
        else:
            return _NO
        if v is _NO:
            return _NO
    return v


def render_lookups(text: str, context: dict[str, Any]) -> str | None:
    """``render(text, context)`` for a template of plain look-ups of scalar values; None when
    the template (or a value it reads) needs Jinja."""
    parts = _lookups(text)
    if parts is None:
        return None
    out: list[str] = []
    size = 0
    for i, x in enumerate(parts):
        if i % 2:
            v = _look_up(x, context)
            if v is _NO or type(v) not in _SCALARS:
                return None
            x = str(v)
        out.append(x)
        size += len(x)
    if size > _current_output_cap():
        return None  # Jinja gives the size error
    return "".join(out)


def _current_output_cap() -> int:
    from llmflow.model import limits

    return limits.current().template_output


def lookup_value(value: Any, context: dict[str, Any]) -> Any:
    """``render_value(value, context)`` when every string in it is literal text or plain
    look-ups (a whole ``{{ a.b }}`` string keeps the value's type); ``_NO`` otherwise."""
    if isinstance(value, str):
        if not is_template(value):
            return value
        parts = _lookups(value)
        if parts is None:
            return _NO
        if len(parts) == 3 and parts[0] == "" and parts[2] == "":
            return _look_up(parts[1], context)  # native type, as evaluate() gives it
        r = render_lookups(value, context)
        return _NO if r is None else r
    if isinstance(value, list):
        out = []
        for v in value:
            r = lookup_value(v, context)
            if r is _NO:
                return _NO
            out.append(r)
        return out
    if isinstance(value, dict):
        d = {}
        for k, v in value.items():
            r = lookup_value(v, context)
            if r is _NO:
                return _NO
            d[k] = r
        return d
    return value


def render_quick(text: str, context: dict[str, Any]) -> str:
    """``render``, with plain look-ups done without Jinja."""
    if not is_template(text):
        return text
    r = render_lookups(text, context)
    return r if r is not None else render(text, context)


# -- off the event loop ---------------------------------------------------------------------------
# Step executors render in a worker thread, so a slow template holds a thread (until its
# time cap stops it) and never the event loop. to_thread copies the context: the run's
# limits (model/limits.py) apply in the thread too. Plain look-ups render in place, and so do
# templates that only read, compare and test values with linear filters (``bounded`` in
# model/template_bounds.py): their work is linear in what they read, like storing it.


async def render_async(text: str, context: dict[str, Any]) -> str:
    if not is_template(text):
        return text
    r = render_lookups(text, context)
    if r is not None:
        return r
    if bounded(text):
        return render(text, context)
    import asyncio

    return await asyncio.to_thread(render, text, context)


async def render_value_async(value: Any, context: dict[str, Any]) -> Any:
    if (
        isinstance(value, str)
        and not is_template(value)
        or value is None
        or isinstance(value, int | float | bool)
    ):
        return value
    r = lookup_value(value, context)
    if r is not _NO:
        return r
    if bounded_value(value):
        return render_value(value, context)
    import asyncio

    return await asyncio.to_thread(render_value, value, context)


def truthy(expr: str, context: dict[str, Any]) -> bool:
    return bool(evaluate(expr, context))
