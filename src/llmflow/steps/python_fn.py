"""`python`: call a registered function or an importable ``module:attribute``."""

from __future__ import annotations

import asyncio
import importlib
import inspect
from collections.abc import Callable
from typing import Any

from llmflow.engine.ports import StepContext
from llmflow.errors import ShellDisabledError, StepConfigError, StepError
from llmflow.model.expressions import render_value_async
from llmflow.model.registry import registry
from llmflow.model.spec import PythonStep


def resolve_function(
    name: str, extra: dict[str, Callable[..., Any]] | None = None, *, allow_import: bool = True
) -> Callable[..., Any]:
    if extra and name in extra:
        return extra[name]
    if name in registry.functions:
        return registry.functions[name]
    if not allow_import:  # an importable name can be any code (os:system): trusted runs only
        raise ShellDisabledError(
            f"python step names {name!r}, which is not a registered function; importing code is disabled in this run",
            hint="register the function with @llmflow.step_function(), or allow shell (--allow-shell / unset LLMFLOW_DISABLE_SHELL)",
        )
    mod, sep, attr = name.partition(":")
    if not sep:
        mod, _, attr = name.rpartition(".")
    if not mod or not attr:
        raise StepConfigError(
            f"unknown python function {name!r}",
            hint="register it with @llmflow.step_function() or write 'module:function'",
        )
    try:
        obj: Any = importlib.import_module(mod)
    except ImportError as exc:
        raise StepConfigError(
            f"cannot import {mod!r} for python step: {exc}",
            hint="check the module path and PYTHONPATH",
        ) from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise StepConfigError(f"{mod!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise StepError(f"{name!r} is not callable", retryable=False)
    return obj


async def execute(ctx: StepContext) -> Any:
    spec = ctx.step
    assert isinstance(spec, PythonStep)
    fn = resolve_function(spec.function, ctx.functions, allow_import=ctx.allow_shell)
    kwargs = await render_value_async(spec.args, ctx.template)
    params, is_async = _shape(fn)
    if "ctx" in params:
        kwargs["ctx"] = ctx
    if "item" in params and "item" not in kwargs and ctx.vars.get("item") is not None:
        kwargs["item"] = ctx.vars["item"]
    if is_async:
        return await fn(**kwargs)
    if getattr(fn, "llmflow_quick", False) is True:
        return fn(**kwargs)  # quick: on the event loop, no thread (it cannot block)
    return await asyncio.to_thread(fn, **kwargs)


def quick(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Mark a step function as quick, so the engine may start it inline, in the runner's own
    task, instead of in a task of its own (it saves the task and a turn of the event loop per
    step). An async function: only if, before its first ``await`` that waits, it opens no
    ``asyncio.timeout``, ``TaskGroup`` or cancel scope and does not read
    ``asyncio.current_task()`` (those would bind to the runner's task); waiting later is fine
    (a task takes over at the first wait; cancelling and step timeouts work as usual). A
    plain function: it runs on the event loop instead of in a worker thread, so it must be
    fast and never block (no I/O, no sleep): a step timeout cannot cut it, and every run of
    the process waits while it runs."""
    fn.llmflow_quick = True  # type: ignore[attr-defined]
    return fn


def inline(ctx: StepContext) -> bool:
    """The engine's question (``StepExecutor.inline``): may this call start inline? Only for
    a function marked :func:`quick` (async or plain); others get a task (and a plain one a
    worker thread)."""
    spec = ctx.step
    if not isinstance(spec, PythonStep):
        return False
    fn = resolve_function(spec.function, ctx.functions, allow_import=ctx.allow_shell)
    return getattr(fn, "llmflow_quick", False) is True


execute.inline = inline  # type: ignore[attr-defined]


_SHAPES: dict[Any, tuple[Callable[..., Any], frozenset[str], bool]] = {}


def _shape(fn: Callable[..., Any]) -> tuple[frozenset[str], bool]:
    """(parameter names, is a coroutine function) of ``fn``, inspected once per function."""
    key = id(fn)
    hit = _SHAPES.get(key)
    if hit is not None and hit[0] is fn:
        return hit[1], hit[2]
    try:
        params = frozenset(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        params = frozenset()
    is_async = inspect.iscoroutinefunction(fn)
    if len(_SHAPES) > 1024:
        _SHAPES.clear()
    _SHAPES[key] = (fn, params, is_async)
    return params, is_async
