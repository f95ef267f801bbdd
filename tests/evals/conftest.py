"""Evaluation tests: the Postgres test server (a schema per test), a project with the fake model."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

PG_URL = os.environ.get("LLMFLOW_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def _fail_or_skip(reason: str) -> Any:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so this fails instead of skipping)")
    pytest.skip(f"{reason}; set LLMFLOW_TEST_POSTGRES_URL to run it")


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A Postgres URL whose search_path is a fresh schema, dropped afterwards."""
    try:
        import psycopg
    except ImportError:
        _fail_or_skip("psycopg is not installed (pip install 'llmflow[postgres]')")
    try:
        admin = psycopg.connect(PG_URL, autocommit=True, connect_timeout=3)
    except psycopg.Error as exc:
        shown = re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", PG_URL)  # never print a password
        _fail_or_skip(f"Postgres test server {shown} is unreachable: {exc}")
    schema = f"llmflow_test_{uuid.uuid4().hex[:12]}"
    admin.execute(f"CREATE SCHEMA {schema}")
    try:
        sep = "&" if "?" in PG_URL else "?"
        yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    finally:
        admin.execute(f"DROP SCHEMA {schema} CASCADE")
        admin.close()
