"""Tools the tests call by ``tests.tools.helpers:NAME`` (importable from the repo root), and
small builders."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from llmflow.tools.base import CallContext


def effects_file() -> Path:
    return Path(os.environ["LLMFLOW_TEST_EFFECTS"])


def record(key: str) -> str:
    """Append KEY to the effects file (a side effect the tests count)."""
    with effects_file().open("a", encoding="utf-8") as f:
        f.write(f"record:{key}\n")
    return f"recorded {key}"


def slow(key: str) -> str:
    """Block until the release file exists (the test kills the process meanwhile), then record."""
    with effects_file().open("a", encoding="utf-8") as f:
        f.write(f"slow-start:{key}\n")
    release = effects_file().with_suffix(".release")
    deadline = time.monotonic() + 120
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    with effects_file().open("a", encoding="utf-8") as f:
        f.write(f"slow-done:{key}\n")
    return f"slow {key}"


def whoami(ctx: CallContext) -> str:
    """The call id (a parameter named ctx is not shown to the model)."""
    return ctx.call_id


def untyped_star(*values: Any) -> int:
    return len(values)


def add_numbers(a: int, b: int) -> int:
    """Add two whole numbers and return the sum.

    Args:
        a: the first number
        b: the second number
    """
    return a + b
