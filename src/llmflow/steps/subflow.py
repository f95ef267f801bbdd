"""`flow`: run another flow as a child run linked to this one."""

from __future__ import annotations

from typing import Any

from llmflow.engine.ports import StepContext
from llmflow.model.expressions import render, render_value
from llmflow.model.spec import FlowStep


async def execute(ctx: StepContext) -> Any:
    spec = ctx.step
    assert isinstance(spec, FlowStep)
    inputs = render_value(spec.inputs, ctx.template)
    return await ctx.run_child(render(spec.flow, ctx.template), inputs, list(spec.overrides))
