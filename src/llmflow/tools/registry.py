"""Registered Python tools: ``@llmflow.tool``.

Like ``@llmflow.step_function``, the decorator files a function under its name in the one
plugin registry (:mod:`llmflow.model.registry`, where plugins add theirs), so a YAML flow
can list it by name;
the runtime's ``functions`` mapping and explicit ``module:function`` references need no
registration at all.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, overload

from llmflow.model.registry import registry
from llmflow.tools.python import ToolOptions


@overload
def tool(fn: Callable[..., Any], /) -> Callable[..., Any]: ...
@overload
def tool(
    *, name: str | None = None, description: str | None = None, confirm: bool = False
) -> Callable[[Callable[..., Any]], Callable[..., Any]]: ...


def tool(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    confirm: bool = False,
) -> Any:
    """Register a function as a tool agents can call by name (``tools: [name]``).

    The arguments' schema comes from the type hints, the description from the docstring.
    ``confirm=True`` makes every call wait for a human's yes (as ``confirm: true`` in YAML)::

        @llmflow.tool
        def lookup_order(order_id: int) -> dict:
            \"\"\"Find an order by its number.\"\"\"
    """

    def deco(f: Callable[..., Any]) -> Callable[..., Any]:
        opts = ToolOptions(name or f.__name__, description, confirm)
        f.__llmflow_tool__ = opts  # type: ignore[attr-defined]
        registry.add_tool(opts.name, f)
        return f

    return deco(fn) if fn is not None else deco
