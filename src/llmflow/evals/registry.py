"""Custom metrics: ``@llmflow.metric`` files a function under its name in the one plugin
registry (:mod:`llmflow.model.registry`, where plugins add theirs), and resolving a function
from a registered name, ``module:function`` or ``path/to/file.py:function``."""

from __future__ import annotations

import importlib
import importlib.util
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmflow.errors import EvalError
from llmflow.model.registry import registry


@dataclass(frozen=True)
class MetricInfo:
    name: str
    threshold: float


def metric(fn: Callable[..., Any] | None = None, *, name: str | None = None, threshold: float = 0.5) -> Any:
    """Register a Python function as a metric, usable as ``--metric NAME``.

    The function takes any of ``output, expected, inputs, outputs, record_id, run_id,
    sample`` by keyword and returns a bool, a score in [0, 1], ``(score, reason)``, a dict
    with ``score`` (and ``reason``), or a :class:`MetricResult`. It may be async. A score
    passes at ``threshold``::

        @llmflow.metric(threshold=0.8)
        def polite(output: str) -> float: ...
    """

    def deco(f: Callable[..., Any]) -> Callable[..., Any]:
        info = MetricInfo(name or f.__name__, float(threshold))
        f.__llmflow_metric__ = info  # type: ignore[attr-defined]
        registry.add_metric(info.name, f)
        return f

    return deco(fn) if fn is not None else deco


_REF = re.compile(r"^(?P<mod>[A-Za-z_][\w.]*|.+\.py):(?P<attr>[A-Za-z_][\w.]*)$")


def resolve_metric_function(ref: str) -> Callable[..., Any]:
    """A registered metric name, ``module:function`` or ``path/to/file.py:function``."""
    got = registry.metric(ref)
    if got is not None:
        return got
    m = _REF.match(ref)
    if m is None:
        raise EvalError(
            f"unknown metric function {ref!r}",
            hint="register it with @llmflow.metric, or write module:function or file.py:function",
        )
    mod, attr = m.group("mod"), m.group("attr")
    try:
        if mod.endswith(".py"):
            path = Path(mod).expanduser().resolve()
            if not path.is_file():
                raise EvalError(
                    f"metric file {mod} does not exist",
                    hint="give the path of a .py file: metrics.py:function",
                )
            spec = importlib.util.spec_from_file_location(f"llmflow_metrics_{abs(hash(str(path)))}", path)
            assert spec is not None and spec.loader is not None
            obj: Any = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(obj)
        else:
            obj = importlib.import_module(mod)
    except EvalError:
        raise
    except Exception as exc:  # noqa: BLE001 - any import failure is the user's module: say which
        raise EvalError(
            f"cannot load metric module {mod!r}: {type(exc).__name__}: {exc}",
            hint="check the path and PYTHONPATH",
        ) from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise EvalError(f"{mod!r} has no function {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise EvalError(f"{ref!r} is not a function")
    return obj
