"""`llmflow run` and `llmflow runs ...` (filled in by the engine)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    return None
