"""Secrets never leave in a span: every value of an environment variable whose name says it
is a secret (the loader's rule, :data:`llmflow.model.loader.SECRET_NAME`) is masked in any
text put on a span."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from llmflow.model.loader import SECRET_NAME

MASK = "***"
MIN_SECRET_LEN = 6  # shorter values ("1", "true") are not worth masking and would garble text


class Redactor:
    def __init__(self, env: Mapping[str, str]) -> None:
        values = {v for k, v in env.items() if v and len(v) >= MIN_SECRET_LEN and SECRET_NAME.search(k)}
        self._values = sorted(values, key=len, reverse=True)  # longest first: no partial leftovers

    def text(self, value: Any, limit: int = 32_000) -> str:
        s = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
        for secret in self._values:
            if secret in s:
                s = s.replace(secret, MASK)
        return s if len(s) <= limit else s[:limit] + "…"
