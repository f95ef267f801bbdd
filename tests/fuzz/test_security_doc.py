"""docs/security.md stays true: every limit, its setting and its default are in the table
as the code has them, and every setting the page names exists."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

from llmflow.model.limits import DEFAULT, SETTINGS, Limits
from llmflow.server.config import AGENT_RUNNER_ORIGINS, ServerConfig
from llmflow.settings import PREFIX, Settings

DOC = (Path(__file__).resolve().parents[2] / "docs" / "security.md").read_text(encoding="utf-8")


def _row(setting: str) -> str:
    rows = [line for line in DOC.splitlines() if line.startswith("|") and f"`{setting}`" in line]
    assert rows, f"{setting} is not in docs/security.md"
    return rows[0]


def test_every_limit_is_documented_with_its_default():
    for f in fields(Limits):
        default = getattr(DEFAULT, f.name)
        shown = f"{default:g}" if isinstance(default, float) else str(default)
        assert f"`{shown}`" in _row(SETTINGS[f.name]) or f"`{shown} s`" in _row(SETTINGS[f.name]), (
            f.name,
            shown,
        )
    cfg = ServerConfig()
    assert f"`{cfg.max_body_bytes}`" in _row("LLMFLOW_MAX_BODY_BYTES")
    assert f"`{cfg.max_frame_bytes}`" in _row("LLMFLOW_MAX_FRAME_BYTES")
    assert f"`{','.join(AGENT_RUNNER_ORIGINS)}`" in _row("LLMFLOW_CORS_ORIGINS")


def test_every_setting_the_page_names_is_read_somewhere():
    src = Path(__file__).resolve().parents[2] / "src" / "llmflow"
    code = "\n".join(p.read_text(encoding="utf-8") for p in src.rglob("*.py"))
    # the typed settings read LLMFLOW_<FIELD> (or a field's own alias) without naming it in a literal
    typed = set()
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        typed.add(alias.upper() if isinstance(alias, str) else f"{PREFIX}{name}".upper())
    for name in set(re.findall(r"`(LLMFLOW_[A-Z_]+|CORS_ORIGINS)", DOC)):
        assert f'"{name}"' in code or name in typed, f"docs/security.md names {name}, which no code reads"
