"""Shared rate limits: token buckets and 429 backoff, driven by a fake clock (no sleeping)."""

from __future__ import annotations

import asyncio

import pytest

from llmflow.providers.limits import BACKOFF_MAX, BACKOFF_START, RateLimiter


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def limiter(limits: dict, clock: FakeClock) -> RateLimiter:
    return RateLimiter(limits, clock=clock, sleep=clock.sleep)


def test_rpm_allows_a_burst_then_waits_for_refill() -> None:
    clock = FakeClock()
    lim = limiter({"openai:gpt-4o-mini": {"rpm": 60}}, clock)
    for _ in range(60):
        assert lim.try_acquire("openai:gpt-4o-mini") == 0
    assert lim.try_acquire("openai:gpt-4o-mini") == pytest.approx(1.0)  # 60 rpm refills one a second
    clock.now += 1.0
    assert lim.try_acquire("openai:gpt-4o-mini") == 0


def test_acquire_sleeps_until_the_budget_allows() -> None:
    clock = FakeClock()
    lim = limiter({"openai:gpt-4o-mini": {"rpm": 2}}, clock)

    async def three() -> None:
        for _ in range(3):
            await lim.acquire("openai:gpt-4o-mini")

    asyncio.run(three())
    assert sum(clock.slept) == pytest.approx(30.0)  # the third request waits for half a minute


def test_tpm_limits_by_estimated_tokens() -> None:
    clock = FakeClock()
    lim = limiter({"openai:gpt-4o-mini": {"tpm": 600}}, clock)
    assert lim.try_acquire("openai:gpt-4o-mini", 500) == 0
    assert lim.try_acquire("openai:gpt-4o-mini", 200) == pytest.approx(10.0)  # 100 short at 10 tokens/s
    clock.now += 10
    assert lim.try_acquire("openai:gpt-4o-mini", 200) == 0


def test_record_settles_the_estimate_with_actual_tokens() -> None:
    clock = FakeClock()
    lim = limiter({"m:x": {"tpm": 600}}, clock)
    assert lim.try_acquire("m:x", 500) == 0
    lim.record("m:x", 100)  # used far less than estimated: 400 tokens come back
    assert lim.try_acquire("m:x", 450) == 0


def test_record_can_leave_a_debt_to_wait_out() -> None:
    clock = FakeClock()
    lim = limiter({"m:x": {"tpm": 600}}, clock)
    assert lim.try_acquire("m:x", 100) == 0
    lim.record("m:x", 1200)  # used far more than the 600 budget: the bucket is 600 in debt
    assert lim.try_acquire("m:x", 0) == pytest.approx(60.0)  # a debt blocks everything until repaid
    assert lim.try_acquire("m:x", 10) == pytest.approx(61.0)


def test_an_oversized_request_waits_for_a_full_bucket_not_forever() -> None:
    clock = FakeClock()
    lim = limiter({"m:x": {"tpm": 100}}, clock)
    assert lim.try_acquire("m:x", 5000) == 0


def test_provider_wide_limits_are_shared_by_its_models() -> None:
    clock = FakeClock()
    lim = limiter({"anthropic": {"rpm": 1}}, clock)
    assert lim.try_acquire("anthropic:claude-a") == 0
    assert lim.try_acquire("anthropic:claude-b") > 0
    assert lim.try_acquire("openai:gpt-4o") == 0  # no entry: unlimited


def test_query_strings_do_not_split_a_models_budget() -> None:
    clock = FakeClock()
    lim = limiter({"fake:critic": {"rpm": 1}}, clock)
    assert lim.try_acquire("fake:critic?latency=0.1") == 0
    assert lim.try_acquire("fake:critic") > 0


def test_penalise_blocks_new_requests_until_retry_after() -> None:
    clock = FakeClock()
    lim = limiter({}, clock)
    assert lim.penalise("openai:gpt-4o-mini", 12.0) == 12.0
    assert lim.try_acquire("openai:gpt-4o-mini") == pytest.approx(12.0)
    assert lim.try_acquire("openai:gpt-4o") == 0  # other keys are not blocked
    clock.now += 12.0
    assert lim.try_acquire("openai:gpt-4o-mini") == 0


def test_acquire_waits_out_a_penalty() -> None:
    clock = FakeClock()
    lim = limiter({}, clock)
    lim.penalise("k:m", 5.0)
    asyncio.run(lim.acquire("k:m"))
    assert clock.slept == [pytest.approx(5.0)]


def test_backoff_without_retry_after_doubles_and_resets_after_success() -> None:
    clock = FakeClock()
    lim = limiter({}, clock)
    delays = [lim.penalise("k:m") for _ in range(9)]
    assert delays[:4] == [BACKOFF_START, 2 * BACKOFF_START, 4 * BACKOFF_START, 8 * BACKOFF_START]
    assert delays[-1] == BACKOFF_MAX
    lim.record("k:m", 10)
    assert lim.penalise("k:m") == BACKOFF_START


def test_unknown_limit_fields_are_rejected() -> None:
    with pytest.raises(ValueError, match="rpm and tpm"):
        RateLimiter({"openai": {"rps": 3}})
