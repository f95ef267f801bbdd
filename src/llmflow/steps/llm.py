"""`llm` (and each agent of a `broadcast`): render the prompt, call the model through the
gateway (streaming, usage, rate limits), validate structured output with a bounded repair.

With ``tools:`` (on the step or its agent) the call becomes a durable tool loop
(:mod:`llmflow.tools.loop`); in a run that belongs to a thread, the agent's earlier messages
in that thread come first (:mod:`llmflow.tools.threads`)."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

from llmflow.engine.models import resolve_model
from llmflow.engine.ports import StepContext
from llmflow.errors import StepError
from llmflow.model.expressions import is_template, render, render_lookups
from llmflow.model.spec import AgentSpec, BroadcastStep, ConductorStep, LlmStep

REPAIR_ATTEMPTS = 2


class _NeedsJinja(Exception):
    pass


def _lookups_only(text: str, context: dict[str, Any]) -> str:
    """``render`` for literal text and plain look-ups (no thread needed); _NeedsJinja else."""
    if not is_template(text):
        return text
    r = render_lookups(text, context)
    if r is None:
        raise _NeedsJinja
    return r


def build_messages(ctx: StepContext, agent: AgentSpec | None, render: Any = render) -> list[tuple[str, str]]:
    spec = ctx.step
    msgs: list[tuple[str, str]] = []
    system = getattr(spec, "system", None) or (agent.system if agent else None)
    if system:
        msgs.append(("system", render(system, ctx.template)))
    if isinstance(spec, LlmStep) and spec.messages:
        msgs += [(m.role, render(m.content, ctx.template)) for m in spec.messages]
    prompt = getattr(spec, "prompt", None)
    if prompt is None and agent is not None:
        prompt = agent.prompt
    if prompt is not None and not (isinstance(spec, LlmStep) and spec.messages and spec.prompt is None):
        msgs.append(("user", render(prompt, ctx.template)))
    return msgs


def extract_json(text: str) -> Any:
    s = text.strip()
    fence = re.search(r"```(?:json)?\s*(.*?)```", s, re.S)
    if fence:
        s = fence.group(1).strip()
    for opener, closer in (("{", "}"), ("[", "]")):
        i, j = s.find(opener), s.rfind(closer)
        if i != -1 and j > i:
            try:
                return json.loads(s[i : j + 1])
            except json.JSONDecodeError:
                continue
    return json.loads(s)


def schema_errors(value: Any, schema: dict[str, Any]) -> list[str]:
    import jsonschema

    v = jsonschema.Draft202012Validator(schema)
    return [
        f"{'/'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}" for e in v.iter_errors(value)
    ][:5]


def _model_and_params(
    ctx: StepContext, agent: AgentSpec | None, params: dict[str, Any]
) -> tuple[Any, str, str, dict[str, Any]]:
    """The gateway, the model this call uses, where that choice came from, and the agent's
    params under the step's."""
    if ctx.llm is None:
        raise StepError("no LLM gateway configured", retryable=False)
    unit_model = (ctx.vars.get("matrix") or {}).get("model")
    model, source = resolve_model(
        ctx.step, ctx.flow, agent=agent, run_models=ctx.run_models, env=ctx.env_models, unit_model=unit_model
    )
    return ctx.llm, model, source, {**(agent.params if agent else {}), **params}


async def call_model(
    ctx: StepContext,
    agent: AgentSpec | None,
    messages: list[Any],
    params: dict[str, Any],
    schema: dict[str, Any] | None,
    stream: bool = True,
) -> Any:
    llm, model, source, merged = _model_and_params(ctx, agent, params)
    res = await llm.generate(
        ctx,
        model=model,
        model_source=source,
        messages=messages,
        params=merged,
        output_schema=schema,
        stream=stream,
    )
    if schema is None:
        return res.text
    text = res.text
    for attempt in range(REPAIR_ATTEMPTS + 1):
        value, errs = parse_output(text, schema)
        if not errs:
            return value
        if attempt == REPAIR_ATTEMPTS:
            raise StepError(
                f"structured output does not match the schema after {REPAIR_ATTEMPTS} repair attempts: {'; '.join(errs)}",
                retryable=True,
            )
        repair = messages + [
            ("assistant", text),
            (
                "user",
                "Your answer did not match the required JSON schema: "
                + "; ".join(errs)
                + "\nAnswer again with only a JSON value matching this schema:\n"
                + json.dumps(schema),
            ),
        ]
        res = await llm.generate(
            ctx,
            model=model,
            model_source=source,
            messages=repair,
            params=merged,
            output_schema=schema,
            stream=stream,
        )
        text = res.text
    return None  # unreachable


