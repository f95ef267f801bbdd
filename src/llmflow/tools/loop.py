"""The tool loop, durable.

The model proposes calls; they run (the calls of one round in parallel, each with its own
timeout, retries and optional human confirmation); their results go back to the model; this
repeats until the model answers without calls, or ``max_turns`` rounds have run.

Every call is recorded: ``TOOL_CALL_STARTED`` (call_id, name, arguments, and ``turn`` /
``index`` / ``calls`` placing it in its round, ``assistant_text`` on the round's first call)
before it runs, then ``TOOL_CALL_COMPLETED`` (result) or ``TOOL_CALL_FAILED`` (error;
``retrying: true`` when another try follows). Rounds are numbered by how many rounds came
before, so the numbering does not depend on schema repairs in between.

Replay: a new attempt of the same step after an interruption (``ctx.prior_events()``)
rebuilds each recorded round from those events instead of asking the model again, and gives
the model the recorded result of every finished call; a finished call (COMPLETED, or FAILED
with no retry following) is never executed again. A call that was running when the process
died has no result and runs again (at least once: a tool with side effects can use the call
id, the same across attempts, to stay idempotent). A re-run in place starts a new
generation: its ``prior_events()`` are empty, so the loop starts afresh.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from llmflow.engine.events import Event
from llmflow.engine.events import EventType as E
from llmflow.engine.ports import HumanQuestion, StepContext
from llmflow.errors import StepError
from llmflow.providers.base import ChatMessage, ToolCall
from llmflow.tools.base import CallContext, Tool, ToolError, jsonable, result_text

DEFAULT_MAX_TURNS = 10
NO_RETRY_KINDS = frozenset({"arguments", "shell_disabled", "workspace", "validation", "rejected", "unknown"})
DECLINED = "The user declined this tool call; do not try it again with the same arguments."


@dataclass
class Recorded:
    """What earlier (interrupted) attempts of this step recorded."""

    rounds: dict[int, tuple[str, list[ToolCall]]] = field(default_factory=dict)
    finished: dict[str, str] = field(default_factory=dict)  # call_id -> the text the model got

    @classmethod
    def from_events(cls, events: list[Event], loop: str | None = None) -> Recorded:
        """The rounds and finished calls of one loop (``loop`` tells the loops of one
        attempt apart, e.g. the turns of a conductor)."""
        rec = cls()
        parts: dict[int, dict[int, ToolCall]] = {}
        sizes: dict[int, int] = {}
        texts: dict[int, str] = {}
        for e in events:
            p = e.payload
            if p.get("loop") != loop:
                continue
            if e.type == E.TOOL_CALL_STARTED and isinstance(p.get("turn"), int):
                turn = p["turn"]
                parts.setdefault(turn, {})[int(p.get("index", 0))] = ToolCall(
                    str(p["call_id"]), str(p["name"]), dict(p.get("arguments") or {})
                )
                sizes[turn] = int(p.get("calls", 1))
                if "assistant_text" in p:
                    texts[turn] = str(p["assistant_text"])
            elif e.type == E.TOOL_CALL_COMPLETED and p.get("call_id"):
                rec.finished[str(p["call_id"])] = result_text(p.get("result"))
            elif e.type == E.TOOL_CALL_FAILED and p.get("call_id") and not p.get("retrying"):
                rec.finished[str(p["call_id"])] = (
                    DECLINED if p.get("kind") == "rejected" else f"Error: {p.get('error')}"
                )
        for turn, calls in parts.items():
            if len(calls) == sizes.get(turn) and sorted(calls) == list(range(len(calls))):
                rec.rounds[turn] = (texts.get(turn, ""), [calls[i] for i in range(len(calls))])
        return rec


def as_chat(messages: list[Any]) -> list[ChatMessage]:
    """(role, content) pairs or ChatMessage objects as ChatMessage objects."""
    return [m if isinstance(m, ChatMessage) else ChatMessage(m[0], m[1]) for m in messages]


def _call_label(name: str, arguments: dict[str, Any]) -> str:
    args = json.dumps(arguments, ensure_ascii=False, default=str)
    return f"{name}({args[:120] + '...' if len(args) > 120 else args})"


async def run_loop(
    ctx: StepContext,
    *,
    model: str,
    model_source: str,
    messages: list[ChatMessage],
    tools: dict[str, Tool],
    params: dict[str, Any],
    schema: dict[str, Any] | None,
    stream: bool,
    max_turns: int,
    finish: Callable[[str], tuple[Any, list[str]]],
    repairs: int = 2,
    loop: str | None = None,
) -> Any:
    """Run the loop; return the final answer as ``finish`` parsed it. ``finish(text)`` gives
    (value, problems); with problems the model is asked again (up to ``repairs`` times)."""
    if ctx.llm is None:
        raise StepError("no LLM gateway configured", retryable=False)
    recorded = Recorded.from_events(ctx.prior_events(), loop)
    tag = {"loop": loop} if loop is not None else {}
    defs = [t.definition() for t in tools.values()]
    msgs = list(messages)
    rounds = 0
    repaired = 0
    while True:
        if rounds in recorded.rounds:
            text, calls = recorded.rounds[rounds]
        else:
            res = await ctx.llm.generate(
                ctx,
                model=model,
                model_source=model_source,
                messages=msgs,  # type: ignore[arg-type]  # with tools, messages are ChatMessages (engine/ports.py LlmGateway)
                params=params,
                output_schema=schema,
                stream=stream,
                tools=defs,
            )
            calls = _with_ids(list(res.tool_calls), rounds)
            text = res.text
            if not calls:
                value, problems = finish(text)
                if not problems:
                    return value
                if repaired >= repairs:
                    raise StepError(
                        f"structured output does not match the schema after {repairs} repair attempts: {'; '.join(problems)}",
                        retryable=True,
                    )
                repaired += 1
                msgs += [
                    ChatMessage("assistant", text),
                    ChatMessage(
                        "user",
                        "Your answer did not match the required JSON schema: "
                        + "; ".join(problems)
                        + "\nAnswer again with only a JSON value matching this schema:\n"
                        + json.dumps(schema),
                    ),
                ]
                continue
        if rounds >= max_turns:
            raise StepError(
                f"the model still asks for tools after {max_turns} round(s) of tool calls (max_turns)",
                retryable=False,
                hint="raise max_turns on the step or agent, or make the prompt ask for a final answer",
            )
        msgs.append(ChatMessage("assistant", text, tool_calls=tuple(calls)))
        for i, c in enumerate(calls):
            if c.id not in recorded.finished:
                ctx.event(
                    E.TOOL_CALL_STARTED,
                    f"Tool call {_call_label(c.name, c.arguments)}",
                    call_id=c.id,
                    name=c.name,
                    arguments=c.arguments,
                    turn=rounds,
                    index=i,
                    calls=len(calls),
                    **({"assistant_text": text} if i == 0 else {}),
                    source=tools[c.name].source if c.name in tools else None,
                    **tag,
                )
        results = await asyncio.gather(*(_run_call(ctx, tools, c, recorded, tag) for c in calls))
        for c, r in zip(calls, results, strict=True):
            msgs.append(ChatMessage("tool", r, tool_call_id=c.id, name=c.name))
        rounds += 1


def _with_ids(calls: list[ToolCall], turn: int) -> list[ToolCall]:
    out, seen = [], set()
    for i, c in enumerate(calls):
        cid = c.id or f"call_{turn}_{i}"
        if cid in seen:
            cid = f"{cid}_{i}"
        seen.add(cid)
        out.append(
            ToolCall(cid, c.name, c.arguments if isinstance(c.arguments, dict) else {"value": c.arguments})
        )
    return out


async def _run_call(
    ctx: StepContext, tools: dict[str, Tool], call: ToolCall, recorded: Recorded, tag: dict[str, Any]
) -> str:
    if call.id in recorded.finished:
        return recorded.finished[call.id]
    base = {"call_id": call.id, "name": call.name, "arguments": call.arguments, **tag}
    t0 = time.monotonic()
    tool = tools.get(call.name)
    if tool is None:
        err = f"unknown tool {call.name!r}; available: {', '.join(tools) or '(none)'}"
        ctx.event(
            E.TOOL_CALL_FAILED,
            f"Tool call {call.name} failed: {err}",
            **base,
            error=err,
            kind="unknown",
            duration=0.0,
            retrying=False,
        )
        return f"Error: {err}"
    confirmed = None
    if tool.confirm:
        from llmflow.steps.human import interpret

        question = HumanQuestion(
            prompt=f"Allow the tool call {_call_label(call.name, call.arguments)}?",
            input="confirm",
            default="no",
            key=f"tool:{tag.get('loop', '')}{call.id}",
        )
        confirmed = bool(interpret(await ctx.ask_human(question), "confirm", None))
        if not confirmed:
            ctx.event(
                E.TOOL_CALL_FAILED,
                f"Tool call {call.name} declined by a human",
                **base,
                error="declined by a human",
                kind="rejected",
                confirmed=False,
                duration=round(time.monotonic() - t0, 4),
                retrying=False,
            )
            return DECLINED
    attempts = tool.retry.attempts if tool.retry else 1
    extra = {"confirmed": True} if confirmed else {}
    for n in range(1, attempts + 1):
        t1 = time.monotonic()
        try:
            async with asyncio.timeout(tool.timeout):
                value = await tool.fn(dict(call.arguments), CallContext(ctx, call.id))
        except TimeoutError:
            message, kind = f"timed out after {tool.timeout:g}s", "timeout"
        except StepError as exc:
            message, kind = exc.message + (f" (hint: {exc.hint})" if exc.hint else ""), exc.kind
        except Exception as exc:  # noqa: BLE001 - a tool's own exception goes back to the model
            message, kind = f"{type(exc).__name__}: {exc}", "error"
        else:
            value = jsonable(value)
            ctx.event(
                E.TOOL_CALL_COMPLETED,
                f"Tool call {call.name} completed ({time.monotonic() - t1:.2f}s)",
                **base,
                result=value,
                duration=round(time.monotonic() - t1, 4),
                **{"try": n},
                **extra,
            )
            return result_text(value)
        again = n < attempts and kind not in NO_RETRY_KINDS
        ctx.event(
            E.TOOL_CALL_FAILED,
            f"Tool call {call.name} failed: {message}"
            + (f"; try {n + 1} of {attempts} follows" if again else ""),
            **base,
            error=message,
            kind=kind,
            duration=round(time.monotonic() - t1, 4),
            retrying=again,
            **{"try": n},
            **extra,
        )
        if not again:
            return f"Error: {message}"
        assert tool.retry is not None
        from llmflow.engine.retry import backoff_delay

        await asyncio.sleep(backoff_delay(tool.retry, n, 0.5))
    return "Error: no attempt ran"  # unreachable: attempts >= 1


__all__ = ["DEFAULT_MAX_TURNS", "Recorded", "ToolError", "run_loop"]
