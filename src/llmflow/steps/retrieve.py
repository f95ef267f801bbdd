"""`retrieve`: search a retrieval index; the output is the hits (source, chunk, title, text,
score), recorded on the step like any output."""

from __future__ import annotations

import asyncio
from typing import Any

from llmflow.engine.ports import StepContext
from llmflow.errors import StepConfigError, StepError
from llmflow.model.expressions import render_async
from llmflow.model.spec import RetrieveStep


async def execute(ctx: StepContext) -> Any:
    from llmflow.tools.retrieval.store import IndexError_
    from llmflow.tools.retrieval_tool import search_index
    from llmflow.tools.services import services_of

    spec = ctx.step
    assert isinstance(spec, RetrieveStep)
    query = (await render_async(spec.query, ctx.template)).strip()
    if not query:
        raise StepError(
            f"step '{spec.id}': the query rendered empty",
            retryable=False,
            hint="check the template of 'query'",
        )
    svc = services_of(ctx)
    try:
        return await asyncio.to_thread(
            search_index, svc.index_dir, spec.index, query, spec.top_k, spec.mode, dict(svc.env) or None
        )
    except IndexError_ as exc:
        raise StepConfigError(exc.message, hint=exc.hint) from None
