"""The executor of ``kind: echo`` (imported on the kind's first run)."""

from __future__ import annotations

from typing import Any

from llmflow.engine.ports import StepContext
from llmflow.model.expressions import render_async


async def execute(ctx: StepContext) -> Any:
    text = await render_async(ctx.step.text, ctx.template)  # type: ignore[attr-defined]
    return " ".join([text] * ctx.step.times)  # type: ignore[attr-defined]
