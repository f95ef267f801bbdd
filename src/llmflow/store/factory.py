"""Open a store from a URL.

Accepted forms::

    None                          sqlite at <project_dir or cwd>/.llmflow/llmflow.db
    memory://                     in-process only, nothing survives the process
    sqlite:///relative/path.db    relative to project_dir (or cwd)
    sqlite:////abs/path.db        absolute
    sqlite:///path.db?synchronous=full   fsync every commit: durable across a power loss
                                  too (the default, normal, is durable across a crash)
    sqlite://                     a private in-memory SQLite database
    path/to/file.db               a bare filesystem path (relative as above)
    postgresql://user@host/db     also postgres://, postgresql+psycopg://

This module reads no environment variables: the caller passes ``LLMFLOW_DATABASE_URL``.
"""

from __future__ import annotations

import re
from pathlib import Path

from llmflow.errors import StoreError
from llmflow.store.base import Store

DEFAULT_DB = Path(".llmflow") / "llmflow.db"
ACCEPTED = (
    "memory://, sqlite:///relative/path.db, sqlite:////absolute/path.db, a bare file path, "
    "postgresql://user:password@host:5432/dbname (or postgres://)"
)
_PG_SCHEMES = ("postgresql://", "postgres://", "postgresql+psycopg://")


def _redact(url: str) -> str:
    """Hide a password in an error message: scheme://user:***@host."""
    return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", url)


def _sqlite_path(raw: str, base: Path) -> Path | str:
    if raw == ":memory:":
        return raw
    p = Path(raw).expanduser()
    return p if p.is_absolute() else base / p


def _sqlite_options(rest: str, url: str) -> tuple[str, str]:
    """The path of a sqlite URL and its one option, ``?synchronous=`` (normal by default)."""
    if "?" not in rest:
        return rest, "normal"
    from urllib.parse import parse_qsl

    path, query = rest.split("?", 1)
    synchronous = "normal"
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key != "synchronous":
            raise StoreError(
                f"cannot open the store {_redact(url)!r}: unknown option {key!r}",
                hint="a sqlite URL accepts one option: ?synchronous=normal (the default) or ?synchronous=full",
            )
        synchronous = value
    return path, synchronous


def open_store(url: str | None, project_dir: Path | None = None) -> Store:
    """Open (and migrate) the store ``url`` names; see the module docstring for the forms."""
    base = Path(project_dir) if project_dir is not None else Path.cwd()
    store: Store
    if url is None or url.strip() == "":
        from llmflow.store.sqlite import SqliteStore

        store = SqliteStore(base / DEFAULT_DB)
    elif url == "memory://" or url == "memory:":
        from llmflow.store.memory import MemoryStore

        store = MemoryStore()
    elif url.startswith("sqlite:"):
        rest = url[len("sqlite://") :] if url.startswith("sqlite://") else ""
        if url == "sqlite://":  # an in-memory database, as in SQLAlchemy
            rest = "/:memory:"
        if not rest.startswith("/") or rest == "/":
            raise StoreError(
                f"cannot open the store {_redact(url)!r}: a sqlite URL has three slashes before a relative "
                f"path (sqlite:///data/llmflow.db) and four before an absolute one (sqlite:////srv/llmflow.db)"
            )
        from llmflow.store.sqlite import SqliteStore

        rest, synchronous = _sqlite_options(rest, url)
        store = SqliteStore(_sqlite_path(rest[1:], base), synchronous=synchronous)
    elif url.startswith(_PG_SCHEMES):
        from llmflow.store.postgres import PostgresStore

        store = PostgresStore(url.replace("postgresql+psycopg://", "postgresql://", 1))
    elif "://" in url:
        raise StoreError(
            f"cannot open the store {_redact(url)!r}: unknown scheme; accepted forms are {ACCEPTED}"
        )
    else:
        from llmflow.store.sqlite import SqliteStore

        store = SqliteStore(_sqlite_path(url, base))
    try:
        store.migrate()
    except BaseException:
        store.close()
        raise
    return store
