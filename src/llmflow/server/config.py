"""Server settings: what `llmflow serve` adds to the process settings.

Built from the typed process settings (:meth:`ServerConfig.from_settings`: ``LLMFLOW_API_TOKEN``,
``LLMFLOW_CORS_ORIGINS``... are fields of :class:`llmflow.settings.Settings`) by the
composition root (``create_app`` / ``serve``), never on import. Command-line flags win over
the environment.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmflow.settings import Settings

LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})
# Agent Runner's console origins (its CORS_ORIGINS default): its console works unchanged
AGENT_RUNNER_ORIGINS = ("http://localhost:3001", "http://127.0.0.1:3001")


def _default(setting: str) -> Any:
    """The default of a setting, written once in :class:`Settings`."""
    return Settings.model_fields[setting].default


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost: addresses no other machine can reach."""
    h = host.strip().strip("[]").lower()
    if h in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    config_dir: Path | None = None  # flows by name: <config_dir>/flows/*.yaml (default ./conf)
    flows: list[str] = field(default_factory=list)  # extra flows: names or paths
    flows_only: bool = False  # serve exactly `flows` (serve --flows): nothing else, no built-ins unless named
    workers: int = 8  # runs the in-process worker executes at once; 0 = no in-process worker
    worker_enabled: bool = True  # DISABLE_WORKER=1 turns it off
    check_interval: float = _default(
        "worker_check_interval"
    )  # WORKER_CHECK_INTERVAL: seconds between queue polls
    allow_shell: bool = False  # may flow documents posted over the API run shell / code steps?
    api_token: str | None = None  # LLMFLOW_API_TOKEN: bearer token for every route but /health
    # LLMFLOW_CORS_ORIGINS (or Agent Runner's CORS_ORIGINS): browser origins that may call the
    # API, and the only cross-site origins whose requests may change anything (CSRF)
    cors_origins: list[str] = field(default_factory=lambda: list(AGENT_RUNNER_ORIGINS))
    projects_root: Path | None = (
        None  # LLMFLOW_PROJECTS_ROOT: projects must be inside it (needed off loopback)
    )
    max_body_bytes: int = _default("max_body_bytes")  # LLMFLOW_MAX_BODY_BYTES
    max_frame_bytes: int = _default("max_frame_bytes")  # LLMFLOW_MAX_FRAME_BYTES: largest WebSocket message
    sse_keepalive: float = _default(
        "sse_keepalive"
    )  # LLMFLOW_SSE_KEEPALIVE: seconds between ': keepalive' comments
    poll_interval: float = 0.5  # how often streams look for events written by other processes
    wait_timeout: float = 600.0  # longest `wait=true` request, seconds
    session_timeout: float = 3600.0  # Buttermilk sessions expire after this long idle
    max_sessions: int = 1000
    max_frames: int = 10_000  # per-session WebSocket frame buffer

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: object) -> ServerConfig:
        """The process settings (environment) first, then the given (command-line) values
        that are not None."""
        cfg = cls(
            worker_enabled=not settings.disable_worker,
            check_interval=settings.worker_check_interval,
            allow_shell=settings.server_allow_shell,
            api_token=settings.api_token,
            projects_root=settings.projects_root.expanduser() if settings.projects_root else None,
            max_body_bytes=settings.max_body_bytes,
            max_frame_bytes=settings.max_frame_bytes,
            sse_keepalive=settings.sse_keepalive,
        )
        if settings.cors_origins is not None:
            cfg.cors_origins = [o.strip().rstrip("/") for o in settings.cors_origins.split(",") if o.strip()]
        for key, value in overrides.items():
            if value is None:
                continue
            if not hasattr(cfg, key):
                raise TypeError(f"ServerConfig has no field {key!r}")
            setattr(cfg, key, value)
        if cfg.workers <= 0:
            cfg.worker_enabled = False
        return cfg

    @classmethod
    def from_env(cls, env: Mapping[str, str], **overrides: object) -> ServerConfig:
        """:meth:`from_settings` of the settings ``env`` gives (a bad value: SettingsError)."""
        return cls.from_settings(Settings.from_env(env), **overrides)

    def resolved_config_dir(self, settings: Settings) -> Path:
        return Path(self.config_dir or settings.config_dir or "conf").expanduser().resolve()

    def resolved_projects_root(self) -> Path | None:
        return Path(self.projects_root).expanduser().resolve() if self.projects_root else None

    def security_problem(self) -> str | None:
        """Why this configuration must not start, or None."""
        if not is_loopback(self.host) and not self.api_token:
            return (
                f"refusing to listen on {self.host}, which other machines can reach, without a token; "
                "set LLMFLOW_API_TOKEN (clients send 'Authorization: Bearer <token>') or bind 127.0.0.1"
            )
        return None
