"""Diagnostics: one problem in a flow definition, located precisely."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Location:
    file: str | None = None
    line: int | None = None  # 1-based
    column: int | None = None  # 1-based
    origin: str | None = None  # e.g. "command-line override 'a=b'" or "group option llms=lite"

    def format(self) -> str:
        if self.file is None:
            return self.origin or "<flow>"
        s = self.file
        if self.line is not None:
            s += f":{self.line}"
            if self.column is not None:
                s += f":{self.column}"
        return s


@dataclass(frozen=True)
class Diagnostic:
    code: str  # stable machine name, e.g. "unknown-key"
    message: str
    path: str = ""  # key path, e.g. "steps[2].prompt"
    hint: str | None = None
    location: Location = Location()
    severity: str = "error"

    def format(self) -> str:
        where = self.location.format()
        key = f" {self.path}:" if self.path else ""
        text = f"{where}:{key} {self.message}"
        if self.hint:
            text += f" (hint: {self.hint})"
        return text

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["location"] = asdict(self.location)
        return d


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    matches = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"did you mean '{matches[0]}'?" if matches else None


def format_path(parts: Iterable[str | int]) -> str:
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += f".{p}" if out else str(p)
    return out
