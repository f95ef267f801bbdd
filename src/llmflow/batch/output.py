"""The batch result file: one row per job (record id, variant, status, outputs, error,
usage, duration), written as jobs finish.

JSONL and CSV rows are appended to the output file itself, one flushed line per finished
job. Parquet cannot be appended to, so its rows go to a journal next to it
(``<output>.partial.jsonl``) and the Parquet file is written from the journal, in row
groups, whenever the batch stops (completed, stopped or interrupted); the journal is
removed once the batch has completed.

On resume, :meth:`ResultFile.open` rewrites the existing file (streaming, through a
temporary file) keeping only complete rows, each job once, minus the jobs about to run
again (``--retry-failed``); the runner then adds the rows of jobs that finished in the
store but never reached the file (the process died in between). So after a resume the
file is complete and has every job exactly once. Rows are in completion order.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from llmflow.errors import BatchError

OUTPUT_FORMATS = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
FLAT_HEAD = ["job_id", "record_id", "variant", "status"]
FLAT_TAIL = ["error", "input_tokens", "output_tokens", "cost", "duration", "run_id"]


def output_format(path: str | Path) -> str:
    fmt = OUTPUT_FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise BatchError(
            f"cannot tell the output format of {Path(path).name}: name it .jsonl, .csv or .parquet",
            hint="--output results.jsonl",
        )
    return fmt


def row_from_run(rec: Any) -> dict[str, Any]:
    """The result row of a job, from its run record."""
    md = rec.metadata or {}
    duration = (rec.ended_at - rec.started_at) if rec.ended_at and rec.started_at else None
    return {
        "job_id": md.get("job_id") or rec.id,
        "record_id": md.get("record_id"),
        "variant": md.get("variant") or "",
        "parameters": md.get("parameters") or {},
        "status": rec.status,
        "outputs": rec.outputs,
        "error": rec.error,
        "usage": {"input_tokens": rec.tokens_in, "output_tokens": rec.tokens_out, "cost": rec.cost},
        "duration": round(duration, 6) if duration is not None else None,
        "run_id": rec.id,
    }


def _cell(v: Any) -> Any:
    return v if v is None or isinstance(v, str) else json.dumps(v, ensure_ascii=False, default=str)


def flat_row(row: dict[str, Any], output_keys: list[str]) -> dict[str, Any]:
    outputs = row.get("outputs") or {}
    usage = row.get("usage") or {}
    out = {k: row.get(k) for k in FLAT_HEAD}
    for k in output_keys:
        out[f"output.{k}"] = _cell(outputs.get(k))
    out.update(
        error=row.get("error"),
        input_tokens=usage.get("input_tokens", 0),
        output_tokens=usage.get("output_tokens", 0),
        cost=usage.get("cost", 0.0),
        duration=row.get("duration"),
        run_id=row.get("run_id"),
    )
    return out


class ResultFile:
    def __init__(self, path: str | Path, output_keys: list[str]) -> None:
        self.path = Path(path)
        self.format = output_format(self.path)
        self.output_keys = list(output_keys)
        self.columns = FLAT_HEAD + [f"output.{k}" for k in self.output_keys] + FLAT_TAIL
        self.job_ids: set[str] = set()
        self.run_ids: set[str] = set()
        self._fh: io.TextIOBase | None = None
        self._csv: Any = None

    @property
    def journal(self) -> Path:
        """The file rows are appended to (the output itself, or Parquet's journal)."""
        return (
            self.path.with_name(self.path.name + ".partial.jsonl") if self.format == "parquet" else self.path
        )

    # -- reading back ------------------------------------------------------------------------
    def _existing(self) -> Iterator[dict[str, Any]]:
        j = self.journal
        if self.format == "parquet" and not j.exists() and self.path.exists():
            yield from _parquet_rows(self.path)
            return
        if not j.exists():
            return
        with open(j, encoding="utf-8", newline="") as f:
            if self.format == "csv":
                reader = csv.DictReader(f)
                try:
                    for row in reader:
                        if None in row or any(row.get(c) is None for c in ("job_id", "run_id")):
                            continue  # a torn line
                        yield row
                except csv.Error:
                    return  # a torn last record
                return
            for line in f:
                if not line.endswith("\n"):
                    return  # torn: the process died while writing it
                try:
                    row = json.loads(line)
                except ValueError:
                    continue
                if isinstance(row, dict) and row.get("job_id"):
                    yield row

    def open(self, drop: Callable[[dict[str, Any]], bool] | None = None) -> None:
        """Prepare for appending. An existing file is rewritten with each job's row once,
        without torn rows and without the rows ``drop`` picks (jobs about to run again)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        j = self.journal
        had = j.exists() or (self.format == "parquet" and self.path.exists())
        if had:
            tmp = j.with_name(j.name + ".tmp")
            with open(tmp, "w", encoding="utf-8", newline="") as out:
                writer = self._writer(out, header=True)
                for row in self._existing():
                    jid = row["job_id"]
                    if jid in self.job_ids or (drop is not None and drop(row)):
                        continue
                    self.job_ids.add(jid)
                    self.run_ids.add(row.get("run_id") or "")
                    writer(row)
            os.replace(tmp, j)
        self._fh = open(j, "a", encoding="utf-8", newline="")  # noqa: SIM115 - closed in close()
        self._write = self._writer(self._fh, header=not had)

    def _writer(self, fh: Any, header: bool) -> Any:
        if self.format != "csv":
            return lambda row: fh.write(json.dumps(_jsonl(row), ensure_ascii=False, default=str) + "\n")
        w = csv.DictWriter(
            fh, fieldnames=self.columns, extrasaction="ignore", restval="", lineterminator="\n"
        )
        if header:
            w.writeheader()

        def write(row: dict[str, Any]) -> None:
            w.writerow(
                row if "output_tokens" in row and "usage" not in row else flat_row(row, self.output_keys)
            )

        return write

    # -- writing -----------------------------------------------------------------------------
    def write(self, row: dict[str, Any]) -> None:
        if self._fh is None:
            raise BatchError("the result file is not open")
        if row["job_id"] in self.job_ids:
            return
        self.job_ids.add(row["job_id"])
        self.run_ids.add(row["run_id"])
        self._write(row)
        self._fh.flush()

    def close(self, *, completed: bool) -> None:
        """Close; Parquet is (re)written from the journal, which goes once the batch is complete."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        if self.format == "parquet" and self.journal.exists():
            _write_parquet(self.path, self._existing(), self.output_keys, self.columns)
            if completed:
                self.journal.unlink()


def _jsonl(row: dict[str, Any]) -> dict[str, Any]:
    if "usage" in row:
        return row
    # a flat row read back from CSV or Parquet
    outputs = {c[len("output.") :]: row.get(c) for c in row if c.startswith("output.")}
    return {
        "job_id": row.get("job_id"),
        "record_id": row.get("record_id"),
        "variant": row.get("variant") or "",
        "status": row.get("status"),
        "outputs": outputs,
        "error": row.get("error") or None,
        "usage": {
            "input_tokens": _num(row.get("input_tokens"), int),
            "output_tokens": _num(row.get("output_tokens"), int),
            "cost": _num(row.get("cost"), float),
        },
        "duration": _num(row.get("duration"), float, None),
        "run_id": row.get("run_id"),
    }


def _num(v: Any, kind: type, default: Any = 0) -> Any:
    try:
        return kind(v) if v not in (None, "") else default
    except (TypeError, ValueError):
        return default


def _pyarrow() -> Any:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise BatchError(
            "writing Parquet needs pyarrow, which is not installed", hint="pip install 'llmflow[batch]'"
        ) from None
    return pa, pq


def _parquet_rows(path: Path) -> Iterator[dict[str, Any]]:
    _, pq = _pyarrow()
    for batch in pq.ParquetFile(path).iter_batches(batch_size=4096):
        yield from batch.to_pylist()


def _write_parquet(
    path: Path, rows: Iterator[dict[str, Any]], output_keys: list[str], columns: list[str]
) -> None:
    pa, pq = _pyarrow()
    types = {
        "input_tokens": pa.int64(),
        "output_tokens": pa.int64(),
        "cost": pa.float64(),
        "duration": pa.float64(),
    }
    schema = pa.schema([(c, types.get(c, pa.string())) for c in columns])
    tmp = path.with_name(path.name + ".tmp")
    with pq.ParquetWriter(tmp, schema) as writer:
        chunk: list[dict[str, Any]] = []
        for row in rows:
            chunk.append(flat_row(row, output_keys) if "usage" in row else row)
            if len(chunk) >= 10_000:
                writer.write_table(pa.Table.from_pylist(chunk, schema=schema))
                chunk = []
        if chunk:
            writer.write_table(pa.Table.from_pylist(chunk, schema=schema))
    os.replace(tmp, path)
