"""`write_file`: write text into the workspace, or split an LLM answer's FILE blocks into files."""

from __future__ import annotations

import re
from typing import Any

from llmflow.engine.events import EventType as E
from llmflow.engine.ports import StepContext
from llmflow.errors import StepError
from llmflow.model.expressions import render_async
from llmflow.model.spec import WriteFileStep
from llmflow.steps.trust import writable_path
from llmflow.steps.workspace import atomic_write, file_record

FILE_BLOCK = re.compile(
    r"^[ \t]*=== FILE:\s*(?P<path>[^\n=]+?)\s*===[ \t]*\n(?P<body>.*?)^[ \t]*=== END FILE ===[ \t]*$",
    re.M | re.S,
)


def split_file_blocks(text: str) -> list[tuple[str, str]]:
    """``=== FILE: path === ... === END FILE ===`` blocks, in order. Code fences around a
    block's body are removed."""
    out = []
    for m in FILE_BLOCK.finditer(text):
        body = m.group("body")
        lines = body.splitlines(keepends=True)
        if lines and lines[0].lstrip().startswith("```"):
            lines = lines[1:]
            if lines and lines[-1].strip().startswith("```"):
                lines = lines[:-1]
        out.append((m.group("path").strip(), "".join(lines)))
    return out


def _target(ctx: StepContext, rel: str) -> Any:
    """``rel`` inside the workspace, and a place this run may write (steps/trust.py)."""
    return writable_path(ctx, rel)


async def execute(ctx: StepContext) -> Any:
    spec = ctx.step
    assert isinstance(spec, WriteFileStep)
    content = await render_async(spec.content, ctx.template)
    written: list[dict[str, Any]] = []
    if spec.split_files:
        blocks = split_file_blocks(content)
        if not blocks:
            raise StepError(
                "no '=== FILE: path ===' blocks found in the content",
                retryable=False,
                hint="the previous step must answer with FILE blocks",
            )
        base = await render_async(spec.dir, ctx.template)
        targets = [
            (_target(ctx, f"{base.rstrip('/')}/{rel}" if base not in ("", ".") else rel), body, False)
            for rel, body in blocks
        ]
        if spec.path:
            targets.append((_target(ctx, await render_async(spec.path, ctx.template)), content, spec.append))
        for path, body, append in targets:  # every path is checked before the first write
            atomic_write(path, body, append)
            written.append(file_record(ctx.workspace, path))
    else:
        path = _target(ctx, await render_async(spec.path or "", ctx.template))
        atomic_write(path, content, spec.append)
        written.append(file_record(ctx.workspace, path))
    for rec in written:
        ctx.event(E.ARTIFACT_CREATED, f"Artifact: {rec['abs_path']}", **rec)
    return {"files": [r["path"] for r in written], "bytes": sum(int(r["size"]) for r in written)}
