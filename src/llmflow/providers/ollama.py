"""Native Ollama: model presence check, optional pull, streaming ``/api/chat`` with heartbeats.

``ollama:llama3.1`` (or ``ollama:llama3.1:8b``) talks to the Ollama server at
``OLLAMA_BASE_URL``, else ``OLLAMA_HOST`` (Ollama's own variable), else
``http://127.0.0.1:11434``. Before the first call to a model
it checks ``/api/tags``; a missing model is pulled (``POST /api/pull``) only when pulling is
allowed (``LLMFLOW_OLLAMA_PULL=1`` or ``OllamaProvider(allow_pull=True)``). While Ollama
loads a model into memory no token arrives for a while, so until the first token a
``Status("heartbeat", ...)`` is yielded every ``OLLAMA_HEARTBEAT_INTERVAL`` seconds.

Timeouts follow Agent Runner's precedence: the request's timeout (the step's own, or the
run's default for steps without one) wins; ``OLLAMA_TIMEOUT_SECONDS`` (default 300) is the
last fallback, used only when the request has none, never a cap on a longer step timeout.
A call that times out is not retried: the timeout is the limit the user set.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from llmflow.errors import ProviderError, ProviderUnavailableError, RateLimitError, StepTimeoutError
from llmflow.providers.base import (
    ChatMessage,
    Chunk,
    Final,
    ModelRequest,
    Status,
    StreamItem,
    ToolCall,
    Usage,
)

DEFAULT_BASE_URL = "http://127.0.0.1:11434"
DEFAULT_TIMEOUT = 300.0
DEFAULT_HEARTBEAT = 15.0


def base_url_from_env(env: Mapping[str, str]) -> str:
    """``OLLAMA_BASE_URL`` (Agent Runner's) when set, else ``OLLAMA_HOST`` (Ollama's own:
    ``host``, ``host:port`` or a URL, read the way Ollama's clients read it: http, port
    11434 when not given), else ``http://127.0.0.1:11434``."""
    if env.get("OLLAMA_BASE_URL"):
        return env["OLLAMA_BASE_URL"]
    host = (env.get("OLLAMA_HOST") or "").strip()
    if not host:
        return DEFAULT_BASE_URL
    from urllib.parse import urlsplit

    parts = urlsplit(host if "://" in host else f"http://{host}")
    name = parts.hostname or "127.0.0.1"
    if ":" in name:  # IPv6
        name = f"[{name}]"
    try:
        port = parts.port or (443 if parts.scheme == "https" and "://" in host else 11434)
    except ValueError:
        raise ProviderUnavailableError(
            f"OLLAMA_HOST={host!r} is not host[:port] or a URL", hint="e.g. OLLAMA_HOST=127.0.0.1:11434"
        ) from None
    return f"{parts.scheme}://{name}:{port}{parts.path.rstrip('/')}"


def _seconds(elapsed: float) -> str:
    return f"{elapsed:.1f}s" if elapsed < 10 else f"{elapsed:.0f}s"


def _message(m: ChatMessage) -> dict[str, Any]:
    """One message in Ollama's /api/chat shape (tool calls and tool results included)."""
    out: dict[str, Any] = {"role": m.role, "content": m.content}
    if m.tool_calls:
        out["tool_calls"] = [{"function": {"name": c.name, "arguments": c.arguments}} for c in m.tool_calls]
    if m.role == "tool" and m.name:
        out["tool_name"] = m.name
    return out


