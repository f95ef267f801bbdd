"""Resource limits on what a flow document may make llmflow do, with their defaults.

One frozen :class:`Limits` value is *current* at any moment: the defaults, or what a
composition root installed for the work it runs (``with using(limits): ...``). It is a
context variable, so a run's limits follow its tasks and the threads they render in
(``asyncio.to_thread`` copies the context) and never leak into another run.

Settings: the environment variables of :data:`SETTINGS`, typed and read once by
``llmflow.settings.Settings`` (``Settings.limits()``), never here; docs/security.md.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    # templates (prompts, paths, conditions, for_each)
    template_seconds: float = 2.0  # wall time one render or evaluation may take
    template_output: int = 10_000_000  # characters one render may produce; items '*' may build
    template_range: int = 10_000  # longest range() a template may build
    # flow documents
    flow_steps: int = 5_000  # steps in one flow, nested ones included
    flow_depth: int = 32  # how deeply steps may nest (parallel in loop in parallel ...)
    document_depth: int = 100  # how deeply any YAML / JSON value of a flow may nest
    flow_bytes: int = 2_000_000  # size of a flow file or posted flow document


# field -> the environment variable that sets it
SETTINGS = {
    "template_seconds": "LLMFLOW_TEMPLATE_TIMEOUT",
    "template_output": "LLMFLOW_TEMPLATE_MAX_OUTPUT",
    "template_range": "LLMFLOW_TEMPLATE_MAX_RANGE",
    "flow_steps": "LLMFLOW_MAX_STEPS",
    "flow_depth": "LLMFLOW_MAX_STEP_DEPTH",
    "document_depth": "LLMFLOW_MAX_DOCUMENT_DEPTH",
    "flow_bytes": "LLMFLOW_MAX_FLOW_BYTES",
}

DEFAULT = Limits()
_CURRENT: ContextVar[Limits] = ContextVar("llmflow_limits", default=DEFAULT)


def current() -> Limits:
    return _CURRENT.get()


@contextmanager
def using(limits: Limits) -> Iterator[Limits]:
    """Make ``limits`` current for the code (and the tasks and threads it starts) inside."""
    token = _CURRENT.set(limits)
    try:
        yield limits
    finally:
        _CURRENT.reset(token)
