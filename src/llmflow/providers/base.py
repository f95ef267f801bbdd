"""One provider protocol for every LLM backend.

A model is named ``provider:model`` (``fake:``, ``local:gemma3-270m``, ``openai:gpt-4o-mini``,
``anthropic:claude-...``, ``gemini:gemini-2.5-flash``, ``ollama:llama3.1``). A provider
streams :class:`Chunk` and :class:`Status` items and ends with exactly one :class:`Final`.
Providers raise the errors of :mod:`llmflow.errors` (``RateLimitError`` with
``retry_after``, ``ProviderError``, ``ProviderUnavailableError``, ``StepTimeoutError``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class ToolDef:
    """A tool offered to the model: its name, what it does, and its arguments' JSON schema."""

    name: str
    description: str
    parameters: dict[str, Any]


@dataclass(frozen=True)
class ToolCall:
    """A call the model asked for. ``id`` is the provider's (or a stable made-up one)."""

    id: str
    name: str
    arguments: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "arguments": self.arguments}


@dataclass(frozen=True)
class ChatMessage:
    """One message. ``assistant`` messages may carry ``tool_calls``; a ``tool`` message is
    the result of the call ``tool_call_id`` (``name`` is the tool's)."""

    role: str  # system | user | assistant | tool
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None


@dataclass(frozen=True)
class ModelRequest:
    model: str  # the part after "provider:"
    messages: list[ChatMessage]
    params: dict[str, Any] = field(default_factory=dict)  # temperature, max_tokens, stop, seed ...
    output_schema: dict[str, Any] | None = None  # JSON schema for structured output
    stream: bool = True
    timeout: float | None = None
    tools: tuple[ToolDef, ...] = ()  # offered tools; the model may answer with tool calls

    @property
    def prompt_text(self) -> str:
        return "\n".join(m.content for m in self.messages)


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0

    def to_dict(self) -> dict[str, int]:
        return {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens}


@dataclass(frozen=True)
class Chunk:
    text: str


@dataclass(frozen=True)
class Status:
    """Progress that is not text: ``loading`` (model load / pull) or ``heartbeat``."""

    kind: str
    message: str


@dataclass(frozen=True)
class Final:
    text: str
    usage: Usage = Usage()
    model: str = ""
    finish_reason: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()  # calls the model asked for (then ``text`` may be empty)


StreamItem = Chunk | Status | Final


class Provider(Protocol):
    name: str

    def stream(self, request: ModelRequest) -> AsyncIterator[StreamItem]: ...

    async def aclose(self) -> None: ...


def split_model(spec: str) -> tuple[str, str]:
    """``"openai:gpt-4o"`` -> ``("openai", "gpt-4o")``; ``"fake:"`` -> ``("fake", "")``."""
    provider, sep, name = spec.partition(":")
    if not sep:
        return spec, ""
    return provider.strip().lower(), name.strip()