async def agent_answer(ctx: StepContext, agent: AgentSpec | None, messages: list[Any], *, loop: str) -> Any:
    """One answer of ``agent`` (with its tools, when it has some): for steps that call agents
    several times in one attempt (the conductor); ``loop`` names this call's tool loop."""
    if agent is not None and agent.tools:
        return await call_with_tools(ctx, agent, messages, {}, None, True, list(agent.tools), loop=loop)
    return await call_model(ctx, agent, messages, {}, None)


def parse_output(text: str, schema: dict[str, Any] | None) -> tuple[Any, list[str]]:
    """(value, problems) of a final answer: the text itself, or JSON matching ``schema``."""
    if schema is None:
        return text, []
    try:
        value = extract_json(text)
        return value, schema_errors(value, schema)
    except (json.JSONDecodeError, ValueError) as exc:
        return None, [f"not valid JSON: {exc}"]


async def call_with_tools(
    ctx: StepContext,
    agent: AgentSpec | None,
    messages: list[Any],
    params: dict[str, Any],
    schema: dict[str, Any] | None,
    stream: bool,
    refs: list[Any],
    loop: str | None = None,
) -> Any:
    from llmflow.tools.loop import DEFAULT_MAX_TURNS, as_chat, run_loop
    from llmflow.tools.resolve import Toolset

    _, model, source, merged = _model_and_params(ctx, agent, params)
    max_turns = (
        getattr(ctx.step, "max_turns", None) or (agent.max_turns if agent else None) or DEFAULT_MAX_TURNS
    )
    chat = as_chat(messages)
    async with Toolset() as toolset:
        await toolset.open(ctx, refs)
        return await run_loop(
            ctx,
            model=model,
            model_source=source,
            messages=chat,
            tools=toolset.tools,
            params=merged,
            schema=schema,
            stream=stream,
            max_turns=max_turns,
            finish=lambda text: parse_output(text, schema),
            repairs=REPAIR_ATTEMPTS,
            loop=loop,
        )


async def execute(ctx: StepContext) -> Any:
    spec = ctx.step
    agent_name = (
        ctx.vars.get("agent")
        if isinstance(spec, BroadcastStep | ConductorStep)
        else getattr(spec, "agent", None)
    )
    agent = ctx.flow.agents.get(agent_name) if agent_name else None
    try:  # plain look-ups ({{ inputs.q }}) render here; real templates off the event loop
        messages: list[Any] = build_messages(ctx, agent, _lookups_only)
    except _NeedsJinja:
        messages = await asyncio.to_thread(build_messages, ctx, agent)
    params = dict(getattr(spec, "params", {}) or {})
    stream = getattr(spec, "stream", True)
    thread = ctx.settings.get("thread") if isinstance(ctx.settings, dict) else None
    if thread:
        from llmflow.tools.threads import with_history

        messages = with_history(ctx, messages, thread, key=agent_name or ctx.step.id)
    refs = [*(agent.tools if agent else []), *(getattr(spec, "tools", None) or [])]
    if refs:
        return await call_with_tools(ctx, agent, messages, params, spec.output, stream, refs)
    return await call_model(ctx, agent, messages, params, spec.output, stream)


def inline(ctx: StepContext) -> bool:
    """The engine's question (``StepExecutor.inline``): may this call start inline, in the
    runner's own task? Only a plain call of the offline fake model: it opens no cancel scope
    before it first waits (an HTTP client's connection pool does), and only without a step
    timeout (the gateway's budget is an ``asyncio.timeout``, which would bind to the runner's
    task), without tools and outside a thread (their loops are not checked for that)."""
    spec = ctx.step
    if not isinstance(spec, LlmStep | BroadcastStep) or spec.timeout or getattr(spec, "tools", None):
        return False
    if isinstance(ctx.settings, dict) and ctx.settings.get("thread"):
        return False
    agent_name = ctx.vars.get("agent") if isinstance(spec, BroadcastStep) else spec.agent
    agent = ctx.flow.agents.get(agent_name) if agent_name else None
    if agent is not None and agent.tools:
        return False
    _, model, _, _ = _model_and_params(ctx, agent, {})
    return str(model).partition(":")[0] == "fake"


execute.inline = inline  # type: ignore[attr-defined]
