"""The one plugin registry: step kinds (spec class + executor), Python step functions,
tools, metrics, provider factories and stores.

Everything arrives through one path, a *plugin*: a function ``register(registry)`` named by
an entry point of the group ``llmflow.plugins``. The built-ins are a plugin like any other
(``llmflow.steps.builtin:register``, declared in llmflow's own ``pyproject.toml``), so the
path a third party uses is the path every run already takes. A plugin adds a step kind
with :meth:`Registry.add_step_kind` (spec class and executor together, so a kind that
validates also runs), a function, tool or metric with ``add_function`` / ``add_tool`` /
``add_metric``, a provider with ``add_provider`` (a factory ``factory(name, env)``) and a
store with ``add_store`` (an opener for a database URL scheme).
The older one-purpose groups (``llmflow.step_kinds``, ``llmflow.tools``, ``llmflow.metrics``,
``llmflow.providers``) are read into the same registry.

One process-wide instance, :data:`registry`, exists for a reason: ``@llmflow.step_function``,
``@llmflow.tool`` and ``@llmflow.metric`` run when a user's module is imported, and a
``Flow`` built in plain Python validates its steps, both before any runtime exists. The
composition root (:func:`llmflow.runtime.plugins.build_registry`) loads the plugins into it and
hands its executors to the runtime; tests may make their own ``Registry()``.

Plugins load on the first lookup that misses (and on :meth:`Registry.load_plugins`), never
on import. Executors may be given as ``"module:function"`` and are imported on first use,
so validating a flow does not import the step implementations.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

from llmflow.errors import LlmflowError

PLUGIN_GROUP = "llmflow.plugins"
BUILTIN_PLUGIN = "llmflow.steps.builtin:register"
# one-purpose groups of earlier releases: name -> object, filed under the entry point's name
LEGACY_GROUPS = {
    "llmflow.step_kinds": "kinds",
    "llmflow.tools": "tools",
    "llmflow.metrics": "metrics",
    "llmflow.providers": "providers",
}

Executor = Callable[..., Any]
T = TypeVar("T")
# a StepSpec subclass; typed loosely because spec.py validates steps through this registry
# (spec -> registry), so the registry does not import spec back
StepSpecClass = type[Any]


class PluginError(LlmflowError, ValueError):
    """A plugin cannot be loaded or registered something unusable (named in the message)."""


class Executors(Mapping[str, Executor]):
    """The registry's executors by kind, as the engine reads them (``executors.get(kind)``);
    a ``"module:function"`` reference is imported on first use and a miss loads plugins."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    def __getitem__(self, kind: str) -> Executor:
        found = self._registry.executor(kind)
        if found is None:
            raise KeyError(kind)
        return found

    def __iter__(self) -> Iterator[str]:
        self._registry.load_plugins()
        return iter(list(self._registry._executors))

    def __len__(self) -> int:
        self._registry.load_plugins()
        return len(self._registry._executors)


