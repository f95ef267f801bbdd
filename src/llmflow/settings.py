"""Process settings, typed once (pydantic-settings) and read from the environment once, by
the composition root (:meth:`Settings.from_env`).

Every ``LLMFLOW_*`` setting llmflow reads for itself is a field here (with the server's
Agent Runner names ``DISABLE_WORKER``, ``WORKER_CHECK_INTERVAL`` and ``CORS_ORIGINS``),
validated where it is read: a bad value stops the process with the variable's name and the
fix, never later in a run. Components take these typed values (``ProviderRegistry``'s
default model, :meth:`Settings.limits`, ``ServerConfig.from_settings``, the metrics route).

``Settings.env`` still carries the raw environment, only for what llmflow cannot type
because it does not own the names: provider keys and hosts (``OPENAI_API_KEY``,
``OLLAMA_HOST``, ``LLMFLOW_PROVIDER_<NAME>_BASE_URL`` for any NAME...), ``${oc.env:...}``
interpolations in flows, the environment of processes llmflow starts (Ray workers, MCP
servers), and plugins.

Settings never read ``os.environ`` when constructed (``Settings(home=...)`` is what it says):
the environment comes in through ``from_env``, as a mapping a test can give.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

from llmflow.model.limits import DEFAULT as LIMITS
from llmflow.model.limits import SETTINGS as LIMIT_SETTINGS
from llmflow.model.limits import Limits

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


def resolve_home(env: Mapping[str, str], home: Path | None = None) -> tuple[Path, str]:
    """The home directory and how it was found: ``home`` when given, else ``LLMFLOW_HOME``,
    else :func:`find_home` from the working directory (cheap: callers key caches on it)."""
    if home is not None or env.get("LLMFLOW_HOME"):
        return Path(home or env["LLMFLOW_HOME"]).resolve(), "LLMFLOW_HOME" if home is None else "argument"
    cwd = Path.cwd().resolve()
    found = find_home(cwd)
    return found, "current directory" if found == cwd else f"found {STATE_DIR}/ above the current directory"


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
    disable_shell: bool = Field(False, validation_alias="LLMFLOW_DISABLE_SHELL")  # no shell / code steps
    block_real_models: bool = False
    log_level: str = "INFO"
    lease_seconds: float = Field(30.0, gt=0)
    max_units: int = Field(10_000, gt=0)  # units one step may have
    human_timeout: float | None = Field(None, gt=0)  # default seconds a person has to answer
    park_after: float = Field(30.0, gt=0, validation_alias="LLMFLOW_HUMAN_PARK_AFTER")
    fake_scripts: str | None = None  # a YAML file of fake:<name> scripts (offline demos)
    rate_limits: str | None = None  # JSON, or a JSON file: per provider / model limits
    prices: str | None = None  # a price table for the cost of usage
    # models and tools
    default_model: str | None = Field(
        None,
        validation_alias="LLMFLOW_MODEL",
        description="the model of llm steps that name none (unset: the embedded local model)",
    )
    local_model_dir: Path | None = Field(
        None,
        validation_alias="LLMFLOW_LOCAL_MODEL_DIR",
        description="where the embedded model's weights are unpacked (unset: ~/.cache)",
    )
    index_dir: Path | None = Field(
        None,
        validation_alias="LLMFLOW_INDEX_DIR",
        description="where retrieval indexes live (unset: <home>/.llmflow/indexes)",
    )
    ollama_pull: bool = Field(
        False,
        validation_alias="LLMFLOW_OLLAMA_PULL",
        description="llmflow may `ollama pull` a model the Ollama server does not have",
    )
    # tracing (llmflow.observe, docs/observability.md); the OTEL_* variables are OpenTelemetry's
    otel: bool | None = Field(
        None,
        validation_alias="LLMFLOW_OTEL",
        description="traces over OTLP on / off (unset: on when an OTLP endpoint is set)",
    )
    otel_capture_content: bool = Field(
        False,
        validation_alias="LLMFLOW_OTEL_CAPTURE_CONTENT",
        description="spans carry prompts, answers, tool arguments and step outputs",
    )
    thread_tokens: int = Field(
        2000,
        ge=0,
        validation_alias="LLMFLOW_THREAD_TOKENS",
        description="token budget of a thread's history sent with a step (docs/threads.md)",
    )
    # limits on what a flow document may make llmflow do (llmflow.model.limits, docs/security.md)
    template_seconds: float = Field(
        LIMITS.template_seconds,
        gt=0,
        validation_alias=LIMIT_SETTINGS["template_seconds"],
        description="seconds one template render may take",
    )
    template_output: int = Field(
        LIMITS.template_output,
        gt=0,
        validation_alias=LIMIT_SETTINGS["template_output"],
        description="characters one template render may produce",
    )
    template_range: int = Field(
        LIMITS.template_range,
        gt=0,
        validation_alias=LIMIT_SETTINGS["template_range"],
        description="longest range() a template may build",
    )
    flow_steps: int = Field(
        LIMITS.flow_steps,
        gt=0,
        validation_alias=LIMIT_SETTINGS["flow_steps"],
        description="steps in one flow, nested ones included",
    )
    flow_depth: int = Field(
        LIMITS.flow_depth,
        gt=0,
        validation_alias=LIMIT_SETTINGS["flow_depth"],
        description="how deeply steps may nest",
    )
    document_depth: int = Field(
        LIMITS.document_depth,
        gt=0,
        validation_alias=LIMIT_SETTINGS["document_depth"],
        description="how deeply a YAML / JSON value of a flow may nest",
    )
    flow_bytes: int = Field(
        LIMITS.flow_bytes,
        gt=0,
        validation_alias=LIMIT_SETTINGS["flow_bytes"],
        description="size of a flow file or posted flow document",
    )
    # `llmflow serve` (llmflow.server.config.ServerConfig, docs/service.md, docs/security.md)
    disable_worker: bool = Field(
        False, validation_alias="DISABLE_WORKER", description="no in-process worker (Agent Runner's name)"
    )
    worker_check_interval: float = Field(
        1.0,
        ge=0,
        validation_alias="WORKER_CHECK_INTERVAL",
        description="seconds between queue polls of a worker (Agent Runner's name)",
    )
    api_token: str | None = Field(
        None,
        validation_alias="LLMFLOW_API_TOKEN",
        description="bearer token every route but /health asks for",
    )
    cors_origins: str | None = Field(
        None,
        validation_alias=AliasChoices("LLMFLOW_CORS_ORIGINS", "CORS_ORIGINS"),
        description="comma-separated browser origins that may call the API; empty closes it",
    )
    projects_root: Path | None = Field(
        None,
        validation_alias="LLMFLOW_PROJECTS_ROOT",
        description="projects a request names must be inside it (needed off loopback)",
    )
    max_body_bytes: int = Field(
        1_048_576, gt=0, validation_alias="LLMFLOW_MAX_BODY_BYTES", description="largest request body"
    )
    max_frame_bytes: int = Field(
        1_048_576, gt=0, validation_alias="LLMFLOW_MAX_FRAME_BYTES", description="largest WebSocket message"
    )
    sse_keepalive: float = Field(
        15.0,
        gt=0,
        validation_alias="LLMFLOW_SSE_KEEPALIVE",
        description="seconds between ': keepalive' comments on event streams",
    )
    server_allow_shell: bool = Field(
        False,
        validation_alias="LLMFLOW_SERVER_ALLOW_SHELL",
        description="flow documents posted over the API may run shell and code steps",
    )
    metrics_public: bool = Field(
        False,
        validation_alias="LLMFLOW_METRICS_PUBLIC",
        description="/metrics answers without the API token",
    )
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

    @field_validator("api_token")
    @classmethod
    def _stripped(cls, v: str | None) -> str | None:
        return (v or "").strip() or None

    def limits(self) -> Limits:
        """The limits these settings give the runs of this process."""
        return Limits(**{name: getattr(self, name) for name in LIMIT_SETTINGS})

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
        home, how = resolve_home(env, home)
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
# set but empty says something (no origin may call the API): every other blank value is unset
_EMPTY_MEANS_NONE = {"llmflow_cors_origins", "cors_origins"}


class _MappingSource(EnvSettingsSource):
    """pydantic-settings' environment source over a given mapping instead of ``os.environ``."""

    def __init__(self, settings_cls: type[BaseSettings], env: Mapping[str, str]) -> None:
        self._mapping = env
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {
            k.lower(): v
            for k, v in self._mapping.items()
            if (v.strip() or k.lower() in _EMPTY_MEANS_NONE) and k.lower() not in _DERIVED
        }


def _settings_error(exc: ValidationError, env: Mapping[str, str]) -> Exception:
    """The first bad setting, named as the variable it came from, with the fix."""
    from llmflow.errors import SettingsError

    err = exc.errors()[0]
    name = str(err["loc"][0]) if err["loc"] else "?"
    field = Settings.model_fields.get(name)
    alias = field.validation_alias if field is not None else None
    if isinstance(alias, AliasChoices):  # the first of its names that is set
        alias = next((str(a) for a in alias.choices if str(a) in env), str(alias.choices[0]))
    # loc is the variable's name when the field has one (an alias), else the field's name
    key = alias if isinstance(alias, str) else name if field is None else PREFIX + name.upper()
    raw: Any = env.get(key, err.get("input"))
    return SettingsError(
        f"{key}={raw!r}: {err['msg'].lower()}",
        hint=f"unset {key} or give it a valid value",
    )
