"""Side effects for the crash tests: each attempt writes one file named by step, unit and
attempt. The attempt named by ``gate`` blocks until the file ``<out_dir>/GO`` exists, so a
test can kill the process while that attempt is provably in flight."""

from __future__ import annotations

import os
import time
from pathlib import Path


def effect(ctx, out_dir: str, name: str, gate: str = "") -> str:  # noqa: ANN001
    unit = ctx.unit or "-"
    if gate in (name, f"{name}[{unit}]"):
        while not (Path(out_dir) / "GO").exists():
            time.sleep(0.01)
    p = Path(out_dir) / f"{name}__{unit}__{ctx.attempt}"
    p.write_text(str(os.getpid()))
    return f"{name}:{unit}"


def fail_first(ctx, marker: str) -> str:  # noqa: ANN001
    """Fails its first attempt (retryable), succeeds after."""
    from llmflow.errors import StepError

    if ctx.attempt == 1:
        raise StepError("first attempt fails", retryable=True)
    Path(marker).write_text(str(ctx.attempt))
    return "ok"


async def sleep_long(seconds: float) -> str:
    import asyncio

    await asyncio.sleep(seconds)
    return "slept"
