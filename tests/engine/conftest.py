from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.server.helpers import pg_schema

from llmflow.runtime import Runtime, build_runtime


@pytest.fixture
def runtime(tmp_path: Path) -> Runtime:
    env = {"LLMFLOW_MODEL": "fake:", "LLMFLOW_BLOCK_REAL_MODELS": "1"}
    rt = build_runtime(env=env, home=tmp_path)
    yield rt
    rt.close()


@pytest.fixture(params=["sqlite", "postgres"])
def store_env(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """The store a killed process and the one that resumes its runs share: the home's SQLite
    file, or a Postgres schema of its own (environment variables to add)."""
    if request.param == "sqlite":
        yield {}
    else:
        with pg_schema() as url:
            yield {"LLMFLOW_DATABASE_URL": url}
