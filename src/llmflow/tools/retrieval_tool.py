"""A retrieval index as a tool (``tools: [{index: docs}]``): the model searches it and gets
the best chunks with their source, chunk number and score, to cite."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from llmflow.tools.base import CallContext, Tool


def index_tool(
    index: str,
    index_dir: Path | None,
    *,
    name: str | None = None,
    description: str | None = None,
    top_k: int = 5,
) -> Tool:
    """The tool searching ``index`` (whether it exists is checked when a step opens it)."""
    base = Path(index_dir) if index_dir is not None else Path(".llmflow/indexes")

    async def call(arguments: dict[str, Any], cc: CallContext) -> Any:
        query = str(arguments.get("query") or "").strip()
        if not query:
            from llmflow.tools.base import tool_error

            raise tool_error("give a non-empty 'query'", kind="arguments")
        k = int(arguments.get("top_k") or top_k)
        return await asyncio.to_thread(
            search_index, base, index, query, max(1, min(k, 50)), "hybrid", _env(cc)
        )

    params = {
        "type": "object",
        "properties": {
            "query": {"type": "string", "description": "what to look for"},
            "top_k": {"type": "integer", "minimum": 1, "maximum": 50, "default": top_k},
        },
        "required": ["query"],
    }
    tool_name = name or f"search_{index}".replace("-", "_")
    return Tool(
        tool_name,
        description
        or f"Search the {index!r} document index; returns the best passages with their source, chunk number and score.",
        params,
        call,
        f"index {index}",
    )


def _env(cc: CallContext) -> Any:
    from llmflow.tools.services import services_of

    return dict(services_of(cc.step).env) or None


def search_index(
    index_dir: Path, index: str, query: str, top_k: int, mode: str, env: Any = None
) -> list[dict[str, Any]]:
    from llmflow.tools.retrieval.store import Index

    idx = Index.open(index_dir, index)
    try:
        return [h.to_dict() for h in idx.search(query, top_k, mode, env=env)]
    finally:
        idx.close()
