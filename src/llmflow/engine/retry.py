"""Retry math: exponential backoff with jitter that honours Retry-After. Pure."""

from __future__ import annotations

from llmflow.model.spec import RetrySpec

# failures a retry cannot fix, whatever the retry policy says
NEVER_RETRY = frozenset(
    {"workspace", "budget", "unavailable", "template", "validation", "human", "shell_disabled"}
)
# `on: [transient]` (the default policy, model.spec.DEFAULT_RETRY): errors of these kinds that
# say a retry can help. Providers raise them retryable for 429, 5xx, connection resets and
# their own timeouts, non-retryable for 4xx and bad credentials; a step's own `timeout:`
# expiring is not transient (the runner marks it non-retryable): it is the limit you set.
TRANSIENT = frozenset({"rate_limit", "provider", "timeout"})


def should_retry(spec: RetrySpec, failures: int, error_kind: str, retryable: bool) -> bool:
    """``failures`` counts failed attempts so far, including the one that just failed."""
    if failures >= spec.attempts:
        return False
    if error_kind in NEVER_RETRY:
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
