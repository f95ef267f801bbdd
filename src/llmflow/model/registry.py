"""One registry for step kinds (spec classes) and named Python step functions.

Built-in kinds register on first use; third parties add kinds through the entry-point group
``llmflow.step_kinds`` (value: ``module:SpecClass``) or by calling :func:`register_step_kind`.
Executors for a kind register in :mod:`llmflow.steps` under the same name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from llmflow.model.spec import (
    BroadcastStep,
    ConductorStep,
    FlowStep,
    HumanStep,
    LlmStep,
    LoopStep,
    ParallelStep,
    PythonStep,
    RetrieveStep,
    RouteStep,
    ShellStep,
    StepSpec,
    WriteFileStep,
)

BUILTIN_KINDS: dict[str, type[StepSpec]] = {
    c.KIND: c
    for c in (
        LlmStep,
        ShellStep,
        WriteFileStep,
        PythonStep,
        HumanStep,
        FlowStep,
        ParallelStep,
        BroadcastStep,
        RouteStep,
        LoopStep,
        ConductorStep,
        RetrieveStep,
    )
}


class Registry:
    """Step kinds and Python step functions. One default instance; tests may make their own."""

    def __init__(self) -> None:
        self.kinds: dict[str, type[StepSpec]] = dict(BUILTIN_KINDS)
        self.functions: dict[str, Callable[..., Any]] = {}
        self._plugins_loaded = False

    def load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        from importlib.metadata import entry_points

        for ep in entry_points(group="llmflow.step_kinds"):
            cls = ep.load()
            self.kinds[getattr(cls, "KIND", ep.name) or ep.name] = cls

    def kind(self, name: str) -> type[StepSpec] | None:
        if name not in self.kinds:
            self.load_plugins()
        return self.kinds.get(name)


registry = Registry()


def register_step_kind(cls: type[StepSpec]) -> type[StepSpec]:
    """Class decorator: make a StepSpec subclass usable as ``kind: <cls.KIND>``."""
    if not cls.KIND:
        raise ValueError(f"{cls.__name__}.KIND must be set")
    registry.kinds[cls.KIND] = cls
    return cls


def step_function(name: str | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: register a Python function for ``python`` steps under ``name``."""

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        registry.functions[name or fn.__name__] = fn
        return fn

    return deco


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
    """Validate a list of step documents (or StepSpec objects) into StepSpec instances."""
    if not isinstance(value, list):
        return value
    out: list[Any] = []
    for raw in value:
        if isinstance(raw, StepSpec):
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
