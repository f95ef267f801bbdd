"""llmflow: run multi-step, multi-agent LLM flows with a durable event log.

The public API is listed here and resolved lazily, so ``import llmflow`` stays fast.
"""

from __future__ import annotations

from typing import Any

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
    "Run": "llmflow.sdk.runs",
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
