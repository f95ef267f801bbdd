"""The fake model: deterministic, scriptable, streams, and injects failures on request."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from llmflow.errors import ProviderError, RateLimitError, StepTimeoutError
from llmflow.providers import fake as fake_module
from llmflow.providers.base import ChatMessage, ModelRequest
from llmflow.providers.fake import MALFORMED_TEXT, FakeProvider, FakeScript, count_tokens, parse_fake_model

from .conftest import chunks, final, request, run


def test_same_prompt_gives_the_same_answer_across_instances() -> None:
    a = final(run(FakeProvider(), request("", "Classify this article")))
    b = final(run(FakeProvider(), request("", "Classify this article")))
    assert a.text == b.text
    assert a.text.startswith("fake answer to: Classify this article [")


def test_different_prompts_give_different_answers() -> None:
    a = final(run(FakeProvider(), request("", "one")))
    b = final(run(FakeProvider(), request("", "two")))
    assert a.text != b.text


def test_answer_quotes_the_last_user_message() -> None:
    req = ModelRequest(
        "",
        [
            ChatMessage("system", "be terse"),
            ChatMessage("user", "first"),
            ChatMessage("assistant", "ok"),
            ChatMessage("user", "second question"),
        ],
    )
    assert "second question" in final(run(FakeProvider(), req)).text


def test_usage_counts_whitespace_separated_words() -> None:
    items = run(FakeProvider(), request("?answer=one two three", "a b  c\nd"))
    assert final(items).usage.input_tokens == 4
    assert final(items).usage.output_tokens == 3
    assert count_tokens("  x  y ") == 2


def test_answer_option_in_model_name() -> None:
    assert final(run(FakeProvider(), request("critic?answer=yes"))).text == "yes"
    assert final(run(FakeProvider(), request("critic?answer=yes"))).model == "fake:critic"


def test_list_script_cycles_in_order() -> None:
    provider = FakeProvider(scripts={"critic": FakeScript(answers=["a", "b", "c"])})
    texts = [final(run(provider, request("critic"))).text for _ in range(4)]
    assert texts == ["a", "b", "c", "a"]


def test_regex_script_uses_first_match_and_falls_back_to_default() -> None:
    script = FakeScript(answers={r"\bnews\b": "NEWS", r"opinion|news": "OPINION"})
    provider = FakeProvider(scripts={"judge": script})
    assert final(run(provider, request("judge", "this is news"))).text == "NEWS"
    assert final(run(provider, request("judge", "an opinion piece"))).text == "OPINION"
    assert final(run(provider, request("judge", "a recipe"))).text.startswith("fake answer to:")


def test_callable_script_gets_the_request() -> None:
    provider = FakeProvider(scripts={"echo": FakeScript(answers=lambda req: req.prompt_text.upper())})
    assert final(run(provider, request("echo", "shout"))).text == "SHOUT"


def test_non_string_answers_are_sent_as_json() -> None:
    provider = FakeProvider(scripts={"j": FakeScript(answers=[{"label": "news"}])})
    assert json.loads(final(run(provider, request("j"))).text) == {"label": "news"}


def test_scripts_can_be_registered_as_mappings_after_construction() -> None:
    provider = FakeProvider()
    provider.register("later", {"answers": ["late"]})
    assert final(run(provider, request("later"))).text == "late"


def test_registering_a_name_again_changes_the_next_call() -> None:
    provider = FakeProvider(scripts={"critic": FakeScript(answers=["first"])})
    assert final(run(provider, request("critic?chunk=2"))).text == "first"
    provider.register("critic", {"answers": ["second"]})  # after the model string was used
    assert final(run(provider, request("critic?chunk=2"))).text == "second"
    assert final(run(provider, request("fresh"))).text.startswith("fake answer to:")
    provider.register("fresh", {"answers": ["new"]})  # a name first used unregistered
    assert final(run(provider, request("fresh"))).text == "new"


def test_a_bad_option_is_refused_on_every_call() -> None:
    provider = FakeProvider()
    for _ in range(2):
        with pytest.raises(ProviderError, match="unknown fake model option"):
            run(provider, request("critic?colour=red"))


def test_query_options_override_the_script() -> None:
    provider = FakeProvider(scripts={"critic": FakeScript(answers=["scripted"])})
    assert final(run(provider, request("critic?answer=override"))).text == "override"


def test_streams_one_word_per_chunk_by_default_and_chunks_join_to_the_text() -> None:
    items = run(FakeProvider(), request("?answer=the quick brown fox"))
    assert chunks(items) == ["the ", "quick ", "brown ", "fox"]
    assert "".join(chunks(items)) == final(items).text


def test_chunk_option_sets_words_per_chunk() -> None:
    items = run(FakeProvider(), request("?answer=a b c d e&chunk=2"))
    assert chunks(items) == ["a b ", "c d ", "e"]


def test_non_streaming_request_yields_only_the_final() -> None:
    items = run(FakeProvider(), request("?answer=x y", stream=False))
    assert chunks(items) == [] and final(items).text == "x y"


class SleepLog:
    """The fake's ``asyncio.sleep`` calls, recorded (and still slept): what it waits for and
    how many calls wait at once, observed instead of timed."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.delays: list[float] = []
        self.waiting = 0
        self.most_waiting = 0
        real = asyncio.sleep

        async def sleep(delay: float, *args: Any, **kwargs: Any) -> Any:
            self.delays.append(delay)
            self.waiting += 1
            self.most_waiting = max(self.most_waiting, self.waiting)
            try:
                return await real(delay, *args, **kwargs)
            finally:
                self.waiting -= 1

        monkeypatch.setattr(fake_module.asyncio, "sleep", sleep)