class OllamaProvider:
    """``ollama:<model>`` through Ollama's native HTTP API."""

    name = "ollama"

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        heartbeat_interval: float = DEFAULT_HEARTBEAT,
        allow_pull: bool = False,
        transport: Any | None = None,  # an httpx transport, for tests
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.heartbeat_interval = heartbeat_interval
        self.allow_pull = allow_pull
        self._transport = transport
        self._present: set[str] = set()

    @classmethod
    def from_env(cls, env: Mapping[str, str], **overrides: Any) -> OllamaProvider:
        """Settings from ``OLLAMA_BASE_URL`` / ``OLLAMA_HOST``, ``OLLAMA_TIMEOUT_SECONDS`` and
        ``OLLAMA_HEARTBEAT_INTERVAL`` (Ollama's names); ``allow_pull`` (llmflow's
        ``LLMFLOW_OLLAMA_PULL`` setting, typed in Settings) comes in as an override."""

        def number(key: str, default: float) -> float:
            try:
                return float(env.get(key) or default)
            except ValueError:
                raise ProviderError(
                    f"{key} must be a number of seconds, got {env.get(key)!r}", retryable=False
                ) from None

        options: dict[str, Any] = {
            "base_url": base_url_from_env(env),
            "timeout": number("OLLAMA_TIMEOUT_SECONDS", DEFAULT_TIMEOUT),
            "heartbeat_interval": number("OLLAMA_HEARTBEAT_INTERVAL", DEFAULT_HEARTBEAT),
            "allow_pull": False,
        }
        options.update(overrides)
        return cls(**options)

    def _client(self, timeout: float) -> Any:
        import httpx

        return httpx.AsyncClient(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            transport=self._transport,
        )

    def _unreachable(self) -> ProviderUnavailableError:
        return ProviderUnavailableError(
            f"Ollama is not reachable at {self.base_url}: start it or set OLLAMA_HOST (or OLLAMA_BASE_URL)",
            hint="start Ollama with `ollama serve`, or point OLLAMA_HOST (or OLLAMA_BASE_URL) at a running server",
        )

    def _http_error(self, status: int, body: str, model: str) -> ProviderError:
        detail = body
        with contextlib.suppress(ValueError, AttributeError):
            detail = json.loads(body).get("error", body)
        message = f"Ollama ({self.base_url}) returned HTTP {status} for {model}: {str(detail)[:300]}"
        if status == 429:
            return RateLimitError(message)
        if status == 404:
            return ProviderError(message, retryable=False, hint=f"pull it first: ollama pull {model}")
        return ProviderError(message, retryable=status >= 500)

    async def _ensure_model(self, client: Any, model: str) -> AsyncIterator[Status]:
        if model in self._present:
            return
        response = await client.get("/api/tags")
        if response.status_code != 200:
            raise self._http_error(response.status_code, response.text, model)
        names = set()
        for entry in response.json().get("models", []):
            for field in ("name", "model"):
                if entry.get(field):
                    names.add(entry[field])
        if model in names or (":" not in model and f"{model}:latest" in names):
            self._present.add(model)
            return
        if not self.allow_pull:
            raise ProviderUnavailableError(
                f"Ollama at {self.base_url} has no model {model!r}",
                hint=f"run `ollama pull {model}`, or set LLMFLOW_OLLAMA_PULL=1 to let llmflow pull it",
            )
        yield Status("loading", f"Pulling {model} into Ollama (LLMFLOW_OLLAMA_PULL is on)")
        async with client.stream("POST", "/api/pull", json={"model": model, "stream": True}) as pull:
            if pull.status_code != 200:
                raise self._http_error(pull.status_code, (await pull.aread()).decode(errors="replace"), model)
            async for line in pull.aiter_lines():
                if line.strip() and "error" in (data := json.loads(line)):
                    raise ProviderError(f"Ollama could not pull {model}: {data['error']}", retryable=False)
        self._present.add(model)

    def _payload(self, request: ModelRequest) -> dict[str, Any]:
        params = request.params
        options: dict[str, Any] = {}
        for ours, theirs in (
            ("temperature", "temperature"),
            ("max_tokens", "num_predict"),
            ("seed", "seed"),
            ("top_p", "top_p"),
            ("top_k", "top_k"),
            ("stop", "stop"),
        ):
            if params.get(ours) is not None:
                options[theirs] = params[ours]
        payload: dict[str, Any] = {
            "model": request.model,
            "messages": [_message(m) for m in request.messages],
            "stream": True,
            "options": options,
        }
        if request.output_schema is not None:
            payload["format"] = request.output_schema
        if request.tools:
            payload["tools"] = [
                {
                    "type": "function",
                    "function": {"name": t.name, "description": t.description, "parameters": t.parameters},
                }
                for t in request.tools
            ]
        return payload

    def _timeout(self, request: ModelRequest) -> tuple[float, str]:
        """The timeout of this call and where it comes from (named in a timeout error)."""
        if request.timeout:
            return float(request.timeout), "the step's timeout"
        return self.timeout, "OLLAMA_TIMEOUT_SECONDS"

    async def _read_chat(
        self, client: Any, payload: dict[str, Any], queue: asyncio.Queue[Any], limit: tuple[float, str]
    ) -> None:
        import httpx

        try:
            async with client.stream("POST", "/api/chat", json=payload) as response:
                if response.status_code != 200:
                    body = (await response.aread()).decode(errors="replace")
                    raise self._http_error(response.status_code, body, payload["model"])
                async for line in response.aiter_lines():
                    if line.strip():
                        await queue.put(("line", json.loads(line)))
            await queue.put(("end", None))
        except httpx.ConnectError:
            await queue.put(("error", self._unreachable()))
        except httpx.ConnectTimeout:
            await queue.put(("error", self._unreachable()))
        except httpx.TimeoutException:
            # the limit the user set (as in Agent Runner, a timed-out call fails its step)
            message = f"Ollama timed out: no answer within {limit[0]:g}s ({limit[1]})"
            await queue.put(("error", StepTimeoutError(message, retryable=False)))
        except (httpx.HTTPError, ValueError) as exc:
            await queue.put(("error", ProviderError(f"Ollama stream failed: {type(exc).__name__}: {exc}")))
        except ProviderError as exc:
            await queue.put(("error", exc))

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamItem]:
        import httpx

        model = request.model.strip()
        if not model:
            raise ProviderError("ollama needs a model name, e.g. ollama:llama3.1", retryable=False)
        timeout, source = self._timeout(request)
        async with self._client(timeout) as client:
            try:
                async for status in self._ensure_model(client, model):
                    yield status
            except httpx.ConnectError:
                raise self._unreachable() from None
            except httpx.TimeoutException:
                raise StepTimeoutError(
                    f"Ollama at {self.base_url} did not answer within {timeout:g}s ({source})"
                ) from None
            except httpx.HTTPError as exc:
                raise ProviderError(f"Ollama request failed: {type(exc).__name__}: {exc}") from None
            async for item in self._chat(client, request, model):
                yield item

    async def _chat(self, client: Any, request: ModelRequest, model: str) -> AsyncIterator[StreamItem]:
        queue: asyncio.Queue[Any] = asyncio.Queue()
        reader = asyncio.create_task(
            self._read_chat(client, self._payload(request), queue, self._timeout(request))
        )
        started = time.monotonic()
        parts: list[str] = []
        calls: list[ToolCall] = []
        got_token = False
        try:
            while True:
                if not got_token and self.heartbeat_interval > 0:
                    try:
                        kind, data = await asyncio.wait_for(queue.get(), timeout=self.heartbeat_interval)
                    except TimeoutError:
                        elapsed = _seconds(time.monotonic() - started)
                        yield Status("heartbeat", f"Still waiting on {model}... {elapsed} elapsed")
                        continue
                else:
                    kind, data = await queue.get()
                if kind == "error":
                    raise data
                if kind == "end":
                    raise ProviderError(f"Ollama closed the stream for {model} before it was done")
                if "error" in data:
                    raise ProviderError(f"Ollama error for {model}: {data['error']}")
                message = data.get("message") or {}
                for c in message.get("tool_calls") or []:
                    fn = c.get("function") or {}
                    args = fn.get("arguments") or {}
                    if isinstance(args, str):
                        args = json.loads(args) if args.strip() else {}
                    calls.append(
                        ToolCall(
                            str(c.get("id") or f"call_{len(calls)}"), str(fn.get("name", "")), dict(args)
                        )
                    )
                    got_token = True
                text = message.get("content") or ""
                if text:
                    got_token = True
                    parts.append(text)
                    if request.stream:
                        yield Chunk(text)
                if data.get("done"):
                    usage = Usage(int(data.get("prompt_eval_count") or 0), int(data.get("eval_count") or 0))
                    yield Final(
                        "".join(parts),
                        usage,
                        model=f"ollama:{model}",
                        finish_reason=data.get("done_reason"),
                        tool_calls=tuple(calls),
                    )
                    return
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    async def aclose(self) -> None:
        return None  # one HTTP client per call, closed with it
