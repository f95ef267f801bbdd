"""Hosted models through pydantic-ai: OpenAI, any OpenAI-compatible host, Anthropic, Gemini.

The wire format is pydantic-ai's (``OpenAIChatModel``, ``AnthropicModel``, ``GoogleModel``);
this module only supplies the connection (base URL and key, from the environment mapping
or a :class:`Connection` given to the constructor) and maps results and errors onto
llmflow's protocol. Keys are never put in messages, errors or events.

==================  ===========================================================  ==========================
provider            settings                                                     extra
==================  ===========================================================  ==========================
``openai:``         ``OPENAI_API_KEY``, optional ``OPENAI_BASE_URL``             ``llmflow[openai]``
``anthropic:``      ``ANTHROPIC_API_KEY``, optional ``ANTHROPIC_BASE_URL``       ``llmflow[anthropic]``
``gemini:``         ``GEMINI_API_KEY`` or ``GOOGLE_API_KEY``                     ``llmflow[gemini]``
``<name>:``         ``LLMFLOW_PROVIDER_<NAME>_BASE_URL``, optional ``_API_KEY``  ``llmflow[openai]``
==================  ===========================================================  ==========================
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from llmflow.errors import (
    ProviderError,
    ProviderUnavailableError,
    RateLimitError,
    StepError,
    StepTimeoutError,
)
from llmflow.providers.base import ChatMessage, Chunk, Final, ModelRequest, StreamItem, ToolCall, Usage

OPENAI_DEFAULT_BASE_URL = "https://api.openai.com/v1"
INSTALL_LINES = {
    "openai": "pip install 'llmflow[openai]'",
    "compatible": "pip install 'llmflow[openai]'",
    "anthropic": "pip install 'llmflow[anthropic]'",
    "gemini": "pip install 'llmflow[gemini]'",
}
_SETTINGS = {
    "max_tokens": "max_tokens",
    "temperature": "temperature",
    "top_p": "top_p",
    "seed": "seed",
    "stop": "stop_sequences",
    "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty",
}


@dataclass(frozen=True)
class Connection:
    """Where and how to reach one hosted provider. ``repr`` never shows the key."""

    name: str  # what users write before the colon: openai, anthropic, gemini, or a custom host name
    kind: str  # openai | compatible | anthropic | gemini
    api_key: str | None = None
    base_url: str | None = None
    key_env: str = ""  # the variable to name in hints
    structured_output: str = "auto"  # auto | native | prompted

    def __repr__(self) -> str:
        key = "set" if self.api_key else "unset"
        return (
            f"Connection(name={self.name!r}, kind={self.kind!r}, base_url={self.base_url!r}, api_key={key})"
        )


def custom_env_prefix(name: str) -> str:
    return f"LLMFLOW_PROVIDER_{name.upper().replace('-', '_')}_"


def custom_provider_names(env: Mapping[str, str]) -> list[str]:
    """Names of OpenAI-compatible hosts configured as ``LLMFLOW_PROVIDER_<NAME>_BASE_URL``."""
    found = (re.fullmatch(r"LLMFLOW_PROVIDER_(\w+?)_BASE_URL", key) for key, value in env.items() if value)
    return sorted({m.group(1).lower() for m in found if m})


def connection_from_env(name: str, env: Mapping[str, str]) -> Connection:
    """The connection for a built-in hosted provider or a custom OpenAI-compatible host."""
    if name == "openai":
        return Connection(
            "openai",
            "openai",
            env.get("OPENAI_API_KEY") or None,
            env.get("OPENAI_BASE_URL") or None,
            "OPENAI_API_KEY",
        )
    if name == "anthropic":
        return Connection(
            "anthropic",
            "anthropic",
            env.get("ANTHROPIC_API_KEY") or None,
            env.get("ANTHROPIC_BASE_URL") or None,
            "ANTHROPIC_API_KEY",
        )
    if name in ("gemini", "google"):
        key_env = "GEMINI_API_KEY" if env.get("GEMINI_API_KEY") else "GOOGLE_API_KEY"
        return Connection(
            "gemini", "gemini", env.get(key_env) or None, None, "GEMINI_API_KEY or GOOGLE_API_KEY"
        )
    prefix = custom_env_prefix(name)
    base_url = env.get(prefix + "BASE_URL")
    if not base_url:
        raise ProviderUnavailableError(f"no base URL for provider {name!r}", hint=f"set {prefix}BASE_URL")
    mode = (env.get(prefix + "STRUCTURED_OUTPUT") or "auto").strip().lower()
    return Connection(
        name, "compatible", env.get(prefix + "API_KEY") or None, base_url, prefix + "API_KEY", mode
    )


def to_model_messages(messages: list[ChatMessage]) -> list[Any]:
    """llmflow messages -> pydantic-ai requests/responses (system, user and tool-result parts
    grouped per turn; an assistant's tool calls become ToolCallParts)."""
    from pydantic_ai.messages import ModelRequest as Turn
    from pydantic_ai.messages import (
        ModelResponse,
        SystemPromptPart,
        TextPart,
        ToolCallPart,
        ToolReturnPart,
        UserPromptPart,
    )

    out: list[Any] = []
    parts: list[Any] = []
    for message in messages:
        if message.role == "assistant":
            if parts:
                out.append(Turn(parts=parts))
                parts = []
            reply: list[Any] = (
                [TextPart(message.content)] if message.content or not message.tool_calls else []
            )
            reply += [ToolCallPart(c.name, dict(c.arguments), tool_call_id=c.id) for c in message.tool_calls]
            out.append(ModelResponse(parts=reply))
        elif message.role == "system":
            parts.append(SystemPromptPart(message.content))
        elif message.role == "tool":
            parts.append(
                ToolReturnPart(
                    message.name or "tool", message.content, tool_call_id=message.tool_call_id or ""
                )
            )
        else:
            parts.append(UserPromptPart(message.content))
    if parts:
        out.append(Turn(parts=parts))
    return out


def _strip_fences(text: str) -> str:
    match = re.fullmatch(r"\s*```(?:json)?\s*\n(.*?)\n?```\s*", text, flags=re.DOTALL)
    return match.group(1) if match else text


class PydanticAIProvider:
    """One hosted provider (``openai``, ``anthropic``, ``gemini`` or a custom host) via pydantic-ai."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.name = connection.name
        self._models: dict[str, Any] = {}

    @classmethod
    def from_env(cls, name: str, env: Mapping[str, str]) -> PydanticAIProvider:
        return cls(connection_from_env(name, env))

    def _missing_key(self) -> ProviderUnavailableError:
        return ProviderUnavailableError(
            f"{self.name}: no API key; set {self.connection.key_env}",
            hint=f"export {self.connection.key_env.split(' or ')[0]}=... (or pick another model with LLMFLOW_MODEL)",
        )

    def _model(self, model_name: str) -> Any:
        if model_name in self._models:
            return self._models[model_name]
        if not model_name:
            raise ProviderError(f"{self.name} needs a model name, e.g. {self.name}:<model>", retryable=False)
        conn = self.connection
        try:
            model = _build_model(conn, model_name)
        except ImportError:
            line = INSTALL_LINES[conn.kind]
            raise ProviderUnavailableError(
                f"{self.name}: pydantic-ai support is not installed: {line}", hint=line
            ) from None
        except _MissingKey:
            raise self._missing_key() from None
        self._models[model_name] = model
        return model

    def _parameters(self, model: Any, schema: dict[str, Any] | None, tools: tuple[Any, ...] = ()) -> Any:
        from pydantic_ai.models import ModelRequestParameters
        from pydantic_ai.tools import ToolDefinition

        function_tools = [
            ToolDefinition(name=t.name, description=t.description, parameters_json_schema=t.parameters)
            for t in tools
        ]
        if schema is None:
            return ModelRequestParameters(function_tools=function_tools)
        from pydantic_ai.output import OutputObjectDefinition

        mode = self.connection.structured_output
        if mode not in ("native", "prompted"):
            native = self.connection.kind != "compatible" and model.profile.get(
                "supports_json_schema_output", False
            )
            mode = "native" if native else "prompted"
        title = re.sub(r"[^A-Za-z0-9_-]", "_", str(schema.get("title") or "output"))[:64]
        output = OutputObjectDefinition(json_schema=schema, name=title, description=schema.get("description"))
        return ModelRequestParameters(
            function_tools=function_tools,
            output_mode=mode,  # type: ignore[arg-type]  # mode is "native" or "prompted"
            output_object=output,
            allow_text_output=True,
        )

    def _settings(self, request: ModelRequest) -> dict[str, Any]:
        # Retries are the engine's job (it honours Retry-After and records attempts), not the SDK's.
        settings: dict[str, Any] = {"max_retries": 0}
        for ours, theirs in _SETTINGS.items():
            value = request.params.get(ours)
            if value is not None:
                settings[theirs] = [value] if ours == "stop" and isinstance(value, str) else value
        if request.timeout:
            settings["timeout"] = float(request.timeout)
        return settings

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamItem]:
        model = self._model(request.model)
        try:
            from pydantic_ai.direct import model_request_stream
            from pydantic_ai.messages import (
                PartDeltaEvent,
                PartStartEvent,
                TextPart,
                TextPartDelta,
                ToolCallPart,
            )

            messages = to_model_messages(request.messages)
            parameters = self._parameters(model, request.output_schema, request.tools)
            async with model:  # opens (and at the end closes) an HTTP client on this event loop
                stream_cm = model_request_stream(
                    model,
                    messages,
                    model_settings=self._settings(request),  # type: ignore[arg-type]  # a ModelSettings TypedDict
                    model_request_parameters=parameters,
                )
                async with stream_cm as response:
                    async for event in response:
                        text = ""
                        if isinstance(event, PartStartEvent) and isinstance(event.part, TextPart):
                            text = event.part.content
                        elif isinstance(event, PartDeltaEvent) and isinstance(event.delta, TextPartDelta):
                            text = event.delta.content_delta
                        if text and request.stream:
                            yield Chunk(text)
                    result = response.get()
                    reported = response.usage
        except StepError:
            raise
        except Exception as exc:  # noqa: BLE001 — every failure leaves as an llmflow error
            raise self._map_error(exc, request.model) from None
        text = "".join(p.content for p in result.parts if isinstance(p, TextPart))
        calls = tuple(
            ToolCall(p.tool_call_id, p.tool_name, p.args_as_dict())
            for p in result.parts
            if isinstance(p, ToolCallPart)
        )
        if request.output_schema is not None:
            text = _strip_fences(text)
        usage = Usage(reported.input_tokens, reported.output_tokens)
        if not usage.input_tokens and not usage.output_tokens:
            # Some servers (llama-cpp-python's, while streaming) report no usage: estimate it in words.
            usage = Usage(len(request.prompt_text.split()), len(text.split()))
        yield Final(
            text,
            usage,
            model=f"{self.name}:{request.model}",
            finish_reason=result.finish_reason,
            tool_calls=calls,
        )

    def _redact(self, text: str) -> str:
        key = self.connection.api_key
        return text.replace(key, "***") if key and len(key) >= 4 else text

    def _map_error(self, exc: Exception, model: str) -> StepError:
        from pydantic_ai import exceptions as x

        spec = f"{self.name}:{model}"
        where = f" at {self.connection.base_url}" if self.connection.base_url else ""
        detail = self._redact(_detail(exc))
        status = getattr(exc, "status_code", None)
        code = f"HTTP {status}" if status else type(exc).__name__
        # the HTTP status decides first: pydantic-ai also guesses a category from the body's
        # words, and a 500 saying "API key" is the server failing, not rejected credentials
        if isinstance(status, int) and status >= 500:
            return ProviderError(f"{spec} failed ({code}): {detail}", retryable=True)
        if isinstance(exc, x.ModelRateLimitError) or status == 429:
            retry_after = getattr(exc, "retry_after", None)
            return RateLimitError(f"{spec} is rate limited ({code}): {detail}", retry_after=retry_after)
        if status in (401, 403) or (status is None and isinstance(exc, x.ModelAuthenticationError)):
            return ProviderError(
                f"{spec} rejected the credentials ({code}): {detail}",
                retryable=False,
                hint=f"check {self.connection.key_env}",
            )
        if isinstance(exc, x.ModelQuotaExceededError):
            return ProviderError(
                f"{spec}: quota or billing exhausted ({code}): {detail}",
                retryable=False,
                hint=f"check the account behind {self.connection.key_env}",
            )
        if isinstance(exc, x.ModelNotFoundError) or status == 404:
            return ProviderError(
                f"{spec}: model not found{where} ({code}): {detail}",
                retryable=False,
                hint="check the model name and the base URL",
            )
        if isinstance(exc, x.ModelRequestTimeout | x.ModelTimeoutError):
            return StepTimeoutError(f"{spec}{where} timed out: {detail}")
        if isinstance(exc, x.ModelConnectionError):
            return ProviderError(f"could not reach {spec}{where}: {detail}", retryable=True)
        if isinstance(exc, x.ModelRequestRejectedError) or (status is not None and 400 <= status < 500):
            return ProviderError(f"{spec} rejected the request ({code}): {detail}", retryable=False)
        if isinstance(exc, x.UserError):
            return ProviderError(f"{spec}: {detail}", retryable=False)
        return ProviderError(f"{spec} failed ({code}): {detail}", retryable=True)

    async def aclose(self) -> None:
        self._models.clear()  # HTTP clients are closed after each call (see ``stream``)


class _MissingKey(Exception):
    pass


def _detail(exc: Exception) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, Mapping):
        inner = body.get("error", body)
        message = inner.get("message") if isinstance(inner, Mapping) else inner
        text = str(message or body)
    elif body:
        text = str(body)
    else:
        text = getattr(exc, "message", None) or str(exc)
    return text.strip().replace("\n", " ")[:300]


def _build_model(conn: Connection, model_name: str) -> Any:
    if conn.kind == "openai" and not conn.api_key and not conn.base_url:
        raise _MissingKey  # a proxy at OPENAI_BASE_URL may need no key
    if conn.kind in ("anthropic", "gemini") and not conn.api_key:
        raise _MissingKey
    if conn.kind in ("openai", "compatible"):
        from pydantic_ai.models.openai import OpenAIChatModel

        if conn.kind == "openai":
            from pydantic_ai.providers.openai import OpenAIProvider

            provider: Any = OpenAIProvider(
                base_url=conn.base_url or OPENAI_DEFAULT_BASE_URL, api_key=conn.api_key or "api-key-not-set"
            )
            return OpenAIChatModel(model_name, provider=provider)
        from pydantic_ai.profiles.openai import OpenAIModelProfile
        from pydantic_ai.providers.openai_compatible import OpenAICompatibleProvider

        # Servers such as vLLM, llama.cpp and Ollama read max_tokens, not max_completion_tokens.
        profile = OpenAIModelProfile(openai_chat_supports_max_completion_tokens=False)
        provider = OpenAICompatibleProvider(
            conn.name, base_url=conn.base_url or "", api_key=conn.api_key, profile=profile
        )
        return OpenAIChatModel(model_name, provider=provider)
    if conn.kind == "anthropic":
        from pydantic_ai.models.anthropic import AnthropicModel
        from pydantic_ai.providers.anthropic import AnthropicProvider

        return AnthropicModel(
            model_name, provider=AnthropicProvider(api_key=conn.api_key, base_url=conn.base_url)
        )
    from pydantic_ai.models.google import GoogleModel
    from pydantic_ai.providers.google import GoogleProvider

    return GoogleModel(model_name, provider=GoogleProvider(api_key=conn.api_key))
