"""The error tree is the one source of truth for retrying: an error says whether a retry can
help (``retryable``) or whether none can (its class's ``non_retryable``), and the pure policy
in engine/retry.py reads that from what an ATTEMPT_FAILED event records, so a resumed run
decides as the live run did."""

from __future__ import annotations

import pytest

from llmflow import errors
from llmflow.engine.retry import should_retry
from llmflow.engine.runner import error_payload
from llmflow.errors import (
    AggregationError,
    BudgetExceededError,
    HumanTimeoutError,
    LlmflowError,
    ProviderError,
    ProviderUnavailableError,
    RateLimitError,
    ShellDisabledError,
    StepConfigError,
    StepError,
    StepTimeoutError,
    TemplateError,
    WorkspaceError,
    never_retried,
)
from llmflow.model.spec import DEFAULT_RETRY, RetrySpec

ANY = RetrySpec(attempts=5, on=["any"])


def decide(policy: RetrySpec, exc: BaseException, failures: int = 1) -> bool:
    """The decision the scheduler takes on the attempt the runner recorded for ``exc``."""
    p = error_payload(exc)
    return should_retry(policy, failures, p["kind"], p["retryable"])


FINAL = [
    WorkspaceError("path escapes the workspace"),
    BudgetExceededError("token budget spent"),
    ProviderUnavailableError("ollama is not running"),
    TemplateError("undefined variable 'x'"),
    StepConfigError("no function 'shop:refund'"),
    ShellDisabledError("shell steps are disabled in this runtime"),
    HumanTimeoutError("nobody answered"),
]


@pytest.mark.parametrize("exc", FINAL, ids=lambda e: type(e).__name__)
def test_an_error_whose_class_says_non_retryable_is_not_retried_even_on_any(exc):
    assert not decide(ANY, exc)
    assert not decide(DEFAULT_RETRY, exc)


@pytest.mark.parametrize(
    "kind", ["workspace", "budget", "unavailable", "template", "validation", "human", "shell_disabled"]
)
def test_kinds_recorded_as_final_by_earlier_runs_stay_final_on_resume(kind):
    # the kinds the old NEVER_RETRY list named: an event log written before the error classes
    # said it carries only the kind, and a resumed run must not retry it either
    assert never_retried(kind)
    assert not should_retry(ANY, 1, kind, False)
    assert not should_retry(ANY, 1, kind, True)


def test_a_kind_given_at_construction_is_final_when_its_class_is():
    # call sites outside steps/ still write StepError(kind="validation"): same decision
    assert not decide(ANY, StepError("unknown tool 'x'", kind="validation"))
    assert decide(ANY, StepError("tool failed", kind="arguments"))


def test_a_final_error_cannot_be_made_retryable_at_construction():
    assert WorkspaceError("x", retryable=True).retryable is False
    assert ProviderUnavailableError("x").retryable is False


def test_errors_that_do_not_say_final_follow_the_policy():
    plain, agg = StepError("exit code 1"), AggregationError("no consensus")
    assert decide(ANY, plain) and decide(ANY, agg)  # `on: any` asks for every error
    assert not decide(DEFAULT_RETRY, plain) and not decide(DEFAULT_RETRY, agg)
    assert decide(DEFAULT_RETRY, RateLimitError("429", retry_after=2))
    assert decide(DEFAULT_RETRY, ProviderError("502 bad gateway"))
    assert not decide(DEFAULT_RETRY, ProviderError("401", retryable=False))
    assert decide(DEFAULT_RETRY, StepTimeoutError("provider timed out"))
    assert not decide(DEFAULT_RETRY, StepTimeoutError("the step's timeout ran out", retryable=False))
    assert decide(RetrySpec(attempts=2, on=["error"]), StepError("flaky", retryable=True))
    assert not decide(ANY, plain, failures=5)  # the fifth failure is the last


def test_a_plugin_error_class_can_say_it_is_final():
    class QuotaGone(StepError):
        kind = "plugin_quota_gone"
        non_retryable = True

    assert never_retried("plugin_quota_gone")
    assert not decide(ANY, QuotaGone("the monthly quota is spent"))
    assert not never_retried("plugin_quota_unknown")


def test_every_error_llmflow_raises_on_purpose_has_one_root():
    classes = [v for v in vars(errors).values() if isinstance(v, type) and issubclass(v, Exception)]
    assert len(classes) > 20
    assert all(issubclass(c, LlmflowError) for c in classes)
    assert issubclass(AggregationError, StepError)
    from llmflow.engine.aggregate import AggregationError as from_engine

    assert from_engine is AggregationError
    for c in classes:  # the tree in the module docstring names every class
        assert c.__name__ in (errors.__doc__ or ""), c.__name__
