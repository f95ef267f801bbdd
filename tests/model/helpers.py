"""Helpers for the model tests: parse YAML text and get its diagnostics."""

from __future__ import annotations

import textwrap

from llmflow.errors import FlowValidationError
from llmflow.model.diagnostics import Diagnostic
from llmflow.model.loader import parse_flow_text


def problems(text: str) -> list[Diagnostic]:
    """The diagnostics of a flow written as (dedented) YAML text; [] when it is valid."""
    try:
        parse_flow_text(textwrap.dedent(text), file="flow.yaml")
    except FlowValidationError as exc:
        return exc.diagnostics
    return []


def one(text: str, code: str | None = None) -> Diagnostic:
    """The single diagnostic of a flow (of ``code``, when given)."""
    found = [d for d in problems(text) if code is None or d.code == code]
    assert len(found) == 1, [d.format() for d in problems(text)]
    return found[0]
