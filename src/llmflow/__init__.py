"""llmflow: run multi-step, multi-agent LLM flows with a durable event log.

The public API is listed here and resolved lazily, so ``import llmflow`` stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what editors and type checkers see; at run time the names resolve lazily
    from llmflow.errors import FlowValidationError as FlowValidationError
    from llmflow.errors import LlmflowError as LlmflowError
    from llmflow.evals.api import evaluate as evaluate
    from llmflow.evals.metrics import MetricResult as MetricResult
    from llmflow.evals.optimize import optimize as optimize
    from llmflow.evals.registry import metric as metric
    from llmflow.model.loader import load_flow as load_flow
    from llmflow.model.loader import validate_flow as validate_flow
    from llmflow.model.registry import step_function as step_function
    from llmflow.model.spec import Flow as Flow
    from llmflow.sdk.orchestra import Orchestra as Orchestra
    from llmflow.sdk.result import Run as Run
    from llmflow.sdk.runner import Runner as Runner
    from llmflow.sdk.runs import run as run
    from llmflow.sdk.runs import run_sync as run_sync
    from llmflow.sdk.runs import start as start
    from llmflow.tools.registry import tool as tool

__version__ = "0.1.0"

_EXPORTS = {
    "Flow": "llmflow.model.spec",
    "load_flow": "llmflow.model.loader",
    "validate_flow": "llmflow.model.loader",
    "FlowValidationError": "llmflow.errors",
    "LlmflowError": "llmflow.errors",
    "step_function": "llmflow.model.registry",
    "tool": "llmflow.tools.registry",
    "run": "llmflow.sdk.runs",
    "run_sync": "llmflow.sdk.runs",
    "start": "llmflow.sdk.runs",
    "Run": "llmflow.sdk.result",
    "Runner": "llmflow.sdk.runner",
    "Orchestra": "llmflow.sdk.orchestra",
    "evaluate": "llmflow.evals.api",
    "metric": "llmflow.evals.registry",
    "MetricResult": "llmflow.evals.metrics",
    "optimize": "llmflow.evals.optimize",
}

__all__ = sorted([*_EXPORTS, "__version__"])


def __getattr__(name: str) -> Any:  # PEP 562 lazy exports
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'llmflow' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
