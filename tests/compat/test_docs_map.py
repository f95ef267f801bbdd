"""docs/compatibility.md names a test for each row; each named test exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_test_named_in_the_compatibility_page_exists() -> None:
    page = (ROOT / "docs" / "compatibility.md").read_text()
    named = set(re.findall(r"`(test_[a-z0-9_]+)`", page))
    assert len(named) >= 20
    defined = set()
    for f in (ROOT / "tests").rglob("test_*.py"):
        defined |= set(re.findall(r"^def (test_[a-z0-9_]+)\(", f.read_text(), re.M))
    assert named - defined == set()
    # each table row that is done names at least one test
    for line in page.splitlines():
        if line.startswith("| ") and not line.startswith(("| Their", "|---")) and "*not yet*" not in line:
            assert re.search(r"`test_[a-z0-9_]+`", line), line
