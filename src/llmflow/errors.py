"""The llmflow error tree.

LlmflowError
├── FlowValidationError (also ValueError)   a flow definition or its inputs are invalid;
│                                            carries a list of Diagnostic
├── CompositionError (also ValueError)       config composition / overrides failed
├── FlowNotFoundError (also LookupError)     no flow of that name or path
├── TemplateError (also ValueError)          a template or condition failed to render
├── StepError                                a step attempt failed; ``retryable`` says if a
│   │                                        retry can help (rate limits, 5xx, timeouts);
│   │                                        ``kind`` names the failure (given at construction)
│   ├── ProviderError
│   │   ├── RateLimitError                   has ``retry_after`` seconds when the backend said so
│   │   └── ProviderUnavailableError         backend not reachable / not installed
│   ├── StepTimeoutError
│   ├── WorkspaceError                       a path escapes the run's workspace
│   ├── BudgetExceededError                  a run's token or cost budget is spent
│   └── AggregationError                     a broadcast's answers cannot be aggregated
├── RunNotFoundError (also LookupError)
├── RunStateError                            the operation is not allowed in the run's state
├── ResumeRefusedError                       the flow changed since the run started
├── StoreError                               the event store failed or is locked
├── SettingsError (also ValueError)          an LLMFLOW_* setting has a value it cannot take
├── BatchError                               a batch cannot start or resume (llmflow batch)
│   └── DatasetError (also ValueError)       a dataset cannot be read or mapped to inputs
└── EvalError (also ValueError)              an evaluation or optimisation cannot start: a bad
                                             metric, data, playbook or option (llmflow eval)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from llmflow.model.diagnostics import Diagnostic


class LlmflowError(Exception):
    """Root of every error llmflow raises on purpose."""

    hint: str | None = None

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if hint is not None:
            self.hint = hint

    def __str__(self) -> str:
        return self.message


class FlowValidationError(LlmflowError, ValueError):
    def __init__(self, diagnostics: list[Diagnostic], message: str | None = None) -> None:
        self.diagnostics = list(diagnostics)
        n = len(self.diagnostics)
        first = self.diagnostics[0].format() if self.diagnostics else ""
        super().__init__(message or f"{n} problem{'s' if n != 1 else ''} in the flow definition: {first}")


class CompositionError(LlmflowError, ValueError):
    pass


class FlowNotFoundError(LlmflowError, LookupError):
    pass


class TemplateError(LlmflowError, ValueError):
    pass


class StepError(LlmflowError):
    retryable: bool = False
    kind: str = "error"

    def __init__(
        self, message: str, *, retryable: bool | None = None, hint: str | None = None, kind: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        if retryable is not None:
            self.retryable = retryable
        if kind is not None:  # e.g. "validation", "shell_disabled": never patched on afterwards
            self.kind = kind


class ProviderError(StepError):
    kind = "provider"
    retryable = True


class RateLimitError(ProviderError):
    kind = "rate_limit"

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message, retryable=True)
        self.retry_after = retry_after


class ProviderUnavailableError(ProviderError):
    kind = "unavailable"
    retryable = False


class StepTimeoutError(StepError):
    kind = "timeout"
    retryable = True


class WorkspaceError(StepError):
    kind = "workspace"
    retryable = False


class BudgetExceededError(StepError):
    kind = "budget"
    retryable = False


class AggregationError(StepError):
    kind = "aggregation"
    retryable = False


class RunNotFoundError(LlmflowError, LookupError):
    pass


class RunStateError(LlmflowError):
    pass


class ResumeRefusedError(LlmflowError):
    pass


class StoreError(LlmflowError):
    pass


class SettingsError(LlmflowError, ValueError):
    pass


class BatchError(LlmflowError):
    pass


class DatasetError(BatchError, ValueError):
    pass


class EvalError(LlmflowError, ValueError):
    pass