def test_latency_sleeps_before_answering(monkeypatch: pytest.MonkeyPatch) -> None:
    log = SleepLog(monkeypatch)
    seen: list[Any] = []

    async def go() -> None:
        async for item in FakeProvider().stream(request("?latency=0.05&answer=a b")):
            seen.append((list(log.delays), item))

    asyncio.run(go())
    assert seen and all(delays == [0.05] for delays, _ in seen)  # slept once, before the first chunk


def test_chunk_delay_spaces_out_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    log = SleepLog(monkeypatch)
    items = run(FakeProvider(), request("?answer=a b c&chunk_delay=0.02"))
    assert len(chunks(items)) == 3 and log.delays == [0.02, 0.02]  # between chunks, not before the first


def test_concurrent_latency_calls_overlap(monkeypatch: pytest.MonkeyPatch) -> None:
    log = SleepLog(monkeypatch)
    provider = FakeProvider()

    async def both() -> None:
        await asyncio.gather(*(_drain(provider, request("?latency=0.1", str(i))) for i in range(5)))

    asyncio.run(both())
    assert log.delays == [0.1] * 5 and log.most_waiting == 5  # five calls wait at once rather than queue


async def _drain(provider: FakeProvider, req: ModelRequest) -> None:
    async for _ in provider.stream(req):
        pass


def test_fail_429_raises_rate_limit_with_retry_after() -> None:
    with pytest.raises(RateLimitError) as info:
        run(FakeProvider(), request("?fail=429&retry_after=2.5"))
    assert info.value.retry_after == 2.5
    assert info.value.retryable


def test_fail_500_raises_retryable_provider_error() -> None:
    with pytest.raises(ProviderError) as info:
        run(FakeProvider(), request("?fail=500"))
    assert info.value.retryable and not isinstance(info.value, RateLimitError)


def test_script_failures_accept_status_numbers() -> None:
    provider = FakeProvider(scripts={"busy": FakeScript(fail=429, retry_after=1)})
    with pytest.raises(RateLimitError):
        run(provider, request("busy"))
    with pytest.raises(ValueError, match="not one of"):
        FakeScript(fail=404)


def test_fail_timeout_raises_step_timeout() -> None:
    with pytest.raises(StepTimeoutError):
        run(FakeProvider(), request("?fail=timeout"))


def test_fail_malformed_returns_non_json_even_with_a_schema() -> None:
    items = run(FakeProvider(), request("?fail=malformed", output_schema={"type": "object"}))
    assert final(items).text == MALFORMED_TEXT
    with pytest.raises(ValueError):
        json.loads(final(items).text)


def test_fail_times_fails_the_first_n_calls_then_succeeds() -> None:
    provider = FakeProvider()
    req = request("flaky?fail=500&fail_times=2&answer=ok")
    for _ in range(2):
        with pytest.raises(ProviderError):
            run(provider, req)
    assert final(run(provider, req)).text == "ok"
    assert final(run(provider, req)).text == "ok"


def test_fail_times_counts_per_provider_instance_and_model() -> None:
    req = request("flaky?fail=429&fail_times=1&answer=ok")
    first, second = FakeProvider(), FakeProvider()
    with pytest.raises(RateLimitError):
        run(first, req)
    with pytest.raises(RateLimitError):
        run(second, req)  # a fresh instance counts from zero
    assert final(run(first, req)).text == "ok"
    with pytest.raises(RateLimitError):
        run(first, request("other?fail=429&fail_times=1"))  # another model counts separately


def test_fail_times_from_a_script_and_reset() -> None:
    provider = FakeProvider(scripts={"s": FakeScript(answers=["fine"], fail="timeout", fail_times=1)})
    with pytest.raises(StepTimeoutError):
        run(provider, request("s"))
    assert final(run(provider, request("s"))).text == "fine"
    provider.reset()
    with pytest.raises(StepTimeoutError):
        run(provider, request("s"))


def test_schema_request_gets_json_shaped_like_the_schema() -> None:
    schema = {
        "type": "object",
        "properties": {
            "label": {"type": "string", "enum": ["news", "opinion", "other"]},
            "score": {"type": "number", "minimum": 0, "maximum": 1},
            "votes": {"type": "integer", "minimum": 1, "maximum": 3},
            "ok": {"type": "boolean"},
            "reasons": {"type": "array", "items": {"type": "string"}, "minItems": 2},
            "summary": {"type": "string"},
        },
        "required": ["label", "score"],
    }
    value = json.loads(final(run(FakeProvider(), request("", "judge it", output_schema=schema))).text)
    assert value["label"] in {"news", "opinion", "other"}
    assert 0 <= value["score"] <= 1 and isinstance(value["score"], float)
    assert value["votes"] in {1, 2, 3}
    assert isinstance(value["ok"], bool)
    assert len(value["reasons"]) == 2 and all(isinstance(r, str) for r in value["reasons"])
    assert isinstance(value["summary"], str)


def test_schema_answer_is_deterministic() -> None:
    schema = {"type": "object", "properties": {"label": {"enum": ["a", "b", "c", "d"]}}}
    texts = {final(run(FakeProvider(), request("", "same", output_schema=schema))).text for _ in range(3)}
    assert len(texts) == 1


@pytest.mark.parametrize("option", ["fail=404", "latency=soon", "colour=red"])
def test_bad_options_are_clear_non_retryable_errors(option: str) -> None:
    with pytest.raises(ProviderError) as info:
        run(FakeProvider(), request(f"x?{option}"))
    assert not info.value.retryable


def test_parse_fake_model_splits_name_and_options() -> None:
    assert parse_fake_model("critic?latency=0.05&chunk=4&answer=yes") == (
        "critic",
        {"latency": "0.05", "chunk": "4", "answer": "yes"},
    )
    assert parse_fake_model("") == ("", {})
