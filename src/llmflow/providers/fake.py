"""The fake (scripted) model: deterministic answers with no network, for tests and examples.

``fake:`` answers from the prompt: a short text quoting the last user message plus a stable
hash, or, when the request has an ``output_schema``, a JSON value shaped like the schema.
Options come from the model name's query string (``fake:critic?latency=0.05&chunk=4``) and
from a :class:`FakeScript` registered under the name (``fake:critic``); query options win.

=============  ==========================================================================
option         meaning
=============  ==========================================================================
answer         fixed answer text
latency        seconds to sleep (asyncio) before the first chunk of every call
chunk          words per streamed :class:`Chunk` (default 1)
chunk_delay    seconds to sleep between chunks
fail           ``429`` (RateLimitError), ``500`` (ProviderError, retryable),
               ``timeout`` (StepTimeoutError), ``malformed`` (non-JSON text)
fail_times     fail only the first N calls of this model on this provider, then succeed
retry_after    seconds carried by the ``429`` RateLimitError
=============  ==========================================================================

Usage counts tokens as whitespace-separated words of the prompt and of the answer.

Tool calls: when a request offers tools, an answer written as a mapping with
``tool_calls`` (``{tool_calls: [{name: lookup, arguments: {id: 7}}], text: "..."}``) is
returned as calls the model asks for, with ids ``call_<turn>_<i>``. A list script is then
indexed by the conversation's turn (the number of assistant messages so far) rather than by
the call count, so a loop resumed in another process gets the same answers. In a text
answer ``{tool_results}`` is replaced by the results of the calls since the last assistant
message (joined with newlines).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qsl

from llmflow.errors import ProviderError, RateLimitError, StepTimeoutError
from llmflow.providers.base import Chunk, Final, ModelRequest, StreamItem, ToolCall, Usage
from llmflow.providers.fake_schema import value_for_schema

Answers = list[Any] | dict[str, Any] | Callable[[ModelRequest], Any]
FAILURES = ("429", "500", "timeout", "malformed")
MALFORMED_TEXT = "this is not JSON {"


@dataclass(frozen=True)
class FakeScript:
    """How a named fake model behaves.

    ``answers`` is a list (used in order, cycling), a mapping of regex -> answer (the first
    pattern that matches the prompt wins; unmatched prompts get the default answer), or a
    callable ``(ModelRequest) -> str``. Non-string answers are sent as JSON.
    """

    answers: Answers | None = None
    latency: float = 0.0
    chunk: int = 1
    chunk_delay: float = 0.0
    fail: str | int | None = None  # "429" | "500" | "timeout" | "malformed"
    fail_times: int | None = None  # None: every call fails while ``fail`` is set
    retry_after: float | None = None

    def __post_init__(self) -> None:
        if self.fail is not None:
            object.__setattr__(self, "fail", str(self.fail))  # fail=429 and fail="429" mean the same
            if self.fail not in FAILURES:
                raise ValueError(f"FakeScript fail={self.fail!r} is not one of {', '.join(FAILURES)}")
        if self.chunk < 1:
            raise ValueError("FakeScript chunk must be at least 1 word")


def count_tokens(text: str) -> int:
    """The fake model's token count: whitespace-separated words."""
    return len(text.split())


def parse_fake_model(model: str) -> tuple[str, dict[str, str]]:
    """``"critic?latency=0.05&answer=yes"`` -> ``("critic", {"latency": "0.05", "answer": "yes"})``."""
    name, _, query = model.partition("?")
    return name.strip(), dict(parse_qsl(query, keep_blank_values=True))


def _apply_options(script: FakeScript, options: Mapping[str, str]) -> FakeScript:
    changes: dict[str, Any] = {}
    try:
        for key in ("latency", "chunk_delay", "retry_after"):
            if key in options:
                changes[key] = float(options[key])
        for key in ("chunk", "fail_times"):
            if key in options:
                changes[key] = int(options[key])
    except ValueError as exc:
        raise ProviderError(f"fake model option is not a number: {exc}", retryable=False) from None
    if "fail" in options:
        changes["fail"] = options["fail"] or None
    if "answer" in options:
        changes["answers"] = [options["answer"]]
    unknown = set(options) - {*changes, "fail", "answer"}
    if unknown:
        raise ProviderError(
            f"unknown fake model option(s): {', '.join(sorted(unknown))}",
            retryable=False,
            hint="known options: answer, latency, chunk, chunk_delay, fail, fail_times, retry_after",
        )
    try:
        return replace(script, **changes)
    except ValueError as exc:
        raise ProviderError(str(exc), retryable=False) from None


def _stable_hash(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:8]


def default_answer(request: ModelRequest, name: str = "") -> str:
    """A short text derived from the last user message and a hash of the whole prompt."""
    if request.output_schema is not None:
        seed = _stable_hash(name, request.prompt_text, json.dumps(request.output_schema, sort_keys=True))
        return json.dumps(value_for_schema(request.output_schema, seed))
    users = [m.content for m in request.messages if m.role == "user"]
    last = (users[-1] if users else request.prompt_text).split()
    snippet = " ".join(last[:8]) + (" ..." if len(last) > 8 else "")
    return f"fake answer to: {snippet} [{_stable_hash(name, request.prompt_text)}]"


def _as_text(answer: Any) -> str:
    return answer if isinstance(answer, str) else json.dumps(answer)