class Registry:
    """Step kinds with their executors, functions, tools, metrics and providers."""

    def __init__(self) -> None:
        self.kinds: dict[str, StepSpecClass] = {}
        self._executors: dict[str, Executor | str] = {}
        self.functions: dict[str, Callable[..., Any]] = {}
        self.tools: dict[str, Callable[..., Any]] = {}
        self.metrics: dict[str, Callable[..., Any]] = {}
        self.providers: dict[str, Callable[..., Any]] = {}
        self._stores: dict[str, Callable[..., Any] | str] = {}
        self.plugins: list[str] = []  # what was loaded, in order (for `llmflow doctor`-like listings)
        self._plugins_loaded = False
        self._loading = False
        self._lock = threading.RLock()
        self.executors = Executors(self)

    # -- what plugins call ---------------------------------------------------------------
    def add_step_kind(self, spec: StepSpecClass, executor: Executor | str | None = None) -> None:
        """``kind: <spec.KIND>`` validates with ``spec`` and runs with ``executor`` (a callable
        ``async (ctx) -> output`` or ``"module:function"``). Control kinds the engine runs
        itself (parallel, route, loop) have no executor."""
        kind = getattr(spec, "KIND", "")
        if not kind:
            raise PluginError(f"{spec.__name__}.KIND must be set")
        self.kinds[kind] = spec
        if executor is not None:
            self._executors[kind] = executor

    def add_function(self, name: str, fn: Callable[..., Any]) -> None:
        self.functions[name] = fn

    def add_tool(self, name: str, fn: Callable[..., Any]) -> None:
        self.tools[name] = fn

    def add_metric(self, name: str, fn: Callable[..., Any]) -> None:
        self.metrics[name] = fn

    def add_provider(self, name: str, factory: Callable[..., Any]) -> None:
        """``model: <name>:<model>`` resolves to ``factory(name, env)`` (a Provider)."""
        self.providers[name] = factory

    def add_store(self, scheme: str, opener: Callable[..., Any] | str) -> None:
        """``LLMFLOW_DATABASE_URL=<scheme>://...`` opens with ``opener(url, project_dir)``
        (a Store, or ``"module:function"``)."""
        self._stores[scheme] = opener

    # -- lookups -------------------------------------------------------------------------
    def kind(self, name: str) -> StepSpecClass | None:
        return self._find(self.kinds, name)

    def kind_names(self) -> list[str]:
        return self._names(self.kinds)

    def executor(self, kind: str) -> Executor | None:
        return self._resolve(self._executors, kind, f"the executor of step kind {kind!r}")

    def store_opener(self, scheme: str) -> Callable[..., Any] | None:
        return self._resolve(self._stores, scheme, f"the store for {scheme}:// URLs")

    def store_schemes(self) -> list[str]:
        return self._names(self._stores)

    def tool(self, name: str) -> Callable[..., Any] | None:
        return self._find(self.tools, name)

    def tool_names(self) -> list[str]:
        return self._names(self.tools)

    def metric(self, name: str) -> Callable[..., Any] | None:
        return self._find(self.metrics, name)

    def provider_names(self) -> list[str]:
        return self._names(self.providers)

    def _find(self, table: Mapping[str, T], name: str) -> T | None:
        """``table[name]``; a miss loads the plugins first (they may register it)."""
        if name not in table:
            self.load_plugins()
        return table.get(name)

    def _names(self, table: Mapping[str, object]) -> list[str]:
        self.load_plugins()
        return sorted(table)

    def _resolve(
        self, table: dict[str, Callable[..., Any] | str], name: str, what: str
    ) -> Callable[..., Any] | None:
        """``table[name]``, a ``"module:function"`` reference imported (once) on first use."""
        found = self._find(table, name)
        if isinstance(found, str):
            found = table[name] = _import_ref(found, what)
        return found

    # -- loading -------------------------------------------------------------------------
    def load_plugins(self) -> None:
        """Run every plugin's ``register(self)`` once: the built-ins first, then the
        ``llmflow.plugins`` entry points, then the one-purpose groups."""
        if self._plugins_loaded:
            return
        # one loader at a time (server threads validate concurrently); a plugin's own
        # lookups while it registers (same thread) see what is registered so far
        with self._lock:
            if self._plugins_loaded or self._loading:
                return
            self._loading = True
            try:
                self._load_all()
                self._plugins_loaded = True
            finally:
                self._loading = False

    def _load_all(self) -> None:
        from importlib.metadata import entry_points

        found = list(entry_points(group=PLUGIN_GROUP))
        # the built-ins come first, whether or not this checkout's metadata declares them
        # (a source tree on PYTHONPATH has no entry points): same hook, same path
        refs = [BUILTIN_PLUGIN] + [ep.value for ep in found if ep.value != BUILTIN_PLUGIN]
        for ref in refs:
            self.register_plugin(ref)
        for group, attr in LEGACY_GROUPS.items():
            for ep in entry_points(group=group):
                self._load_legacy(ep, attr)

    def register_plugin(self, plugin: str | Callable[[Registry], Any]) -> None:
        """Run one plugin: a ``register(registry)`` callable or its ``"module:function"``."""
        name = plugin if isinstance(plugin, str) else f"{plugin.__module__}:{plugin.__qualname__}"
        fn = _import_ref(plugin, f"the llmflow plugin {name}") if isinstance(plugin, str) else plugin
        fn(self)
        if name not in self.plugins:
            self.plugins.append(name)

    def _load_legacy(self, ep: Any, attr: str) -> None:
        if attr == "providers":  # a factory imported only when a model names it
            self.providers.setdefault(ep.name, _LazyFactory(ep))
            return
        obj = ep.load()
        if attr == "kinds":
            kind = getattr(obj, "KIND", "") or ep.name
            self.kinds.setdefault(kind, obj)
        else:
            getattr(self, attr).setdefault(ep.name, obj)


