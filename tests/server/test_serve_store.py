"""`llmflow serve` and `llmflow worker` with a store that cannot be opened stop at once with
the store's error and its fix, the password hidden: never the traceback Uvicorn prints when
an application's startup fails."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from .helpers import PG_URL


def _llmflow(args: list[str], home: Path, url: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMFLOW_")}
    env.update(LLMFLOW_HOME=str(home), LLMFLOW_DATABASE_URL=url, LLMFLOW_BLOCK_REAL_MODELS="1")
    return subprocess.run(
        [sys.executable, "-m", "llmflow", *args],
        env=env,
        cwd=home,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _with_password(url: str, password: str) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc
    user, _, host = netloc.rpartition("@")
    return urlunsplit(parts._replace(netloc=f"{user.split(':')[0]}:{password}@{host}"))


@pytest.mark.parametrize("command", [["serve", "--port", "0"], ["worker"]])
def test_a_postgres_schema_that_does_not_exist(tmp_path: Path, command: list[str]) -> None:
    pytest.importorskip("psycopg")
    url = _with_password(PG_URL, "s3cret-pw") + "?options=-csearch_path%3Dno_such_schema_here"
    p = _llmflow(command, tmp_path, url)
    assert p.returncode == 1, p.stderr
    assert "cannot migrate the Postgres store" in p.stderr and "no schema has been selected" in p.stderr
    assert "hint: the database and the schema its search_path names must exist" in p.stderr
    assert "Traceback" not in p.stderr and "s3cret-pw" not in p.stderr and ":***@" in p.stderr


def test_a_sqlite_file_that_cannot_be_created(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("a file where the database's directory should be")
    p = _llmflow(["serve", "--port", "0"], tmp_path, f"sqlite:///{tmp_path}/blocker/llmflow.db")
    assert p.returncode == 1, p.stderr
    assert "cannot create the directory for the database" in p.stderr and "Traceback" not in p.stderr
