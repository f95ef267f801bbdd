"""Side effects for the crash test: each attempt writes one file named by step, unit and attempt."""

from __future__ import annotations

import os
import random
import time
from pathlib import Path


def effect(ctx, out_dir: str, name: str) -> str:  # noqa: ANN001
    time.sleep(random.uniform(0.0, 0.08))
    unit = ctx.unit or "-"
    p = Path(out_dir) / f"{name}__{unit}__{ctx.attempt}"
    p.write_text(str(os.getpid()))
    return f"{name}:{unit}"