class _LazyFactory:
    def __init__(self, entry: Any) -> None:
        self._entry = entry

    def __call__(self, name: str, env: Mapping[str, str]) -> Any:
        return self._entry.load()(name, env)


def _import_ref(ref: str, what: str) -> Any:
    mod, sep, attr = ref.partition(":")
    if not sep or not mod or not attr:
        raise PluginError(f"{what}: {ref!r} is not 'module:attribute'")
    try:
        obj: Any = importlib.import_module(mod)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise PluginError(f"{what}: cannot load {ref!r} ({exc})") from None
    return obj


registry = Registry()


def normalise_step(raw: Any) -> Any:
    """Turn the shorthand ``{id: x, llm: {...}}`` into ``{id: x, kind: llm, ...}``.

    Returns the input unchanged when it cannot tell (validation reports the problem)."""
    if not isinstance(raw, dict) or "kind" in raw:
        return raw
    present = [k for k in raw if isinstance(k, str) and registry.kind(k) is not None]
    if len(present) != 1:
        return raw
    kind = present[0]
    body = raw[kind]
    cls = registry.kinds[kind]
    out = {k: v for k, v in raw.items() if k != kind}
    out["kind"] = kind
    if isinstance(body, dict):
        for k, v in body.items():
            out.setdefault(k, v)
    elif isinstance(body, list) and cls.NESTED:
        out.setdefault(cls.NESTED[0], body)
    elif body is not None and cls.SHORTHAND:
        out.setdefault(cls.SHORTHAND, body)
    elif body is not None:
        out[kind] = body  # leave it; validation reports the unknown key
    return out


def coerce_steps(value: Any) -> Any:
    """Validate a list of step documents (or StepSpec objects) into StepSpec instances, each
    with the spec class the registry holds for its kind."""
    if not isinstance(value, list):
        return value
    from pydantic import BaseModel  # here, not at import: importing pydantic reads the environment

    out: list[Any] = []
    for raw in value:
        if isinstance(raw, BaseModel):  # a StepSpec already (pydantic checks the list's type)
            out.append(raw)
            continue
        raw = normalise_step(raw)
        if not isinstance(raw, dict):
            raise ValueError("each step must be a mapping")
        kind = raw.get("kind")
        cls = registry.kind(kind) if isinstance(kind, str) else None
        if cls is None:
            raise ValueError(f"unknown step kind {kind!r}")
        out.append(cls.model_validate(raw))
    return out


def register_step_kind(cls: StepSpecClass) -> StepSpecClass:
    """Class decorator: make a StepSpec subclass usable as ``kind: <cls.KIND>`` (it also needs
    an executor to run: prefer a plugin calling :meth:`Registry.add_step_kind`)."""
    if not getattr(cls, "KIND", ""):
        raise ValueError(f"{cls.__name__}.KIND must be set")
    registry.kinds[cls.KIND] = cls
    return cls


def step_function(
    name: str | None = None, *, quick: bool = False
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: register a Python function for ``python`` steps under ``name``.

    ``quick=True`` marks a function the engine may start inline, in the runner's own task
    (as ``llmflow.steps.python_fn.quick`` does): an async function that opens no
    ``asyncio.timeout``, ``TaskGroup`` or cancel scope before its first waiting ``await``, or
    a plain function that is fast and never blocks (it then runs on the event loop, not in a
    worker thread)."""

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        if quick:
            fn.llmflow_quick = True  # type: ignore[attr-defined]  # read by steps/python_fn.inline
        registry.functions[name or fn.__name__] = fn
        return fn

    return deco
