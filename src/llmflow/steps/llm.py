"""`llm` (and each agent of a `broadcast`): render the prompt, call the model through the
gateway (streaming, usage, rate limits), validate structured output with a bounded repair."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

from llmflow.engine.models import resolve_model
from llmflow.engine.ports import StepContext
from llmflow.errors import StepError
from llmflow.model.expressions import render
from llmflow.model.spec import AgentSpec, BroadcastStep, ConductorStep, LlmStep

REPAIR_ATTEMPTS = 2


def build_messages(ctx: StepContext, agent: AgentSpec | None) -> list[tuple[str, str]]:
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
    return [f"{'/'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}" for e in v.iter_errors(value)][:5]


async def call_model(ctx: StepContext, agent: AgentSpec | None, messages: list[tuple[str, str]], params: dict[str, Any], schema: dict[str, Any] | None, stream: bool = True) -> Any:
    if ctx.llm is None:
        raise StepError("no LLM gateway configured", retryable=False)
    unit_model = (ctx.vars.get("matrix") or {}).get("model")
    model, source = resolve_model(ctx.step, ctx.flow, agent=agent, run_models=ctx.run_models, env=ctx.env_models, unit_model=unit_model)
    merged = {**(agent.params if agent else {}), **params}
    res = await ctx.llm.generate(ctx, model=model, model_source=source, messages=messages, params=merged, output_schema=schema, stream=stream)
    if schema is None:
        return res.text
    text = res.text
    for attempt in range(REPAIR_ATTEMPTS + 1):
        try:
            value = extract_json(text)
            errs = schema_errors(value, schema)
        except (json.JSONDecodeError, ValueError) as exc:
            value, errs = None, [f"not valid JSON: {exc}"]
        if not errs:
            return value
        if attempt == REPAIR_ATTEMPTS:
            raise StepError(f"structured output does not match the schema after {REPAIR_ATTEMPTS} repair attempts: {'; '.join(errs)}", retryable=True)
        repair = messages + [
            ("assistant", text),
            ("user", "Your answer did not match the required JSON schema: " + "; ".join(errs) + "\nAnswer again with only a JSON value matching this schema:\n" + json.dumps(schema)),
        ]
        res = await ctx.llm.generate(ctx, model=model, model_source=source, messages=repair, params=merged, output_schema=schema, stream=stream)
        text = res.text
    return None  # unreachable


async def execute(ctx: StepContext) -> Any:
    spec = ctx.step
    agent_name = ctx.vars.get("agent") if isinstance(spec, BroadcastStep | ConductorStep) else getattr(spec, "agent", None)
    agent = ctx.flow.agents.get(agent_name) if agent_name else None
    messages = await asyncio.to_thread(build_messages, ctx, agent)  # templates render off the event loop
    params = dict(getattr(spec, "params", {}) or {})
    stream = getattr(spec, "stream", True)
    return await call_model(ctx, agent, messages, params, spec.output, stream)
