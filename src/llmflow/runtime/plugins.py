"""The composition root's plugin step: the one registry, with every plugin loaded.

:func:`build_registry` runs each ``register(registry)`` hook — llmflow's built-ins first
(``llmflow.steps.builtin:register``), then every ``llmflow.plugins`` entry point — and
returns the registry whose executors the runtime runs steps with. A plugin package
declares, in its own ``pyproject.toml``::

    [project.entry-points."llmflow.plugins"]
    my_plugin = "my_plugin:register"

and its hook adds what it brings (see :class:`llmflow.model.registry.Registry`)::

    def register(registry):
        registry.add_step_kind(EchoStep, "my_plugin.steps:execute_echo")
        registry.add_tool("lookup_order", lookup_order)
        registry.add_provider("myhost", make_provider)
        registry.add_store("mydb", "my_plugin.store:open_store")
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llmflow.model.registry import Registry, registry


def build_registry(target: Registry | None = None) -> Registry:
    """``target`` (default: the process registry that the decorators fill) with its plugins
    loaded. Raises :class:`llmflow.model.registry.PluginError` naming a plugin that fails."""
    reg = registry if target is None else target
    reg.load_plugins()
    return reg


def open_store(url: str | None, project_dir: Path | None = None) -> Any:
    """The store ``url`` names, opened by the plugin that registered its scheme (llmflow's
    own SQLite, PostgreSQL and in-memory stores are registered by the built-in plugin). A
    URL without a scheme is a SQLite file path."""
    scheme = url.split("://", 1)[0] if url and "://" in url else "sqlite"
    opener = build_registry().store_opener(scheme)
    if opener is None:  # the built-in opener names the accepted forms (with the password redacted)
        opener = registry.store_opener("sqlite")
        assert opener is not None, "the built-in plugin registers sqlite"
    return opener(url, project_dir)
