"""Process settings, typed once (pydantic-settings) and read from the environment once, by
the composition root (:meth:`Settings.from_env`).

Every ``LLMFLOW_*`` setting llmflow reads for itself is a field here, validated where it is
read: a bad value stops the process with the variable's name and the fix, never later in a
run. ``Settings.env`` still carries the environment for what llmflow does not own: the keys
and base URLs of providers (``OPENAI_API_KEY``, ``LLMFLOW_PROVIDER_<NAME>_BASE_URL``...),
``${oc.env:...}`` interpolations in flows, and plugins.

Settings never read ``os.environ`` when constructed (``Settings(home=...)`` is what it says):
the environment comes in through ``from_env``, as a mapping a test can give.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

STATE_DIR = ".llmflow"
PREFIX = "LLMFLOW_"


def find_home(start: Path) -> Path:
    """The project directory, found like git finds a repository: ``start`` or the nearest
    parent holding a ``.llmflow/`` directory; ``start`` itself when none does (its
    ``.llmflow/`` is then created by the first run)."""
    start = start.resolve()
    for d in (start, *start.parents):
        if (d / STATE_DIR).is_dir():
            return d
    return start


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=PREFIX,
        case_sensitive=False,
        env_ignore_empty=True,
        extra="ignore",
        populate_by_name=True,
        validate_assignment=True,
    )

    home: Path  # the project directory; state lives in <home>/.llmflow (LLMFLOW_HOME, see from_env)
    home_source: str = Field("given", exclude=True)  # how it was found
    database_url: str | None = None
    config_dir: Path | None = None
    disable_shell: bool = False
    block_real_models: bool = False
    log_level: str = "INFO"
    lease_seconds: float = Field(30.0, gt=0)
    max_units: int = Field(10_000, gt=0)  # units one step may have
    human_timeout: float | None = Field(None, gt=0)  # default seconds a person has to answer
    park_after: float = Field(30.0, gt=0, validation_alias="LLMFLOW_HUMAN_PARK_AFTER")
    fake_scripts: str | None = None  # a YAML file of fake:<name> scripts (offline demos)
    rate_limits: str | None = None  # JSON, or a JSON file: per provider / model limits
    prices: str | None = None  # a price table for the cost of usage
    # derived by from_env, never read by name
    env_models: dict[str, str] = Field(default_factory=dict, exclude=True)
    env: dict[str, str] = Field(default_factory=dict, exclude=True)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)  # the environment comes in through from_env only

    @field_validator("log_level")
    @classmethod
    def _upper(cls, v: str) -> str:
        return v.upper()

    @property
    def allow_shell(self) -> bool:
        return not self.disable_shell

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
        try:
            read = _MappingSource(cls, env)()
            return cls(**read, home=home, home_source=how, env_models=models, env=env)
        except ValidationError as exc:
            raise _settings_error(exc, env) from None


# fields from_env computes: never read by their own name
_DERIVED = {f"{PREFIX}{n}".lower() for n in ("home", "home_source", "env_models", "env")}


class _MappingSource(EnvSettingsSource):
    """pydantic-settings' environment source over a given mapping instead of ``os.environ``."""

    def __init__(self, settings_cls: type[BaseSettings], env: Mapping[str, str]) -> None:
        self._mapping = env
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {
            k.lower(): v
            for k, v in self._mapping.items()
            if (v != "" or not self.env_ignore_empty) and k.lower() not in _DERIVED
        }


def _settings_error(exc: ValidationError, env: Mapping[str, str]) -> Exception:
    """The first bad setting, named as the variable it came from, with the fix."""
    from llmflow.errors import LlmflowError

    err = exc.errors()[0]
    name = str(err["loc"][0]) if err["loc"] else "?"
    field = Settings.model_fields.get(name)
    alias = field.validation_alias if field is not None else None
    key = alias if isinstance(alias, str) else name if name.startswith(PREFIX) else PREFIX + name.upper()
    raw: Any = env.get(key, err.get("input"))
    return LlmflowError(
        f"{key}={raw!r}: {err['msg'].lower()}",
        hint=f"unset {key} or give it a valid value",
    )