def conversation_turn(request: ModelRequest) -> int:
    """How many assistant messages the conversation already has."""
    return sum(1 for m in request.messages if m.role == "assistant")


def _tool_results(request: ModelRequest) -> str:
    out: list[str] = []
    for m in reversed(request.messages):
        if m.role == "assistant":
            break
        if m.role == "tool":
            out.append(m.content)
    return "\n".join(reversed(out))


def _tool_calls(answer: Any, turn: int) -> tuple[ToolCall, ...] | None:
    if not isinstance(answer, Mapping) or "tool_calls" not in answer:
        return None
    calls = []
    for i, c in enumerate(answer.get("tool_calls") or []):
        if not isinstance(c, Mapping) or not isinstance(c.get("name"), str):
            raise ProviderError(f"fake script: a tool call needs a 'name', got {c!r}", retryable=False)
        args = c.get("arguments") or {}
        calls.append(
            ToolCall(
                str(c.get("id") or f"call_{turn}_{i}"),
                c["name"],
                dict(args) if isinstance(args, Mapping) else {"value": args},
            )
        )
    return tuple(calls)


def _split_words(text: str, per_chunk: int) -> list[str]:
    # Each piece keeps its trailing whitespace so the chunks join back to the exact text.
    words = re.findall(r"\S+\s*|\s+", text)
    return ["".join(words[i : i + per_chunk]) for i in range(0, len(words), per_chunk)] or [""]


@dataclass
class _Counters:
    calls: dict[str, int] = field(default_factory=dict)
    answered: dict[str, int] = field(default_factory=dict)


class FakeProvider:
    """``fake:[name][?options]`` — deterministic, scripted, offline. See the module docs."""

    name = "fake"

    def __init__(self, scripts: Mapping[str, FakeScript | Mapping[str, Any]] | None = None) -> None:
        self._scripts: dict[str, FakeScript] = {}
        # model string -> (its registered script, that script with the string's options):
        # parsed once per string, again when the name is registered anew
        self._resolved: dict[str, tuple[FakeScript | None, str, FakeScript]] = {}
        self._counters = _Counters()
        for key, script in (scripts or {}).items():
            self.register(key, script)

    def register(self, name: str, script: FakeScript | Mapping[str, Any]) -> None:
        """Make ``fake:<name>`` use ``script`` (a FakeScript or a mapping of its fields)."""
        self._scripts[name] = script if isinstance(script, FakeScript) else FakeScript(**dict(script))

    def reset(self) -> None:
        """Forget call counts (``fail_times`` and answer cycling start again)."""
        self._counters = _Counters()

    def _pick_answer(self, script: FakeScript, request: ModelRequest, name: str, key: str) -> Any:
        answers = script.answers
        if callable(answers):
            return answers(request)
        if isinstance(answers, Mapping):
            for pattern, answer in answers.items():
                if re.search(pattern, request.prompt_text):
                    return answer
        elif answers:
            if request.tools:
                index = conversation_turn(request)
            else:
                index = self._counters.answered.get(key, 0)
                self._counters.answered[key] = index + 1
            return answers[index % len(answers)]
        return default_answer(request, name)

    def _script_for(self, model: str) -> tuple[str, FakeScript]:
        hit = self._resolved.get(model)
        if hit is not None and self._scripts.get(hit[1]) is hit[0]:
            return hit[1], hit[2]
        name, options = parse_fake_model(model)
        base = self._scripts.get(name)
        script = _apply_options(base or FakeScript(), options)
        if len(self._resolved) > 1024:
            self._resolved.clear()
        self._resolved[model] = (base, name, script)
        return name, script

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamItem]:
        name, script = self._script_for(request.model)
        key = request.model
        call = self._counters.calls.get(key, 0) + 1
        self._counters.calls[key] = call
        if script.latency > 0:
            await asyncio.sleep(script.latency)
        failing = script.fail is not None and (script.fail_times is None or call <= script.fail_times)
        if failing:
            _raise_failure(script, f"fake:{request.model}")
        answer = MALFORMED_TEXT if failing else self._pick_answer(script, request, name, key)
        calls = _tool_calls(answer, conversation_turn(request)) if request.tools else None
        if calls is not None:
            text = str(answer.get("text") or "") if isinstance(answer, dict) else ""
        else:
            text = _as_text(answer)
            if "{tool_results}" in text:
                text = text.replace("{tool_results}", _tool_results(request))
        if request.stream and text:
            pieces = _split_words(text, script.chunk)
            for i, piece in enumerate(pieces):
                if i and script.chunk_delay > 0:
                    await asyncio.sleep(script.chunk_delay)
                yield Chunk(piece)
        usage = Usage(input_tokens=count_tokens(request.prompt_text), output_tokens=count_tokens(text))
        yield Final(
            text=text,
            usage=usage,
            model=f"fake:{name}",
            finish_reason="tool_calls" if calls else "stop",
            tool_calls=calls or (),
        )

    async def aclose(self) -> None:
        return None


def _raise_failure(script: FakeScript, model: str) -> None:
    if script.fail == "429":
        raise RateLimitError(f"{model}: rate limited (injected 429)", retry_after=script.retry_after)
    if script.fail == "500":
        raise ProviderError(f"{model}: server error (injected 500)", retryable=True)
    if script.fail == "timeout":
        raise StepTimeoutError(f"{model}: timed out (injected timeout)")
    # "malformed" is not raised: the caller returns non-JSON text instead.
