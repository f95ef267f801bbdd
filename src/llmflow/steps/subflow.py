"""`flow`: run another flow as a child run linked to this one."""

from __future__ import annotations

from typing import Any

from llmflow.engine.ports import StepContext
from llmflow.model.expressions import render_async, render_value_async
from llmflow.model.spec import FlowStep


async def execute(ctx: StepContext) -> Any:
    spec = ctx.step
    assert isinstance(spec, FlowStep)
    inputs = await render_value_async(spec.inputs, ctx.template)
    return await ctx.run_child(await render_async(spec.flow, ctx.template), inputs, list(spec.overrides))
