"""Composition root: settings -> store -> providers -> gateway -> runtime.

:func:`shared_runtime` is the one process-wide cache: ``llmflow.run`` / ``run_sync`` /
``start``, ``Runner`` and ``Orchestra`` called without a runtime share one runtime (so one
store connection, one group-commit writer) per home and environment, instead of opening,
migrating and closing the database on every call. It is closed at interpreter exit.
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmflow.runtime.service import Runtime
from llmflow.settings import Settings, resolve_home

if TYPE_CHECKING:
    from llmflow.store.base import Store


def build_runtime(
    settings: Settings | None = None,
    *,
    env: Mapping[str, str] | None = None,
    home: Path | None = None,
    store: Store | None = None,
    fake_scripts: dict[str, Any] | None = None,
    functions: dict[str, Callable[..., Any]] | None = None,
    clock: Any | None = None,
    observers: list[Callable[[Any], None]] | None = None,
) -> Runtime:
    """The runtime with its store, providers and gateway. ``observers`` get every event of
    every run this runtime appends, once it is durable (an observer's exception is logged
    and never breaks a run)."""
    settings = settings or Settings.from_env(env, home)
    if store is None:
        from llmflow.runtime.plugins import open_store

        store = open_store(settings.database_url, settings.home)
    from llmflow.providers.gateway import Gateway
    from llmflow.providers.registry import ProviderRegistry
    from llmflow.runtime.plugins import build_registry

    scripts = {**_fake_scripts_from_file(settings), **(fake_scripts or {})}
    registry = ProviderRegistry(
        settings.env,
        fake_scripts=scripts,
        allow_real=not settings.block_real_models,
        default_model=settings.default_model,
        local_model_dir=settings.local_model_dir,
        ollama_pull=settings.ollama_pull,
    )
    limiter = _limiter(settings)
    prices = _prices(settings)
    gateway = Gateway(registry, limiter, prices)
    runtime = Runtime(
        settings,
        store,
        executors=build_registry().executors,
        gateway=gateway,
        clock=clock,
        functions=functions,
        observers=observers,
    )
    runtime.observers += _plugin_observers(runtime)
    return runtime


def _plugin_observers(runtime: Runtime) -> list[Callable[[Any], None]]:
    """Observers from the ``llmflow.observers`` entry points (tracing, plugins): each factory
    gets the runtime and returns an observer or None. A broken plugin costs a warning."""
    out = []
    for ep in _observer_entry_points():
        try:
            obs = ep.load()(runtime)
        except Exception as exc:  # noqa: BLE001 - a plugin never stops llmflow
            logging.getLogger("llmflow").warning("observer plugin %s failed to load: %s", ep.name, exc)
            continue
        if obs is not None:
            out.append(obs)
    return out


@functools.cache
def _observer_entry_points() -> tuple[Any, ...]:
    from importlib.metadata import entry_points

    return tuple(entry_points(group="llmflow.observers"))


def _fake_scripts_from_file(settings: Settings) -> dict[str, Any]:
    """``LLMFLOW_FAKE_SCRIPTS=path.yaml``: {name: {answers: [...] | {regex: answer}, latency: ...}}
    makes ``fake:<name>`` answer from that script (offline demos of the examples)."""
    raw = settings.fake_scripts
    if not raw:
        return {}
    import yaml

    from llmflow.errors import LlmflowError

    path = Path(raw)
    if not path.is_absolute():
        path = settings.home / path if (settings.home / path).exists() else Path.cwd() / path
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise LlmflowError(
            f"LLMFLOW_FAKE_SCRIPTS={raw}: cannot read the fake scripts ({exc})",
            hint="point it at a YAML file: {name: {answers: [...]}}",
        ) from None
    if not isinstance(data, dict):
        raise LlmflowError(f"LLMFLOW_FAKE_SCRIPTS={raw}: expected a mapping of name -> script")
    return data


def _limiter(settings: Settings) -> Any | None:
    raw = settings.rate_limits
    if not raw:
        return None
    try:
        import json

        from llmflow.providers.limits import RateLimiter

        cfg = json.loads(Path(raw).read_text()) if Path(raw).exists() else json.loads(raw)
        return RateLimiter(cfg)
    except Exception:  # noqa: BLE001
        logging.getLogger("llmflow").warning("ignoring invalid LLMFLOW_RATE_LIMITS")
        return None


def _prices(settings: Settings) -> Callable[[str, Any], float | None] | None:
    try:
        from llmflow.providers import pricing
    except ImportError:
        return None
    table = settings.prices
    if table and hasattr(pricing, "load_prices"):
        try:
            prices = pricing.load_prices(table)
            return lambda model, usage: pricing.cost(model, usage, prices)
        except Exception:  # noqa: BLE001
            logging.getLogger("llmflow").warning("ignoring invalid LLMFLOW_PRICES")
    return lambda model, usage: pricing.cost(model, usage)


_SHARED: OrderedDict[tuple[str, tuple[tuple[str, str], ...]], Runtime] = OrderedDict()
_SHARED_LOCK = threading.Lock()
_SHARED_MAX = 32
_atexit_registered = False


def shared_runtime(home: Path | None = None) -> Runtime:
    """The runtime for ``home`` (default: LLMFLOW_HOME or the working directory) and the
    current environment, built on first use and reused by every later call."""
    global _atexit_registered
    env = dict(os.environ)
    # the key needs only the home and the environment: the settings are parsed on a miss
    key = (str(resolve_home(env, home)[0]), tuple(sorted(env.items())))
    with _SHARED_LOCK:
        rt = _SHARED.get(key)
        if rt is not None and not rt.closed:
            _SHARED.move_to_end(key)
            return rt
        rt = build_runtime(Settings.from_env(env, home))
        _SHARED[key] = rt
        while len(_SHARED) > _SHARED_MAX:  # bounded: many homes in one process (tests)
            _, old = _SHARED.popitem(last=False)
            if not old.active:
                old.close()
        if not _atexit_registered:
            atexit.register(close_shared_runtimes)
            _atexit_registered = True
        return rt


def close_shared_runtimes() -> None:
    with _SHARED_LOCK:
        items = list(_SHARED.values())
        _SHARED.clear()
    for rt in items:
        try:
            rt.close()
        except Exception:  # noqa: BLE001 - at exit: best effort
            logging.getLogger("llmflow").debug("closing a shared runtime failed", exc_info=True)
