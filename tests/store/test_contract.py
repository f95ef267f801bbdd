"""Run the store contract against every backend, plus the factory's URL handling.

Postgres: ``postgresql://postgres@127.0.0.1:5432/test`` unless ``LLMFLOW_TEST_POSTGRES_URL``
says otherwise; each test gets its own schema. An unreachable server skips those tests
locally and fails them in CI (``CI`` set).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llmflow.errors import StoreError
from llmflow.store.factory import open_store
from llmflow.store.memory import MemoryStore
from llmflow.store.sqlite import SqliteStore

from .contract import MultiProcessContract, StoreContract

PG_URL = os.environ.get("LLMFLOW_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


class TestMemoryStore(StoreContract):
    @pytest.fixture
    def store_factory(self) -> Iterator[Any]:
        store = MemoryStore()
        yield lambda: store


class TestSqliteStore(StoreContract, MultiProcessContract):
    @pytest.fixture
    def store_url(self, tmp_path: Path) -> str:
        return f"sqlite:///{tmp_path / 'data' / 'llmflow.db'}"

    @pytest.fixture
    def store_factory(self, store_url: str) -> Iterator[Any]:
        yield from opening(store_url)

    def test_the_file_is_in_wal_mode_and_its_directory_is_created(self, tmp_path: Path) -> None:
        store = SqliteStore(tmp_path / "a" / "b" / "x.db")
        store.migrate()
        try:
            assert (tmp_path / "a" / "b" / "x.db").exists()
            assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert store._db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        finally:
            store.close()

    def test_a_closed_store_says_so(self, tmp_path: Path) -> None:
        store = open_store(str(tmp_path / "x.db"))
        store.close()
        store.close()
        with pytest.raises(StoreError, match="closed"):
            store.get_run("r1")


# --- postgres ------------------------------------------------------------------------------

_pg_problem: list[str] = []  # cached reason the server is unusable (checked once)


def _pg_admin() -> Any:
    try:
        import psycopg
    except ImportError:
        _fail_or_skip("psycopg is not installed (pip install 'llmflow[postgres]')")
    if _pg_problem:
        _fail_or_skip(_pg_problem[0])
    try:
        return psycopg.connect(PG_URL, autocommit=True, connect_timeout=3)
    except psycopg.Error as exc:
        shown = re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", PG_URL)  # never print a password
        _pg_problem.append(f"Postgres test server {shown} is unreachable: {exc}".strip())
        _fail_or_skip(_pg_problem[0])


def _fail_or_skip(reason: str) -> Any:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so this fails instead of skipping)")
    pytest.skip(f"{reason}; set LLMFLOW_TEST_POSTGRES_URL to run the Postgres contract")


def _with_search_path(url: str, schema: str) -> str:
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options=-csearch_path%3D{schema}"


def opening(store_url: str) -> Iterator[Any]:
    """A store factory on ``store_url`` (each call opens one more handle: another process's
    view), closing every handle it opened afterwards (the body of a fixture)."""
    opened: list[Any] = []

    def make() -> Any:
        opened.append(open_store(store_url))
        return opened[-1]

    yield make
    for s in opened:
        s.close()


def pg_schema_url() -> Iterator[str]:
    """A store URL on a schema of its own, dropped afterwards (the body of a fixture)."""
    admin = _pg_admin()
    schema = f"llmflow_test_{uuid.uuid4().hex[:12]}"
    admin.execute(f"CREATE SCHEMA {schema}")
    try:
        yield _with_search_path(PG_URL, schema)
    finally:
        admin.execute(f"DROP SCHEMA {schema} CASCADE")
        admin.close()


class TestPostgresStore(StoreContract, MultiProcessContract):
    @pytest.fixture
    def store_url(self) -> Iterator[str]:
        yield from pg_schema_url()

    @pytest.fixture
    def store_factory(self, store_url: str) -> Iterator[Any]:
        yield from opening(store_url)


# --- the factory ---------------------------------------------------------------------------


def test_open_store_defaults_to_sqlite_in_the_project_dir(tmp_path: Path) -> None:
    store = open_store(None, project_dir=tmp_path)
    try:
        assert isinstance(store, SqliteStore)
        assert Path(store.path) == (tmp_path / ".llmflow" / "llmflow.db").resolve()
        assert (tmp_path / ".llmflow" / "llmflow.db").exists()
        assert store.list_runs() == []  # migrated
    finally:
        store.close()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///rel/db.sqlite", "project/rel/db.sqlite"),  # relative to the project dir
        ("rel/bare.db", "project/rel/bare.db"),
        ("sqlite:///{tmp}/abs/abs.db", "abs/abs.db"),  # sqlite:////abs once {tmp} is filled in
        ("{tmp}/abs/bare.db", "abs/bare.db"),
    ],
)
def test_open_store_sqlite_url_forms(tmp_path: Path, url: str, expected: str) -> None:
    store = open_store(url.format(tmp=tmp_path), project_dir=tmp_path / "project")
    try:
        assert isinstance(store, SqliteStore)
        assert Path(store.path) == (tmp_path / expected).resolve()
        again = open_store(store.url)  # the store's own URL reopens the same file
        assert Path(again.path) == Path(store.path)
        again.close()
    finally:
        store.close()


def test_open_store_memory_and_in_memory_sqlite() -> None:
    assert isinstance(open_store("memory://"), MemoryStore)
    s = open_store("sqlite://")
    try:
        assert isinstance(s, SqliteStore) and s.list_runs() == []
    finally:
        s.close()


@pytest.mark.parametrize("url", ["mysql://user:secret@db/x", "redis://localhost", "sqlite:relative.db"])
def test_open_store_rejects_unknown_forms_naming_the_accepted_ones(url: str) -> None:
    with pytest.raises(StoreError) as info:
        open_store(url)
    msg = str(info.value)
    assert "secret" not in msg
    assert "sqlite:///" in msg
    if "mysql" in url:
        assert "mysql://user:***@db/x" in msg and "postgresql://" in msg and "memory://" in msg


def test_open_store_reads_no_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LLMFLOW_DATABASE_URL", "memory://")
    store = open_store(None, project_dir=tmp_path)
    try:
        assert isinstance(store, SqliteStore)
    finally:
        store.close()


def test_importing_the_postgres_module_does_not_import_psycopg() -> None:
    code = "import sys, llmflow.store.postgres, llmflow.store.factory; assert 'psycopg' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_without_psycopg_the_postgres_store_names_the_install_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # makes `import psycopg` raise ImportError
    with pytest.raises(StoreError, match=r"pip install 'llmflow\[postgres\]'"):
        open_store("postgresql://nobody@127.0.0.1:1/none")
