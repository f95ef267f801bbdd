"""Structured logs in <home>/.llmflow/logs/ (rotating). Configured by the CLI, never on import."""

from __future__ import annotations

import json
import logging
import logging.handlers
import sys
from pathlib import Path


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        d = {
            "ts": round(record.created, 3),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            d["exc"] = self.formatException(record.exc_info)
        return json.dumps(d, ensure_ascii=False)


def setup_logging(state_dir: Path, level: str = "INFO", verbose: bool = False) -> Path | None:
    root = logging.getLogger("llmflow")
    if getattr(root, "_llmflow_configured", False):
        return None
    root.setLevel(logging.DEBUG if verbose else getattr(logging, level.upper(), logging.INFO))
    root.propagate = False
    path = None
    try:
        d = state_dir / "logs"
        d.mkdir(parents=True, exist_ok=True)
        path = d / "llmflow.log"
        h = logging.handlers.RotatingFileHandler(path, maxBytes=5_000_000, backupCount=5, encoding="utf-8")
        h.setFormatter(JsonFormatter())
        root.addHandler(h)
    except OSError:
        path = None
    if verbose:
        sh = logging.StreamHandler(sys.stderr)
        sh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(sh)
    root._llmflow_configured = True  # type: ignore[attr-defined]
    return path
