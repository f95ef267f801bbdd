"""A python step for tests/model/test_secrets.py: writes the value it was given to a file
(so the test can see the step got the secret) and returns only its length."""

from __future__ import annotations

from pathlib import Path


def record(key: str, out: str) -> int:
    Path(out).write_text(key, encoding="utf-8")
    return len(key)
