"""Evaluations in the store: the ``evals`` and ``eval_results`` tables.

An evaluation (``llmflow eval``) runs a flow over a dataset as a batch (its batch id is the
evaluation id) and scores every job's run. ``evals`` holds what the batch does not: the
metrics, the expected-value column, the thresholds, the status of the scoring and the
summary computed when it finished. ``eval_results`` holds one row per job (record x
variant), keyed by ``(eval_id, job_key)`` where ``job_key`` is the job's base run id: the
run that was scored, the run's ``last_seq`` when it was scored (so a re-run of the job is
scored again, and an unchanged run never is), the metric scores, pass/fail, the reason,
and the run's usage and latency (so the summary needs no second query).

Writing a result is an upsert on that key: a record is scored exactly once per run
outcome, however often an evaluation is resumed. The SQL is shared by SQLite and Postgres
(:class:`SqlEvals`); :class:`MemoryEvals` mirrors it for the memory store.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field, fields, replace
from typing import Any

from llmflow.errors import StoreError


@dataclass
class EvalRecord:
    id: str
    flow_name: str
    status: str = "RUNNING"  # RUNNING | COMPLETED | STOPPED
    created_at: float = 0.0
    updated_at: float = 0.0
    ended_at: float | None = None
    batch_id: str | None = None
    spec: dict[str, Any] = field(default_factory=dict)  # metrics, expected column, thresholds, source
    summary: dict[str, Any] = field(default_factory=dict)  # per-variant aggregates, once finished
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class EvalResult:
    eval_id: str
    job_key: str  # the job's base run id (a re-run job keeps its key)
    record_id: str
    variant: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)
    run_id: str = ""
    run_seq: int = 0  # the run's last_seq when scored
    status: str = ""  # the run's status
    score: float = 0.0  # mean of the metric scores
    passed: bool = False  # every metric passed
    scores: dict[str, Any] = field(default_factory=dict)  # metric -> {score, passed, reason, ...}
    reason: str | None = None
    expected: Any = None
    output: Any = None
    tokens: int = 0
    cost: float = 0.0
    latency: float | None = None
    created_at: float = 0.0


EVAL_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(EvalRecord))
RESULT_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(EvalResult))
_JSON = frozenset({"spec", "summary", "metadata", "parameters", "scores", "expected", "output"})


def _check(fields_: dict[str, Any]) -> None:
    unknown = sorted(set(fields_) - set(EVAL_COLUMNS) - {"id"})
    if unknown or "id" in fields_:
        raise TypeError(f"EvalRecord has no updatable field(s) {', '.join(unknown or ['id'])}")


class SqlEvals:
    """Evaluation methods for the SQL stores (``_read``, ``_batch_exec``, ``_ph`` and
    ``_json_cast`` come from the store, as for :class:`llmflow.store.batches.SqlBatches`)."""

    _ph = "?"
    _json_cast = ""

    def _batch_exec(self, sql: str, params: list[Any]) -> int:  # pragma: no cover - provided by the store
        raise NotImplementedError

    def _read(self, sql: str, params: Any = ()) -> list[Any]:  # pragma: no cover - provided by the store
        raise NotImplementedError

    def _evalue(self, col: str, v: Any) -> Any:
        if col == "passed":
            return 1 if v else 0
        return json.dumps(v, default=str) if col in _JSON else v

    def _eslot(self, col: str) -> str:
        return self._ph + (self._json_cast if col in _JSON else "")

    def _decode(self, columns: tuple[str, ...], row: Any) -> list[Any]:
        # JSON columns come back as text from SQLite, decoded from Postgres' JSONB (the
        # dialect that casts to JSONB), where a JSON string is already a str
        text_json = not self._json_cast
        vals = list(row)
        for i, c in enumerate(columns):
            if c in _JSON and text_json and isinstance(vals[i], str):
                vals[i] = json.loads(vals[i])
            elif c == "passed":
                vals[i] = bool(vals[i])
        return vals

    def create_eval(self, ev: EvalRecord) -> None:
        cols = ", ".join(EVAL_COLUMNS)
        slots = ", ".join(self._eslot(c) for c in EVAL_COLUMNS)
        sql = f"INSERT INTO evals ({cols}) VALUES ({slots}) ON CONFLICT (id) DO NOTHING"
        if self._batch_exec(sql, [self._evalue(c, getattr(ev, c)) for c in EVAL_COLUMNS]) != 1:
            raise StoreError(f"evaluation {ev.id} already exists")

    def get_eval(self, eval_id: str) -> EvalRecord | None:
        rows = self._read(f"SELECT {', '.join(EVAL_COLUMNS)} FROM evals WHERE id = {self._ph}", (eval_id,))
        return EvalRecord(*self._decode(EVAL_COLUMNS, rows[0])) if rows else None

    def list_evals(self, *, flow: str | None = None, limit: int = 50, offset: int = 0) -> list[EvalRecord]:
        ph = self._ph
        where, params = ("WHERE flow_name = " + ph, [flow]) if flow else ("", [])
        rows = self._read(
            f"SELECT {', '.join(EVAL_COLUMNS)} FROM evals {where} ORDER BY created_at DESC, id DESC LIMIT {ph} OFFSET {ph}",
            (*params, limit, offset),
        )
        return [EvalRecord(*self._decode(EVAL_COLUMNS, r)) for r in rows]

    def update_eval(self, eval_id: str, **eval_fields: Any) -> None:
        _check(eval_fields)
        cols = sorted(eval_fields)
        if cols:
            sets = ", ".join(f"{c} = {self._eslot(c)}" for c in cols)
            params = [self._evalue(c, eval_fields[c]) for c in cols] + [eval_id]
            found = self._batch_exec(f"UPDATE evals SET {sets} WHERE id = {self._ph}", params) > 0
        else:
            found = self.get_eval(eval_id) is not None
        if not found:
            raise StoreError(f"no evaluation {eval_id}")

    def put_eval_result(self, result: EvalResult) -> None:
        """Insert or replace the result of one job (the key is ``(eval_id, job_key)``)."""
        cols = ", ".join(RESULT_COLUMNS)
        slots = ", ".join(self._eslot(c) for c in RESULT_COLUMNS)
        keep = ("eval_id", "job_key")
        sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in RESULT_COLUMNS if c not in keep)
        sql = f"INSERT INTO eval_results ({cols}) VALUES ({slots}) ON CONFLICT (eval_id, job_key) DO UPDATE SET {sets}"
        self._batch_exec(sql, [self._evalue(c, getattr(result, c)) for c in RESULT_COLUMNS])

    def eval_results(self, eval_id: str) -> list[EvalResult]:
        rows = self._read(
            f"SELECT {', '.join(RESULT_COLUMNS)} FROM eval_results WHERE eval_id = {self._ph} ORDER BY record_id, variant, job_key",
            (eval_id,),
        )
        return [EvalResult(*self._decode(RESULT_COLUMNS, r)) for r in rows]

    def record_scores(self, flow: str, record_id: str, *, scope: str | None = None) -> list[EvalResult]:
        """Every score of one record of ``flow``'s evaluations, oldest first; ``scope`` keeps
        those of one evaluation or one run (its id)."""
        ph = self._ph
        cols = ", ".join(f"r.{c}" for c in RESULT_COLUMNS)
        where = f"e.flow_name = {ph} AND r.record_id = {ph}"
        params: list[Any] = [flow, record_id]
        if scope is not None:
            where += f" AND (r.eval_id = {ph} OR r.run_id = {ph})"
            params += [scope, scope]
        rows = self._read(
            f"SELECT {cols} FROM eval_results r JOIN evals e ON e.id = r.eval_id WHERE {where} "
            "ORDER BY r.created_at, r.eval_id, r.variant, r.job_key",
            tuple(params),
        )
        return [EvalResult(*self._decode(RESULT_COLUMNS, r)) for r in rows]


class MemoryEvals:
    """The same methods over dicts, for the memory store (``self._lock``)."""

    def _estore(self) -> tuple[dict[str, EvalRecord], dict[tuple[str, str], EvalResult]]:
        got = self.__dict__.get("_evals")
        if got is None:
            got = self.__dict__["_evals"] = ({}, {})
        return got

    def create_eval(self, ev: EvalRecord) -> None:
        with self._lock:  # type: ignore[attr-defined]
            evals, _ = self._estore()
            if ev.id in evals:
                raise StoreError(f"evaluation {ev.id} already exists")
            evals[ev.id] = copy.deepcopy(ev)

    def get_eval(self, eval_id: str) -> EvalRecord | None:
        with self._lock:  # type: ignore[attr-defined]
            ev = self._estore()[0].get(eval_id)
            return copy.deepcopy(ev) if ev else None

    def list_evals(self, *, flow: str | None = None, limit: int = 50, offset: int = 0) -> list[EvalRecord]:
        with self._lock:  # type: ignore[attr-defined]
            evs = [e for e in self._estore()[0].values() if flow is None or e.flow_name == flow]
            evs.sort(key=lambda e: (e.created_at, e.id), reverse=True)
            return [copy.deepcopy(e) for e in evs[offset : offset + limit]]

    def update_eval(self, eval_id: str, **eval_fields: Any) -> None:
        _check(eval_fields)
        with self._lock:  # type: ignore[attr-defined]
            evals = self._estore()[0]
            ev = evals.get(eval_id)
            if ev is None:
                raise StoreError(f"no evaluation {eval_id}")
            evals[eval_id] = replace(ev, **copy.deepcopy(eval_fields))

    def put_eval_result(self, result: EvalResult) -> None:
        with self._lock:  # type: ignore[attr-defined]
            self._estore()[1][(result.eval_id, result.job_key)] = copy.deepcopy(result)

    def eval_results(self, eval_id: str) -> list[EvalResult]:
        with self._lock:  # type: ignore[attr-defined]
            rows = [copy.deepcopy(r) for (e, _), r in self._estore()[1].items() if e == eval_id]
            return sorted(rows, key=lambda r: (r.record_id, r.variant, r.job_key))

    def record_scores(self, flow: str, record_id: str, *, scope: str | None = None) -> list[EvalResult]:
        with self._lock:  # type: ignore[attr-defined]
            evals, results = self._estore()
            rows = [
                copy.deepcopy(r)
                for (e, _), r in results.items()
                if e in evals
                and evals[e].flow_name == flow
                and r.record_id == record_id
                and (scope is None or scope in (r.eval_id, r.run_id))
            ]
            return sorted(rows, key=lambda r: (r.created_at, r.eval_id, r.variant, r.job_key))
