"""Rows of the SQL stores and the records they map to: column lists, decoding, filters.

Shared by the SQLite and Postgres stores (:mod:`llmflow.store.sql`). JSON columns come
back as text from SQLite and decoded from Postgres' JSONB; the mapping accepts both.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import fields
from typing import Any

from llmflow.engine.events import Event
from llmflow.store.base import AttemptRow, RunRecord
from llmflow.store.sqlplan import dumps, dumps_nullable

RECORD_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(RunRecord))
# the runs table: RunRecord's fields in order, with spec_id (a key into specs) in spec's place
RUN_COLUMNS: tuple[str, ...] = tuple("spec_id" if c == "spec" else c for c in RECORD_FIELDS)
RUN_JSON_COLUMNS = frozenset({"inputs", "outputs", "options", "metadata"})
SPEC_INDEX = RUN_COLUMNS.index("spec_id")
EVENT_COLUMNS = "id, run_id, seq, type, ts, message, step_id, unit, attempt, payload, schema_version"
ATTEMPT_COLUMNS = "run_id, step_id, unit, attempt, status, started_at, ended_at, output, error, model, tokens_in, tokens_out, cost, info"
STEP_FIELDS = ("status", "output", "error", "started_at", "ended_at")
RUN_SELECT = "SELECT " + ", ".join(RUN_COLUMNS) + " FROM runs"
_JSON_INDEXES = tuple(i for i, c in enumerate(RUN_COLUMNS) if c in RUN_JSON_COLUMNS)


def loads_json(text: Any) -> Any:
    """SQLite gives JSON columns back as text; psycopg has already decoded JSONB."""
    return json.loads(text) if isinstance(text, str) else text


def spec_key(text: str) -> str:
    """The fingerprint of a spec record's JSON text: the key of its ``specs`` row."""
    return "b2:" + hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def run_from_row(row: Any, spec: dict[str, Any]) -> RunRecord:
    values = list(row)
    for i in _JSON_INDEXES:
        if values[i] is not None:
            values[i] = loads_json(values[i])
    values[SPEC_INDEX] = spec
    return RunRecord(*values)


def check_run_fields(run_fields: dict[str, Any]) -> None:
    unknown = sorted(set(run_fields) - set(RECORD_FIELDS))
    if unknown:  # the same error dataclasses.replace gives the memory store
        raise TypeError(f"RunRecord has no field(s) {', '.join(unknown)}")


def event_from_row(row: Any) -> Event:
    id_, run_id, seq, type_, ts, message, step_id, unit, attempt, payload, version = row
    return Event(run_id, seq, type_, ts, message, step_id, unit, attempt, loads_json(payload), id_, version)


def attempt_from_row(row: Any) -> AttemptRow:
    values = list(row)
    values[7] = loads_json(values[7]) if values[7] is not None else None
    values[13] = loads_json(values[13]) if values[13] is not None else {}
    return AttemptRow(*values)


def step_row(row: Any) -> dict[str, Any]:
    status, output, error, started_at, ended_at = row
    return {
        "status": status,
        "output": loads_json(output) if output is not None else None,
        "error": error,
        "started_at": started_at,
        "ended_at": ended_at,
    }


def column_value(col: str, value: Any) -> Any:
    if col in RUN_JSON_COLUMNS:
        return dumps_nullable(value) if col == "outputs" else dumps(value)
    return value


def run_filters(
    flow: str | None,
    status: str | None,
    batch_id: str | None,
    project_id: int | None,
    parent_run_id: str | None,
    ph: str,
    in_batch: bool | None = None,
) -> tuple[str, list[Any]]:
    """WHERE clause with the memory store's semantics (empty strings do not filter;
    ``in_batch`` False: only runs of no batch, True: only batch runs)."""
    where: list[str] = []
    params: list[Any] = []
    if in_batch is not None:
        where.append("batch_id IS NOT NULL" if in_batch else "batch_id IS NULL")
    for col, val in (
        ("flow_name", flow),
        ("status", status),
        ("batch_id", batch_id),
        ("parent_run_id", parent_run_id),
    ):
        if val:
            where.append(f"{col} = {ph}")
            params.append(val)
    if project_id is not None:
        where.append(f"project_id = {ph}")
        params.append(project_id)
    return (" WHERE " + " AND ".join(where) if where else ""), params
