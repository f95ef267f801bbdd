"""The flow model as users build it: :class:`Flow`, and every spec class it holds.

A flow document is either written with ``kind:`` on each step or with the shorthand
``{id: x, llm: {...}}``; :func:`llmflow.model.registry.normalise_step` turns the shorthand
into the ``kind`` form. Step kinds are looked up in :mod:`llmflow.model.registry`, so
plugins can add their own.

The specs live below this module, as data: the steps in :mod:`llmflow.model.step_specs`,
the flow's own fields in :mod:`llmflow.model.flow_spec` (:class:`FlowSpec`). ``Flow`` is
``FlowSpec`` plus the conveniences that need the validator and the loader
(:meth:`Flow.check`, :meth:`Flow.validated`, :meth:`Flow.from_yaml`): this module imports
them, and they build flows of the class they are handed, so imports inside ``model/`` point
one way (registry <- step_specs <- flow_spec <- graph <- references <- checks <- reading <-
spec <- validate / loader) and no module imports back up, not even inside a function
(``tests/model/test_import_cycles.py``). The specs are re-exported here: ``from
llmflow.model.spec import LlmStep`` is the public spelling.
"""

from __future__ import annotations

from pathlib import Path

from llmflow.errors import FlowValidationError
from llmflow.model.checks import check_document
from llmflow.model.diagnostics import Diagnostic
from llmflow.model.flow_spec import (
    AgentSpec,
    FlowSpec,
    InputSpec,
    InputType,
    McpServerSpec,
    RunOptions,
    dump_yaml,
)
from llmflow.model.reading import read_flow
from llmflow.model.step_specs import (
    DEFAULT_RETRY,
    IDENT,
    BroadcastStep,
    ConductorStep,
    FlowStep,
    HumanStep,
    LlmStep,
    LoopStep,
    Message,
    ParallelStep,
    PythonStep,
    RetrieveStep,
    RetryOn,
    RetrySpec,
    Route,
    RouteStep,
    ShellStep,
    Spec,
    StepList,
    StepSpec,
    ToolRef,
    ToolSpec,
    WriteFileStep,
)

__all__ = [
    "DEFAULT_RETRY",
    "IDENT",
    "AgentSpec",
    "BroadcastStep",
    "ConductorStep",
    "Flow",
    "FlowSpec",
    "FlowStep",
    "HumanStep",
    "InputSpec",
    "InputType",
    "LlmStep",
    "LoopStep",
    "McpServerSpec",
    "Message",
    "ParallelStep",
    "PythonStep",
    "RetrieveStep",
    "RetryOn",
    "RetrySpec",
    "Route",
    "RouteStep",
    "RunOptions",
    "ShellStep",
    "Spec",
    "StepList",
    "StepSpec",
    "ToolRef",
    "ToolSpec",
    "WriteFileStep",
    "dump_yaml",
]


class Flow(FlowSpec):
    """A flow definition. Build it from YAML (:meth:`from_yaml`) or in Python."""

    def check(self) -> list[Diagnostic]:
        """Every problem with this flow (unknown references, cycles, bad templates, ...) as
        diagnostics; [] when it is valid. Building a Flow in Python checks each value; this
        checks how the parts fit together, as loading a YAML file does."""
        return check_document(self.to_dict(), type(self), file=f"<flow {self.name}>")[1]

    def validated(self) -> Flow:
        """This flow, or FlowValidationError listing every problem (see :meth:`check`)."""
        diags = self.check()
        if diags:
            raise FlowValidationError(diags)
        return self

    @classmethod
    def from_yaml(cls, text_or_path: str | Path, overrides: list[str] | None = None) -> Flow:
        """Load from YAML text or from a file path or flow name (composition and overrides
        apply to files; see :func:`llmflow.load_flow`). Raises FlowValidationError."""
        return read_flow(cls, text_or_path, overrides)
