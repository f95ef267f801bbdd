"""`human`: ask a person and wait (console, API or WebSocket), with timeout and default."""

from __future__ import annotations

from typing import Any

from llmflow.engine.ports import HumanQuestion, StepContext
from llmflow.model.expressions import render_async
from llmflow.model.spec import HumanStep

REJECT_WORDS = {"n", "no", "x", "cancel", "abort", "stop", "quit", "q", "reject", "r", "false"}


def interpret(answer: Any, mode: str, options: list[str] | None) -> Any:
    """Console conventions (Buttermilk): empty = confirm, n/no/... = reject, other text = content."""
    if isinstance(answer, dict):
        if "confirm" in answer and mode == "confirm":
            return bool(answer["confirm"])
        answer = answer.get("content", answer.get("text", answer.get("selection", "")))
    text = "" if answer is None else str(answer)
    if mode == "confirm":
        if isinstance(answer, bool):
            return answer
        return text.strip().lower() not in REJECT_WORDS
    if mode == "choice" and options:
        t = text.strip()
        if t.isdigit() and 1 <= int(t) <= len(options):
            return options[int(t) - 1]
        return t or options[0]
    return text


async def execute(ctx: StepContext) -> Any:
    spec = ctx.step
    assert isinstance(spec, HumanStep)
    q = HumanQuestion(
        prompt=await render_async(spec.prompt, ctx.template),
        input=spec.input,
        options=spec.options,
        default=spec.default,
        timeout=spec.timeout,
    )
    answer = await ctx.ask_human(q)
    value = interpret(answer, spec.input, spec.options)
    if spec.input == "confirm" and value is False and spec.on_reject == "stop":
        from llmflow.errors import StepError

        raise StepError(
            f"declined: the answer to {q.prompt[:80]!r} was no, so the flow stops",
            retryable=False,
            hint="answer yes to go on, or give the step on_reject: continue to carry on with false",
        )
    return value
