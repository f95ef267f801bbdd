"""The curated public API: `llmflow.__all__` is pinned, and every name resolves lazily."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import llmflow

PUBLIC = [
    "Flow",
    "FlowValidationError",
    "LlmflowError",
    "MetricResult",
    "Orchestra",
    "Run",
    "Runner",
    "__version__",
    "evaluate",
    "load_flow",
    "metric",
    "optimize",
    "run",
    "run_sync",
    "start",
    "step_function",
    "tool",
    "validate_flow",
]

MODEL_EXPORTS = {
    "Flow": "llmflow.model.spec",
    "load_flow": "llmflow.model.loader",
    "validate_flow": "llmflow.model.loader",
    "step_function": "llmflow.model.registry",
    "FlowValidationError": "llmflow.errors",
    "LlmflowError": "llmflow.errors",
}


def test_all_is_pinned():
    assert llmflow.__all__ == PUBLIC


@pytest.mark.parametrize(("name", "module"), sorted(MODEL_EXPORTS.items()))
def test_model_exports_resolve_to_their_home(name, module):
    assert getattr(llmflow, name) is getattr(importlib.import_module(module), name)


def test_runtime_exports_resolve_when_their_module_exists():
    try:
        api = importlib.import_module("llmflow.sdk.runs")
    except ImportError:
        pytest.skip("llmflow.sdk.runs is not written yet")
    for name in ("run", "run_sync", "start", "Run"):
        assert getattr(llmflow, name) is getattr(api, name)


def test_unknown_names_raise_attribute_error():
    with pytest.raises(AttributeError, match="module 'llmflow' has no attribute 'nope'"):
        llmflow.nope  # noqa: B018


def test_errors_are_value_errors_where_documented():
    assert issubclass(llmflow.FlowValidationError, ValueError)
    assert issubclass(llmflow.FlowValidationError, llmflow.LlmflowError)


def test_import_llmflow_is_light():
    code = "import sys, llmflow; print(sorted(m for m in sys.modules if m.split('.')[0] in {'pydantic', 'hydra', 'omegaconf', 'jinja2', 'yaml', 'llmflow'}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['llmflow']"
