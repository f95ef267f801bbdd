"""The built-in plugin: every step kind llmflow ships, registered through the same
``register(registry)`` hook a third-party plugin uses (entry point ``llmflow.plugins``,
declared in llmflow's ``pyproject.toml``).

Executors are named as ``"module:function"`` and imported on a kind's first run, so
validating a flow does not import the step implementations. ``parallel``, ``route`` and
``loop`` have no executor: the engine's scheduler runs them. The built-in stores (SQLite,
PostgreSQL, in-memory) register their URL schemes the same way.
"""

from __future__ import annotations

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
    WriteFileStep,
)

EXECUTORS: dict[type[Any], str | None] = {
    LlmStep: "llmflow.steps.llm:execute",
    BroadcastStep: "llmflow.steps.llm:execute",
    ShellStep: "llmflow.steps.shell:execute",
    WriteFileStep: "llmflow.steps.write_file:execute",
    PythonStep: "llmflow.steps.python_fn:execute",
    HumanStep: "llmflow.steps.human:execute",
    FlowStep: "llmflow.steps.subflow:execute",
    ConductorStep: "llmflow.steps.conductor:execute",
    RetrieveStep: "llmflow.steps.retrieve:execute",
    ParallelStep: None,
    RouteStep: None,
    LoopStep: None,
}


# database URL schemes -> the store opener (a bare file path opens SQLite too)
STORES = ("memory", "sqlite", "postgresql", "postgres", "postgresql+psycopg")


def register(registry: Any) -> None:
    """Add the built-in step kinds (spec class and executor) and stores to ``registry``."""
    for spec, executor in EXECUTORS.items():
        registry.add_step_kind(spec, executor)
    for scheme in STORES:
        registry.add_store(scheme, "llmflow.store.factory:open_store")
