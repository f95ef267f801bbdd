"""Fixtures for the server tests. Every test gets its own LLMFLOW_HOME, the fake model and
real models blocked; the app is built from explicit settings, never from os.environ."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from llmflow.server.app import create_app
from llmflow.server.config import ServerConfig
from llmflow.settings import Settings

from .helpers import EXAMPLES, LiveServer, base_env, pg_schema


@pytest.fixture
def home(tmp_path: Path) -> Path:
    h = tmp_path / "home"
    h.mkdir()
    return h


@pytest.fixture(params=["sqlite"])
def database_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """SQLite by default; tests that also run on Postgres parametrize this fixture."""
    if request.param == "postgres":
        with pg_schema() as url:
            yield url
    else:
        yield None


@pytest.fixture
def make_app(home: Path, database_url: str | None) -> Callable[..., Any]:
    """make_app(env={...}, **ServerConfig fields) -> a FastAPI app on an isolated home."""

    def make(env: dict[str, str] | None = None, **config: Any) -> Any:
        e = base_env(home, **(env or {}))
        if database_url:
            e["LLMFLOW_DATABASE_URL"] = database_url
        settings = Settings.from_env(e)
        config.setdefault(
            "flows", [str(EXAMPLES / "review"), str(EXAMPLES / "hello"), str(EXAMPLES / "panel")]
        )
        config.setdefault("config_dir", home / "conf")
        cfg = ServerConfig.from_env(e, **config)
        return create_app(settings, cfg)

    return make


@pytest.fixture
def client(make_app: Callable[..., Any]) -> Iterator[TestClient]:
    with TestClient(make_app()) as c:
        yield c


@pytest.fixture
def live(make_app: Callable[..., Any]) -> Iterator[LiveServer]:
    with LiveServer(make_app()) as server:
        yield server
