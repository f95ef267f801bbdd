"""The LLM gateway: providers + rate limits + prices behind the engine's LlmGateway port.

Turns a provider's stream into events: LLM_LOADING_MODEL ("Loading model: X"),
LLM_GENERATING, coalesced LLM_TOKENS chunks, LLM_HEARTBEAT, LLM_DONE (usage, cost) or
LLM_ERROR. Keys and base URLs never appear in events.

A step's timeout bounds its model call here too: the call gives up a moment before the
step's deadline (a tenth of the timeout, at most a second, earlier: the attempt started a
little before the call), so a model call cut short by a timeout records LLM_ERROR, naming
the timeout, before the step fails (as Agent Runner's timeline shows). That failure is not
retried, like the step's own timeout. When the step's timeout cuts the call all the same (an
earlier wait took the margin, or a tool loop's later call), the cancellation carries the
step's reason and the call records the same LLM_ERROR (kind ``timeout``); a cancel records
none."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from llmflow.engine.events import EventType as E
from llmflow.engine.inputs import step_timeout
from llmflow.engine.ports import LlmResult, StepContext
from llmflow.errors import RateLimitError, StepError, StepTimeoutError

# Token chunks are stored coalesced: one LLM_TOKENS event per COALESCE_SECONDS (or
# COALESCE_CHARS) of streamed text. Subscribers in this process get each stored chunk as soon
# as it is durable, so a console still updates ten times a second; the log holds a few
# events per answer instead of one per token.
COALESCE_SECONDS = 0.1
COALESCE_CHARS = 1024


class Gateway:
    def __init__(self, registry: Any, limiter: Any | None = None, prices: Any | None = None) -> None:
        self.registry = registry
        self.limiter = limiter
        self.prices = prices

    async def generate(
        self,
        ctx: StepContext,
        *,
        model: str,
        model_source: str,
        messages: list[tuple[str, str]],
        params: dict[str, Any],
        output_schema: dict[str, Any] | None = None,
        stream: bool = True,
        tools: list[Any] | None = None,
    ) -> LlmResult:
        from llmflow.providers.base import ChatMessage, Chunk, Final, ModelRequest, Status

        provider, name = self.registry.resolve(model)
        chat = [m if isinstance(m, ChatMessage) else ChatMessage(m[0], m[1]) for m in messages]
        est = sum(len(m.content.split()) for m in chat) + int(params.get("max_tokens", 256) or 256)
        if self.limiter is not None:
            await self.limiter.acquire(model, est)
        ctx.event(E.LLM_LOADING_MODEL, f"Loading model: {model}", model=model, model_source=model_source)
        shown = [_shown(m) for m in chat]
        extra = {"tools": [t.name for t in tools]} if tools else {}
        ctx.event(
            E.LLM_GENERATING,
            f"Generating with {model}",
            model=model,
            model_source=model_source,
            messages=shown,
            **extra,
        )
        req = ModelRequest(
            model=name,
            messages=chat,
            params=dict(params),
            output_schema=output_schema,
            stream=stream,
            timeout=ctx.step.timeout,
            tools=tuple(tools or ()),
        )
        t0 = time.monotonic()
        last = t0
        parts: list[str] = []
        pending = 0  # characters streamed since the last LLM_TOKENS
        final = None
        limit = ctx.step.timeout
        deadline = asyncio.timeout(call_budget(limit))
        try:
            async with deadline:
                async for item in provider.stream(req):
                    if isinstance(item, Chunk):
                        parts.append(item.text)
                        pending += len(item.text)
                        if pending >= COALESCE_CHARS or time.monotonic() - last >= COALESCE_SECONDS:
                            ctx.event(
                                E.LLM_TOKENS,
                                "",
                                text="".join(parts[len(parts) - _count_back(parts, pending) :]),
                            )
                            pending, last = 0, time.monotonic()
                    elif isinstance(item, Status):
                        kind = E.LLM_LOADING_MODEL if item.kind == "loading" else E.LLM_HEARTBEAT
                        ctx.event(
                            kind,
                            item.message,
                            model=model,
                            status=item.kind,
                            elapsed=round(time.monotonic() - t0, 1),
                        )
                    elif isinstance(item, Final):
                        final = item
        except TimeoutError as exc:
            if not deadline.expired():  # a provider's own TimeoutError
                ctx.event(
                    E.LLM_ERROR, f"LLM error from {model}: TimeoutError: {exc}", model=model, kind="error"
                )
                raise
            cut = StepTimeoutError(
                f"{model} timed out: no answer within {limit:g}s (the step's timeout)", retryable=False
            )
            ctx.event(E.LLM_ERROR, f"LLM error from {model}: {cut.message}", model=model, kind=cut.kind)
            raise cut from None
        except asyncio.CancelledError as exc:
            why = step_timeout(exc)
            if why is not None:  # the step's own timeout cut the call (not a cancel): say so
                ctx.event(E.LLM_ERROR, f"LLM error from {model}: {why}", model=model, kind="timeout")
            raise
        except RateLimitError as exc:
            if self.limiter is not None:
                self.limiter.penalise(model, exc.retry_after)
            ctx.event(
                E.LLM_ERROR,
                f"LLM error from {model}: {exc.message}",
                model=model,
                kind=exc.kind,
                retry_after=exc.retry_after,
            )
            raise
        except StepError as exc:
            ctx.event(E.LLM_ERROR, f"LLM error from {model}: {exc.message}", model=model, kind=exc.kind)
            raise
        except Exception as exc:
            ctx.event(
                E.LLM_ERROR, f"LLM error from {model}: {type(exc).__name__}: {exc}", model=model, kind="error"
            )
            raise
        if pending:
            ctx.event(E.LLM_TOKENS, "", text="".join(parts[len(parts) - _count_back(parts, pending) :]))
        text = final.text if final is not None and final.text else "".join(parts)
        usage = final.usage if final is not None else None
        tin = usage.input_tokens if usage else 0
        tout = usage.output_tokens if usage else 0
        if self.limiter is not None:
            self.limiter.record(model, tin + tout)
        cost = 0.0
        if self.prices is not None and usage is not None:
            c = self.prices(model, usage)
            cost = float(c) if c is not None else 0.0
        dt = time.monotonic() - t0
        calls = tuple(final.tool_calls) if final is not None else ()
        done = {"tool_calls": [c.name for c in calls]} if calls else {}
        ctx.event(
            E.LLM_DONE,
            f"Generation complete ({len(text)} chars, {dt:.1f}s)"
            + (f"; asks for {len(calls)} tool call{'s' if len(calls) != 1 else ''}" if calls else ""),
            model=model,
            model_source=model_source,
            usage={"input_tokens": tin, "output_tokens": tout},
            cost=cost,
            duration=round(dt, 4),
            **done,
        )
        return LlmResult(
            text=text, model=model, input_tokens=tin, output_tokens=tout, cost=cost, tool_calls=calls
        )


def call_budget(step_timeout: float | None) -> float | None:
    """How long a model call may take under a step timeout: a tenth of it (at most a
    second) less, so the call reports its timeout before the step's own deadline."""
    if not step_timeout:
        return None
    return max(step_timeout - min(1.0, step_timeout / 10), step_timeout / 2)


def _shown(m: Any) -> dict[str, Any]:
    """A message as LLM_GENERATING records it (long contents cut)."""
    d: dict[str, Any] = {"role": m.role, "content": m.content[:20_000]}
    if m.tool_calls:
        d["tool_calls"] = [c.to_dict() for c in m.tool_calls]
    if m.tool_call_id:
        d["tool_call_id"] = m.tool_call_id
        d["name"] = m.name
    return d


def _count_back(parts: list[str], chars: int) -> int:
    """How many of the last ``parts`` hold the last ``chars`` characters."""
    n = 0
    i = len(parts)
    while chars > 0 and i > 0:
        i -= 1
        chars -= len(parts[i])
        n += 1
    return n
