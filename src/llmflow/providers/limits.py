"""Process-wide rate limits for model calls: token buckets plus backoff after a 429.

One :class:`RateLimiter` is built by the composition root and shared by every concurrent
step, so all steps that call ``openai:gpt-4o-mini`` draw from the same budget::

    limiter = RateLimiter({"openai:gpt-4o-mini": {"rpm": 500, "tpm": 200_000}, "anthropic": {"rpm": 50}})
    await limiter.acquire("openai:gpt-4o-mini", est_tokens=900)   # waits while over budget
    ...                                                            # call the model
    limiter.record("openai:gpt-4o-mini", actual_tokens=734)        # settle the estimate
    limiter.penalise("openai:gpt-4o-mini", retry_after=12.0)       # after a 429

A key is a model spec (``provider:model``); its limits are the entry for that exact spec,
else the entry for its provider name (one bucket shared by all that provider's models).
Keys with no entry are unlimited, but a penalty still blocks them. ``rpm`` is requests per
minute, ``tpm`` tokens (input + output) per minute; both refill continuously.

The clock and sleep are injectable so tests drive time without sleeping.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

BACKOFF_START = 1.0  # seconds, after a 429 without Retry-After; doubles each time
BACKOFF_MAX = 60.0
_PENDING_TTL = 120.0  # an estimate never settled by record() (the call failed) is forgotten after this


@dataclass
class _Bucket:
    capacity: float
    per_second: float
    level: float
    updated: float

    def refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self.updated) * self.per_second)
        self.updated = now

    def wait_for(self, amount: float) -> float:
        # A request bigger than the whole bucket waits for a full bucket rather than forever.
        need = min(amount, self.capacity)
        return 0.0 if self.level >= need else (need - self.level) / self.per_second


@dataclass
class _KeyState:
    requests: _Bucket | None = None
    tokens: _Bucket | None = None
    blocked_until: float = 0.0
    backoff: float = 0.0
    pending: deque[tuple[float, int]] = field(default_factory=deque)


def _provider_of(key: str) -> str:
    return key.partition(":")[0].strip().lower()


class RateLimiter:
    """Requests-per-minute and tokens-per-minute budgets with adaptive backoff."""

    def __init__(
        self,
        limits: Mapping[str, Mapping[str, float]] | None = None,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._limits = {k: dict(v) for k, v in (limits or {}).items()}
        for key, cfg in self._limits.items():
            unknown = set(cfg) - {"rpm", "tpm"}
            if unknown:
                raise ValueError(
                    f"rate limit for {key!r} has unknown fields {sorted(unknown)}; use rpm and tpm"
                )
        self._clock = clock
        self._sleep = sleep
        self._states: dict[str, _KeyState] = {}

    def _bucket_key(self, key: str) -> str:
        spec = key.partition("?")[0]
        if spec in self._limits:
            return spec
        provider = _provider_of(spec)
        return provider if provider in self._limits else spec

    def _state(self, key: str) -> _KeyState:
        bucket_key = self._bucket_key(key)
        state = self._states.get(bucket_key)
        if state is None:
            now = self._clock()
            cfg = self._limits.get(bucket_key, {})
            state = _KeyState()
            if cfg.get("rpm"):
                rpm = float(cfg["rpm"])
                state.requests = _Bucket(rpm, rpm / 60.0, rpm, now)
            if cfg.get("tpm"):
                tpm = float(cfg["tpm"])
                state.tokens = _Bucket(tpm, tpm / 60.0, tpm, now)
            self._states[bucket_key] = state
        return state

    def try_acquire(self, key: str, est_tokens: int = 0) -> float:
        """Take one request and ``est_tokens`` from the budget and return 0, or return the seconds to wait."""
        now = self._clock()
        state = self._state(key)
        waits = [state.blocked_until - now]
        for bucket, amount in ((state.requests, 1.0), (state.tokens, float(est_tokens))):
            if bucket is not None:
                bucket.refill(now)
                waits.append(bucket.wait_for(amount))
        wait = max(waits)
        if wait > 0:
            return wait
        if state.requests is not None:
            state.requests.level -= 1.0
        if state.tokens is not None:
            state.tokens.level -= float(est_tokens)
        while state.pending and now - state.pending[0][0] > _PENDING_TTL:
            state.pending.popleft()
        state.pending.append((now, int(est_tokens)))
        return 0.0

    async def acquire(self, key: str, est_tokens: int = 0) -> None:
        """Wait until a request of about ``est_tokens`` tokens fits the budget of ``key``, then take it."""
        while (wait := self.try_acquire(key, est_tokens)) > 0:
            await self._sleep(wait)

    def record(self, key: str, actual_tokens: int, *, estimated: int | None = None) -> None:
        """Settle a finished call: charge ``actual_tokens`` instead of its estimate; ends any backoff.

        ``estimated`` defaults to the oldest estimate taken by :meth:`acquire` for this key.
        """
        state = self._state(key)
        if estimated is None:
            estimated = state.pending.popleft()[1] if state.pending else 0
        if state.tokens is not None:
            state.tokens.refill(self._clock())
            state.tokens.level -= float(actual_tokens - estimated)  # may go below 0: a debt to wait out
        state.backoff = 0.0

    def penalise(self, key: str, retry_after: float | None = None) -> float:
        """Block new requests to ``key`` after a 429; returns the seconds blocked.

        With ``retry_after`` the block lasts that long; without it, backoff doubles from
        ``BACKOFF_START`` up to ``BACKOFF_MAX`` until a call succeeds (:meth:`record`).
        """
        state = self._state(key)
        if retry_after is None or retry_after <= 0:
            state.backoff = min(BACKOFF_MAX, state.backoff * 2 if state.backoff else BACKOFF_START)
            delay = state.backoff
        else:
            delay = float(retry_after)
        state.blocked_until = max(state.blocked_until, self._clock() + delay)
        return delay

    def blocked_for(self, key: str) -> float:
        """Seconds until a penalty on ``key`` ends (0 when not blocked)."""
        return max(0.0, self._state(key).blocked_until - self._clock())
