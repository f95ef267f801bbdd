"""Process settings, read from the environment once by the composition root."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STATE_DIR = ".llmflow"


def _flag(v: str | None) -> bool:
    return (v or "").strip().lower() in ("1", "true", "yes", "on")


def find_home(start: Path) -> Path:
    """The project directory, found like git finds a repository: ``start`` or the nearest
    parent holding a ``.llmflow/`` directory; ``start`` itself when none does (its
    ``.llmflow/`` is then created by the first run)."""
    start = start.resolve()
    for d in (start, *start.parents):
        if (d / STATE_DIR).is_dir():
            return d
    return start


@dataclass
class Settings:
    home: Path  # the project directory; state lives in <home>/.llmflow
    home_source: str = "given"  # how it was found: LLMFLOW_HOME, a parent's .llmflow/, the cwd
    database_url: str | None = None
    config_dir: Path | None = None
    env_models: dict[str, str] = field(default_factory=dict)
    allow_shell: bool = True
    block_real_models: bool = False
    log_level: str = "INFO"
    lease_seconds: float = 30.0
    env: dict[str, str] = field(default_factory=dict)
    max_units: int = 10_000  # units one step may have (LLMFLOW_MAX_UNITS)
    human_timeout: float | None = None  # default seconds a person has to answer (LLMFLOW_HUMAN_TIMEOUT)
    park_after: float = 30.0  # a worker parks a run waiting this long for a person (LLMFLOW_HUMAN_PARK_AFTER)

    @property
    def state_dir(self) -> Path:
        return self.home / STATE_DIR

    def store_label(self) -> str:
        """Where runs are stored, for headers (credentials redacted)."""
        if self.database_url:
            import re

            return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", self.database_url)
        return str(self.state_dir / "llmflow.db")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, home: Path | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        if home is not None or env.get("LLMFLOW_HOME"):
            home, how = (
                Path(home or env["LLMFLOW_HOME"]).resolve(),
                "LLMFLOW_HOME" if home is None else "argument",
            )
        else:
            cwd = Path.cwd().resolve()
            home = find_home(cwd)
            how = "current directory" if home == cwd else f"found {STATE_DIR}/ above the current directory"
        models = {
            k: v for k, v in env.items() if (k == "LLMFLOW_MODEL" or k.startswith("LLMFLOW_MODEL_")) and v
        }
        for k in ("OLLAMA_PLANNER_MODEL", "OLLAMA_CODER_MODEL"):
            if env.get(k):
                models[k] = env[k]
        cd = env.get("LLMFLOW_CONFIG_DIR")
        return cls(
            home=home,
            home_source=how,
            database_url=env.get("LLMFLOW_DATABASE_URL") or None,
            config_dir=Path(cd) if cd else None,
            env_models=models,
            allow_shell=not _flag(env.get("LLMFLOW_DISABLE_SHELL")),
            block_real_models=_flag(env.get("LLMFLOW_BLOCK_REAL_MODELS")),
            log_level=env.get("LLMFLOW_LOG_LEVEL", "INFO").upper(),
            lease_seconds=float(env.get("LLMFLOW_LEASE_SECONDS", "30")),
            env=env,
            max_units=_positive(env, "LLMFLOW_MAX_UNITS", 10_000, int),
            human_timeout=_positive(env, "LLMFLOW_HUMAN_TIMEOUT", None, float),
            park_after=_positive(env, "LLMFLOW_HUMAN_PARK_AFTER", 30.0, float),
        )


def _positive(env: Mapping[str, str], key: str, default: Any, kind: Any) -> Any:
    raw = (env.get(key) or "").strip()
    if not raw:
        return default
    try:
        v = kind(raw)
    except ValueError:
        v = None
    if v is None or v <= 0:
        from llmflow.errors import LlmflowError

        raise LlmflowError(
            f"{key}={raw!r} is not a positive {'whole ' if kind is int else ''}number",
            hint=f"unset {key} or set it to a number above 0",
        )
    return v
