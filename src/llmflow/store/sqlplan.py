"""What one ``append`` writes, as SQL: shared by the SQLite and Postgres stores.

:class:`AppendPlan` turns a batch of new events into their INSERT parameters (each payload
serialised once), one UPDATE of the run row (:class:`RunUpdate`) and one statement per
step / attempt / artifact row the batch touches (the projections, folded first: see
:class:`_MergedProjection`). Statements are built once per shape and kept in the store's
cache, so the driver keeps them prepared. The dialects differ only in the placeholder.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from llmflow.engine.events import Event, NewEvent
from llmflow.engine.payloads import Payload, as_dict
from llmflow.store.projection import project

ARTIFACT_COLUMNS = "run_id, path, size, sha256, step_id, attempt, created_at, mime"

# Same output as json.dumps(value, default=str), without building an encoder per call.
_encode = json.JSONEncoder(default=str).encode
_set = object.__setattr__


def dumps(value: Any) -> str:
    return _encode(value)


def dumps_nullable(value: Any) -> str | None:
    return None if value is None else _encode(value)


class RunUpdate:
    """The run-row changes of one ``append`` batch, folded into a single UPDATE.

    Costs are added one by one in SQL (``cost = ((cost + ?) + ?)``) so the float sum is
    bit-for-bit the one the memory store computes.
    """

    __slots__ = ("set", "started_at", "tokens_in", "tokens_out", "costs")

    def __init__(self) -> None:
        self.set: dict[str, Any] = {}
        self.started_at: float | None = None
        self.tokens_in = 0
        self.tokens_out = 0
        self.costs: list[float] = []

    def add(self, run_ops: dict[str, Any], run_add: dict[str, float]) -> None:
        for k, v in run_ops.items():
            if k == "started_at_if_null":
                if self.started_at is None:
                    self.started_at = v
            elif k != "last_seq":  # assigned by the UPDATE itself
                self.set[k] = dumps_nullable(v) if k == "outputs" else v
        if run_add:
            self.tokens_in += int(run_add["tokens_in"])
            self.tokens_out += int(run_add["tokens_out"])
            self.costs.append(run_add["cost"])

    def sql(
        self, last_seq: int, run_id: str, ph: str, cache: dict[Any, str], expect: int | None = None
    ) -> tuple[str, list[Any]]:
        """The UPDATE; with ``expect`` it only matches while ``last_seq`` is still that value."""
        cols = tuple(sorted(self.set))
        key = ("runs", cols, self.started_at is not None, len(self.costs), expect is None)
        text = cache.get(key)
        if text is None:
            parts = [f"last_seq = {ph}"] + [f"{c} = {ph}" for c in cols]
            if self.started_at is not None:
                parts.append(f"started_at = COALESCE(started_at, {ph})")
            if self.costs:
                cost = "cost"
                for _ in self.costs:
                    cost = f"({cost} + {ph})"
                parts.append(f"tokens_in = tokens_in + {ph}, tokens_out = tokens_out + {ph}, cost = {cost}")
            where = f"id = {ph}" if expect is None else f"id = {ph} AND last_seq = {ph}"
            text = cache[key] = f"UPDATE runs SET {', '.join(parts)} WHERE {where}"
        params = [last_seq, *(self.set[c] for c in cols)]
        if self.started_at is not None:
            params.append(self.started_at)
        if self.costs:
            params += [self.tokens_in, self.tokens_out, *self.costs]
        params.append(run_id)
        if expect is not None:
            params.append(expect)
        return text, params


def upsert_sql(
    table: str, keys: tuple[str, ...], cols: tuple[str, ...], ph: str, added: tuple[str, ...] = ()
) -> str:
    """INSERT ... ON CONFLICT DO UPDATE: ``cols`` are set, ``added`` columns are added to."""
    allc = keys + cols + added
    sets = [f"{c} = excluded.{c}" for c in cols] + [f"{c} = {table}.{c} + excluded.{c}" for c in added]
    return (
        f"INSERT INTO {table} ({', '.join(allc)}) VALUES ({', '.join([ph] * len(allc))}) "
        f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {', '.join(sets)}"
    )


_USAGE = ("tokens_in", "tokens_out", "cost")
_ATTEMPT_KEYS = ("run_id", "step_id", "unit", "attempt")


class AppendPlan:
    """Everything one ``append`` writes, given the run's next sequence number: the events,
    their INSERT parameters, the run UPDATE and the step / attempt / artifact statements."""

    __slots__ = ("run_id", "events", "rows", "run", "writes")

    def __init__(
        self, run_id: str, events: list[NewEvent], now: float, first_seq: int, ph: str, cache: dict[Any, str]
    ) -> None:
        self.run_id = run_id
        self.events: list[Event] = []
        self.rows: list[Any] = []  # flat INSERT parameters, ROW_WIDTH per event
        self.run = RunUpdate()
        self.writes: list[tuple[str, list[Any]]] = []
        merged = _MergedProjection()
        seq = first_seq
        for ne in events:
            type_ = str(ne.type)
            p = ne.payload
            version = 1
            if type(p) is not dict:
                if isinstance(p, Payload):
                    version = p.SCHEMA_VERSION
                p = as_dict(p)
            e = Event(run_id, seq, type_, now, ne.message, ne.step_id, ne.unit, ne.attempt, p, None, version)
            payload = _encode(p) if p else "{}"  # serialised once, here
            self.rows.extend(
                (run_id, seq, type_, now, ne.message, ne.step_id, ne.unit, ne.attempt, payload, version)
            )
            ops = project(e)
            self.run.add(ops.run, ops.run_add)
            if ops.step or ops.attempt or ops.attempt_add or ops.artifact:
                merged.add(ops)
            self.events.append(e)
            seq += 1
        if merged.any:
            self.writes.extend(merged.writes(run_id, ph, cache))

    def with_ids(self, ids: list[int]) -> list[Event]:
        # The ids exist only once the rows are inserted. Nobody has seen these events yet,
        # so setting the field past ``frozen`` here is safe and saves building them twice.
        for e, id_ in zip(self.events, ids, strict=True):
            _set(e, "id", id_)
        return self.events


class _MergedProjection:
    """The step / attempt / artifact changes of one append, one statement per row: the
    events of a batch often touch the same attempt and step several times (started,
    model chosen, usage, completed), and only the final values need writing."""

    __slots__ = ("steps", "attempts", "adds", "artifacts", "any")

    def __init__(self) -> None:
        self.steps: dict[str, dict[str, Any]] = {}
        self.attempts: dict[tuple[str, str, int], list[Any]] = {}  # key -> [fields, insert?]
        self.adds: dict[tuple[str, str, int], dict[str, float]] = {}
        self.artifacts: list[dict[str, Any]] = []
        self.any = False

    def add(self, ops: Any) -> None:
        self.any = True
        if ops.step:
            sid, f = ops.step
            step = self.steps.get(sid)
            if step is None:
                self.steps[sid] = dict(f)
            else:
                step.update(f)
        if ops.attempt:
            key, f, insert = ops.attempt
            attempt = self.attempts.get(key)
            if attempt is None:
                self.attempts[key] = [dict(f), insert]
            else:
                attempt[0].update(f)
                if insert is not None:
                    attempt[1] = bool(attempt[1]) or insert
        if ops.attempt_add:
            akey, add = ops.attempt_add
            usage = self.adds.get(akey)
            if usage is None:
                self.adds[akey] = dict(add)
            else:
                for k, v in add.items():
                    usage[k] = usage.get(k, 0) + v
        if ops.artifact:
            self.artifacts.append(ops.artifact)

    def writes(self, run_id: str, ph: str, cache: dict[Any, str]) -> Iterator[tuple[str, list[Any]]]:
        for sid, f in self.steps.items():
            cols = tuple(f)
            ckey = ("steps", cols)
            sql = cache.get(ckey) or cache.setdefault(
                ckey, upsert_sql("steps", ("run_id", "step_id"), cols, ph)
            )
            yield sql, [run_id, sid, *(dumps_nullable(f[c]) if c == "output" else f[c] for c in cols)]
        adds = self.adds
        for key, (f, insert) in self.attempts.items():
            # usage of an attempt this append also writes goes into the same statement
            yield _attempt_write(run_id, key, f, insert, adds.pop(key, None) if adds else None, ph, cache)
        for key, add in adds.items():  # usage of an attempt written by an earlier append
            yield _attempt_write(run_id, key, {}, None, add, ph, cache)
        for a in self.artifacts:
            sql = f"INSERT INTO artifacts ({ARTIFACT_COLUMNS}) VALUES ({', '.join([ph] * 8)})"
            params = [run_id, a["path"], a["size"], a["sha256"], a["step_id"], a["attempt"], a["created_at"]]
            yield sql, [*params, a["mime"]]


def _attempt_write(
    run_id: str,
    key: tuple[str, str, int],
    f: dict[str, Any],
    insert: bool | None,
    add: dict[str, float] | None,
    ph: str,
    cache: dict[Any, str],
) -> tuple[str, list[Any]]:
    """One attempt row's statement: an upsert, or (``insert`` None) an update of a row that
    exists (no NOT NULL check on a new row); ``add``: usage to add to its totals."""
    sid, unit, n = key
    cols = tuple(f)
    vals = [dumps_nullable(f[c]) if c in ("output", "info") else f[c] for c in cols]
    added = _USAGE if add else ()
    if add:
        vals += [int(add["tokens_in"]), int(add["tokens_out"]), add["cost"]]
    if insert is not None:
        ckey = ("attempts", cols, bool(add))
        sql = cache.get(ckey) or cache.setdefault(
            ckey, upsert_sql("attempts", _ATTEMPT_KEYS, cols, ph, added)
        )
        return sql, [run_id, sid, unit, n, *vals]
    ckey = ("attempts-update", cols, bool(add))
    text = cache.get(ckey)
    if text is None:
        sets = [f"{c} = {ph}" for c in cols] + [f"{c} = {c} + {ph}" for c in added]
        where = " AND ".join(f"{c} = {ph}" for c in _ATTEMPT_KEYS)
        text = cache[ckey] = f"UPDATE attempts SET {', '.join(sets)} WHERE {where}"
    return text, [*vals, run_id, sid, unit, n]


def grouped_writes(plans: list[AppendPlan | None]) -> list[tuple[str, list[list[Any]]]]:
    """The projection statements of a group commit's plans: (SQL, parameter lists) in order.
    A plan touches each row once, so when the plans' runs differ no two statements touch
    one row, and statements of one text run together (``executemany``); otherwise one by one."""
    live = [p for p in plans if p is not None]
    if len({p.run_id for p in live}) < len(live):
        return [(sql, [params]) for p in live for sql, params in p.writes]
    grouped: dict[str, list[list[Any]]] = {}
    for p in live:
        for sql, params in p.writes:
            grouped.setdefault(sql, []).append(params)
    return list(grouped.items())


EVENT_INSERT_CHUNK = 32  # rows per multi-row INSERT (bounds the statement cache)
ROW_WIDTH = 10  # INSERT parameters per event


def insert_events_sql(
    n: int, ph: str, cache: dict[Any, str], payload_cast: str = "", suffix: str = ""
) -> str:
    key = ("events", n)
    text = cache.get(key)
    if text is None:
        row = "(" + ", ".join([ph] * 8 + [ph + payload_cast, ph]) + ")"
        text = cache[key] = (
            "INSERT INTO events (run_id, seq, type, ts, message, step_id, unit, attempt, payload, schema_version) VALUES "
            + ", ".join([row] * n)
            + suffix
        )
    return text
