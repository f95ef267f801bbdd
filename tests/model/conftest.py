"""Fixtures for the model tests."""

from __future__ import annotations

import textwrap

import pytest


@pytest.fixture
def write(tmp_path):
    """write("rel/path.yaml", text) -> Path, dedenting text."""

    def _write(rel: str, text: str):
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text), encoding="utf-8")
        return p

    return _write
