"""Registered Python tools: ``@llmflow.tool`` and the ``llmflow.tools`` entry points.

Like ``@llmflow.step_function`` (see :mod:`llmflow.model.registry`), the decorator files a
function under its name in one process-wide catalogue, so a YAML flow can list it by name;
the runtime's ``functions`` mapping and explicit ``module:function`` references need no
registration at all.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, overload

from llmflow.tools.python import ToolOptions


class ToolRegistry:
    def __init__(self) -> None:
        self.functions: dict[str, Callable[..., Any]] = {}
        self._plugins_loaded = False

    def load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        from importlib.metadata import entry_points

        for ep in entry_points(group="llmflow.tools"):
            self.functions.setdefault(ep.name, ep.load())

    def get(self, name: str) -> Callable[..., Any] | None:
        if name not in self.functions:
            self.load_plugins()
        return self.functions.get(name)

    def names(self) -> list[str]:
        self.load_plugins()
        return sorted(self.functions)


registry = ToolRegistry()


@overload
def tool(fn: Callable[..., Any], /) -> Callable[..., Any]: ...
@overload
def tool(*, name: str | None = None, description: str | None = None, confirm: bool = False) -> Callable[[Callable[..., Any]], Callable[..., Any]]: ...


def tool(fn: Callable[..., Any] | None = None, /, *, name: str | None = None, description: str | None = None, confirm: bool = False) -> Any:
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
        registry.functions[opts.name] = f
        return f

    return deco(fn) if fn is not None else deco
