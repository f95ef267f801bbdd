"""The llmflow error tree.

LlmflowError
├── FlowValidationError (also ValueError)   a flow definition or its inputs are invalid;
│                                            carries a list of Diagnostic
├── CompositionError (also ValueError)       config composition / overrides failed
├── FlowNotFoundError (also LookupError)     no flow of that name or path
├── TemplateError (also ValueError)          a template or condition failed to render  [final]
├── StepError                                a step attempt failed; ``kind`` names the failure,
│   │                                        ``retryable`` says a retry can help (rate limits,
│   │                                        5xx, timeouts), ``non_retryable`` that none can
│   ├── ProviderError
│   │   ├── RateLimitError                   has ``retry_after`` seconds when the backend said so
│   │   └── ProviderUnavailableError         backend not reachable / not installed  [final]
│   ├── StepTimeoutError
│   ├── WorkspaceError                       a path escapes the run's workspace  [final]
│   ├── BudgetExceededError                  a run's token or cost budget is spent  [final]
│   ├── AggregationError                     a broadcast's answers cannot be aggregated
│   ├── StepConfigError                      the step names what does not exist (a function,
│   │                                        a module, an index)  [final]
│   ├── ShellDisabledError                   the step needs shell or code imports, which this
│   │                                        run does not allow  [final]
│   └── HumanTimeoutError                    nobody answered a human step in time  [final]
├── RunNotFoundError (also LookupError)
├── RunStateError                            the operation is not allowed in the run's state
├── ResumeRefusedError                       the flow changed since the run started
├── StoreError                               the event store failed or is locked
├── SettingsError (also ValueError)          an LLMFLOW_* setting has a value it cannot take
├── BatchError                               a batch cannot start or resume (llmflow batch)
│   └── DatasetError (also ValueError)       a dataset cannot be read or mapped to inputs
└── EvalError (also ValueError)              an evaluation or optimisation cannot start: a bad
                                             metric, data, playbook or option (llmflow eval)

Retrying. The error says whether a retry can help, as Temporal's
``ApplicationError(non_retryable=...)`` does; ``engine/retry.py`` only reads it:

- ``retryable = True``: a retry can help; the default policy (``on: [transient]``) retries
  the transient kinds, ``on: [error]`` any retryable error.
- ``retryable = False``: a retry is not expected to help, but a policy that asks for it
  (``on: [any]`` or the kind by name) still retries it.
- ``non_retryable = True`` (marked [final] above): no retry can fix it, whatever the policy.
  It is a class attribute bound to the class's ``kind``, because an ``ATTEMPT_FAILED`` event
  records the kind: a resumed run reads :func:`never_retried` of the recorded kind and decides
  as the live run did, for runs recorded before this attribute existed too.
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
    # raised inside a step it fails the attempt with this kind (engine.runner.error_payload)
    kind = "template"
    non_retryable = True


class StepError(LlmflowError):
    """A step attempt failed. ``kind`` is recorded with the failure; a subclass names its own,
    ``kind=`` at construction is for a kind no class has (``tool_error(kind="arguments")``)."""

    kind: str = "error"
    retryable: bool = False
    non_retryable: bool = False  # a class attribute only: see "Retrying" above

    def __init__(
        self, message: str, *, retryable: bool | None = None, hint: str | None = None, kind: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        if retryable is not None:
            self.retryable = retryable and not self.non_retryable
        if kind is not None:
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
    non_retryable = True


class StepTimeoutError(StepError):
    kind = "timeout"
    retryable = True


class WorkspaceError(StepError):
    kind = "workspace"
    non_retryable = True


class BudgetExceededError(StepError):
    kind = "budget"
    non_retryable = True


class AggregationError(StepError):
    kind = "aggregation"


class StepConfigError(StepError):
    kind = "validation"
    non_retryable = True


class ShellDisabledError(StepError):
    kind = "shell_disabled"
    non_retryable = True


class HumanTimeoutError(StepError):
    kind = "human"
    non_retryable = True


def never_retried(kind: str) -> bool:
    """Whether a failure of ``kind`` is final whatever a step's retry policy says: some error
    class of that kind says ``non_retryable`` (TemplateError, or a StepError subclass,
    plugins' included once imported)."""
    if kind == TemplateError.kind:
        return True
    todo: list[type[StepError]] = [StepError]
    while todo:
        cls = todo.pop()
        if cls.non_retryable and cls.kind == kind:
            return True
        todo.extend(cls.__subclasses__())
    return False


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
