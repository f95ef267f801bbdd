"""The size rules of the template sandbox (:mod:`llmflow.model.sandbox`): what a value
weighs (characters of text plus items of containers, counted deeply) and what an operation
would build, checked *before* it runs: padding and repeating arguments, format widths,
``join`` / ``replace`` / ``translate`` estimates. The cap is ``template_output``
(:mod:`llmflow.model.limits`); the checks hold with or without a render's budget."""

from __future__ import annotations

import re
from typing import Any

from jinja2.exceptions import SecurityError

from llmflow.model import limits as _limits

_FORMAT_NUMBER = re.compile(r"\d+")


class TemplateLimitError(SecurityError):
    """A template went past one of the sandbox's limits."""


class ValueTooLarge(TemplateLimitError):
    """A template tried to build a value past the size limit."""


def size_cap() -> int:
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


def too_large(what: str, size: int | None = None) -> ValueTooLarge:
    cap = size_cap()
    shown = f" ({size} characters/items)" if size is not None else ""
    return ValueTooLarge(
        f"{what} would build a value larger than {cap} characters/items{shown} (LLMFLOW_TEMPLATE_MAX_OUTPUT)"
    )


def check_weight(value: Any, what: str) -> Any:
    cap = size_cap()
    w = weight(value, cap)
    if w > cap:
        raise too_large(what)
    return value


def check_ints(args: Any, what: str) -> None:
    cap = size_cap()
    for a in args:
        if isinstance(a, int) and not isinstance(a, bool) and abs(a) > cap:
            raise too_large(what, abs(a))


# a %-conversion's width / precision, and a {}-field's format spec
_PCT = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\d+|\*)?(?:\.(\d+|\*))?")
_BRACE_SPEC = re.compile(r"\{[^{}]*?:((?:[^{}]|\{[^{}]*\})*)\}")


def check_format(fmt: Any, args: Any, what: str) -> None:
    """A format string may not ask for a field wider than the cap (``%099999999d``,
    ``{:>99999999}``), nor take its width from an argument that is (``%*d``, ``{:{w}}``)."""
    if not isinstance(fmt, str):
        return
    cap = size_cap()
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
        raise too_large(what)
    if from_args:
        flat = (
            list(args.values())
            if isinstance(args, dict)
            else list(args)
            if isinstance(args, tuple | list)
            else [args]
        )
        check_ints(flat, what)


def join_estimate(sep: str, items: Any) -> int:
    if not isinstance(items, list | tuple | set | frozenset | dict | str):
        return 0
    cap = size_cap()
    return weight(list(items), cap) + len(sep) * len(items)


def replace_estimate(s: Any, old: Any, new: Any, count: Any = -1) -> int:
    if not (isinstance(s, str) and isinstance(old, str) and isinstance(new, str)):
        return 0
    n = s.count(old) if old else len(s) + 1
    if isinstance(count, int) and count >= 0:
        n = min(n, count)
    return len(s) + n * max(0, len(new) - len(old))


def precheck_method(obj: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Before a method of a str/bytes/list/tuple runs: refuse calls that would build a
    huge value in one step. (``str.format`` is checked where Jinja wraps it.)"""
    owner = getattr(obj, "__self__", None)
    name = getattr(obj, "__name__", "")
    if not isinstance(owner, str | bytes | list | tuple):
        return
    what = f"'.{name}()'"
    cap = size_cap()
    if name in ("center", "ljust", "rjust", "zfill", "expandtabs"):
        check_ints([*args, *kwargs.values()], what)
    elif name == "join" and args and isinstance(owner, str | bytes):
        if join_estimate(str(owner), args[0]) > cap:
            raise too_large(what)
    elif name == "replace" and len(args) >= 2:
        if (
            replace_estimate(owner, args[0], args[1], args[2] if len(args) > 2 else kwargs.get("count", -1))
            > cap
        ):
            raise too_large(what)
    elif name == "translate" and args and isinstance(owner, str) and isinstance(args[0], dict):
        longest = max((len(v) for v in args[0].values() if isinstance(v, str)), default=1)
        if len(owner) * longest > cap:
            raise too_large(what)
