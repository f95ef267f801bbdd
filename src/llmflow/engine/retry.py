"""Retry math: exponential backoff with jitter that honours Retry-After. Pure.

Hand-written on purpose: a retry policy is a dozen lines of arithmetic that must decide the
same way when a resumed run replays its events; a library would add state and a clock.
Whether a failure can be retried at all is the error's to say (``llmflow.errors``: its
``retryable`` and its class's ``non_retryable``); this module only weighs it against the
step's ``retry:`` policy.
"""

from __future__ import annotations

from llmflow.errors import never_retried
from llmflow.model.spec import RetrySpec

# `on: [transient]` (the default policy, model.spec.DEFAULT_RETRY): errors of these kinds that
# say a retry can help. Providers raise them retryable for 429, 5xx, connection resets and
# their own timeouts, non-retryable for 4xx and bad credentials; a step's own `timeout:`
# expiring is not transient (the runner marks it non-retryable): it is the limit you set.
TRANSIENT = frozenset({"rate_limit", "provider", "timeout"})


def should_retry(spec: RetrySpec, failures: int, error_kind: str, retryable: bool) -> bool:
    """``failures`` counts failed attempts so far, including the one that just failed;
    ``error_kind`` and ``retryable`` are the failed attempt's, as its ATTEMPT_FAILED recorded
    them (so a resumed run decides as the live one did)."""
    if failures >= spec.attempts:
        return False
    if never_retried(error_kind):  # the error's class says no retry can fix it
        return False
    if "any" in spec.on:
        return True
    if error_kind in spec.on:
        return True
    if retryable and error_kind in TRANSIENT and "transient" in spec.on:
        return True
    return retryable and "error" in spec.on


def backoff_delay(spec: RetrySpec, failures: int, rand: float, retry_after: float | None = None) -> float:
    """Delay before the next attempt. ``rand`` in [0, 1) comes from the injected randomness."""
    base = spec.backoff * (spec.multiplier ** max(0, failures - 1))
    base = min(base, spec.max_backoff)
    jitter = base * spec.jitter * (2 * rand - 1)
    delay = max(0.0, base + jitter)
    if retry_after is not None:
        delay = max(delay, float(retry_after))
    return delay
