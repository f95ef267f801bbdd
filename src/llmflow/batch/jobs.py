"""Jobs of a batch: records x variants, with stable ids.

- A record's id comes from ``--record-id COLUMN``, else its ``record_id`` or ``id`` field,
  else a content hash (``h`` + 12 hex digits of the SHA-256 of the record as sorted JSON).
  A repeated id gets ``#2``, ``#3``... in the order records are read.
- Every list under the flow's ``parameters:`` is an axis; the variants are their cross
  product (an empty list is not an axis). A variant's label is ``key=value,...``; values
  that are not short plain words are shown as a hash.
- Job id: ``{batch_id}:{record_id}[:{variant}]`` (kept in the run's metadata). Run id: the
  same parts made safe for URLs and file names, joined with ``.``: characters outside
  ``[A-Za-z0-9_-]`` become ``_`` and an 8-hex hash of the original keeps it unique. A
  record part never holds ``.`` and a variant part always holds ``-`` (from ``=``), so job
  runs never collide with each other or with sub-flow runs (``{run}.{step}``).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from llmflow.batch.datasets import BadRow
from llmflow.errors import DatasetError

_SAFE = re.compile(r"[^A-Za-z0-9_-]")
_PLAIN = re.compile(r"[\w.@+-]{1,40}")
MAX_ID_PART = 64


def _hash(text: str, n: int = 8) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def content_id(row: dict[str, Any]) -> str:
    return "h" + _hash(json.dumps(row, sort_keys=True, default=str, ensure_ascii=False), 12)


def safe_part(text: str) -> str:
    s = _SAFE.sub("_", text)
    if s != text or len(s) > MAX_ID_PART:
        s = s[: MAX_ID_PART - 9] + "-" + _hash(text)
    return s


@dataclass(frozen=True)
class Variant:
    label: str  # "" when the flow has no list parameters
    values: dict[str, Any] = field(default_factory=dict)


def _short(v: Any) -> str:
    if isinstance(v, bool | int | float) or (isinstance(v, str) and _PLAIN.fullmatch(v)):
        return str(v)
    return "h" + _hash(json.dumps(v, sort_keys=True, default=str))


def expand_variants(parameters: dict[str, Any] | None) -> list[Variant]:
    """The cross product of the list-valued parameters (Buttermilk's ``expand_dict``)."""
    axes = [(k, v) for k, v in (parameters or {}).items() if isinstance(v, list) and v]
    if not axes:
        return [Variant("")]
    out: list[Variant] = []
    seen: dict[str, int] = {}
    for combo in itertools.product(*(v for _, v in axes)):
        values = {k: combo[i] for i, (k, _) in enumerate(axes)}
        label = ",".join(f"{k}={_short(v)}" for k, v in values.items())
        seen[label] = seen.get(label, 0) + 1
        if seen[label] > 1:
            label = f"{label}#{seen[label]}"
        out.append(Variant(label, values))
    return out


def job_id(batch_id: str, record_id: str, variant: str) -> str:
    return f"{batch_id}:{record_id}" + (f":{variant}" if variant else "")


def run_id_for(batch_id: str, record_id: str, variant: str) -> str:
    rid = f"{batch_id}.{safe_part(record_id)}"
    if variant:
        v = variant.replace("=", "-").replace(",", "_")
        # a label always holds '=' (so '-' here); safe_part keeps one too ("...-<hash>")
        rid += "." + (v if not _SAFE.search(v) and len(v) <= MAX_ID_PART else safe_part(variant))
    return rid


def hydra_value(v: Any) -> str:
    """A value in Hydra's override grammar (strings quoted, lists and dicts spelled out)."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, list | tuple):
        return "[" + ",".join(hydra_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ",".join(f"{hydra_value(str(k))}:{hydra_value(x)}" for k, x in v.items()) + "}"
    s = str(v).replace("\\", "\\\\").replace("'", "\\'")
    return f"'{s}'"


def get_path(row: dict[str, Any], column: str) -> Any:
    """``row[column]``, or a dotted path into nested records (``meta.title``)."""
    if column in row:
        return row[column]
    cur: Any = row
    for part in column.split("."):
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        elif isinstance(cur, list) and part.isdigit() and int(part) < len(cur):
            cur = cur[int(part)]
        else:
            return None
    return cur


class RecordMapper:
    """Record fields -> flow inputs: ``columns`` (input -> column) first, then same-named
    fields; a flow with one required input takes a record's only field."""

    def __init__(self, inputs: dict[str, Any], columns: dict[str, str], id_column: str | None) -> None:
        self.inputs = inputs  # name -> InputSpec
        self.columns = dict(columns)
        self.id_column = id_column
        self._auto: tuple[str, str] | None = None  # (input, field)

    def check(self, first: dict[str, Any] | BadRow | None, source: str) -> None:
        """Fail early, before any job runs, when the data cannot feed the flow."""
        unknown = [k for k in self.columns if k not in self.inputs]
        if unknown:
            raise DatasetError(
                f"--columns maps {', '.join(unknown)}, which the flow does not take as input(s)",
                hint=f"flow inputs: {', '.join(self.inputs) or 'none'}",
            )
        if not isinstance(first, dict):
            return
        keys = list(first)
        missing_cols = [c for c in self.columns.values() if get_path(first, c) is None and c not in first]
        if missing_cols:
            raise DatasetError(
                f"{source} has no column {', '.join(repr(c) for c in missing_cols)}",
                hint=f"columns: {', '.join(keys)}",
            )
        if self.id_column and get_path(first, self.id_column) is None and self.id_column not in first:
            raise DatasetError(
                f"{source} has no column {self.id_column!r} for --record-id",
                hint=f"columns: {', '.join(keys)}",
            )
        required = [k for k, s in self.inputs.items() if s.is_required and k != "record_id"]
        unmapped = [k for k in required if k not in self.columns and k not in first]
        matched = [k for k in self.inputs if k in self.columns or k in first]
        fields = [k for k in keys if k not in (self.id_column, "record_id", "id")]
        if not matched and len(self.inputs) == 1 and len(fields) == 1:
            # one input, one data field: that is the mapping (plain-text lines -> prompt)
            self._auto = (next(iter(self.inputs)), fields[0])
            return
        if not matched and self.inputs and not unmapped:
            raise DatasetError(
                f"none of the columns of {source} ({', '.join(keys)}) is an input of the flow ({', '.join(self.inputs)})",
                hint="map them with --columns INPUT=COLUMN",
            )
        if unmapped:
            raise DatasetError(
                f"the flow needs input(s) {', '.join(unmapped)}, which {source} does not have",
                hint=f"map columns with --columns INPUT=COLUMN (columns: {', '.join(keys)})",
            )

    def record_id(self, row: dict[str, Any]) -> str | None:
        if self.id_column:
            v = get_path(row, self.id_column)
            return None if v is None or v == "" else str(v)
        for k in ("record_id", "id"):
            v = row.get(k)
            if v is not None and v != "" and not isinstance(v, dict | list):
                return str(v)
        return content_id(row)

    def to_inputs(self, row: dict[str, Any], record_id: str, variant: Variant) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in self.inputs:
            if name in self.columns:
                v = get_path(row, self.columns[name])
            elif name in row:
                v = row[name]
            elif self._auto is not None and name == self._auto[0]:
                v = row.get(self._auto[1])
            elif name == "record_id":
                v = record_id
            else:
                continue
            if v is not None:
                out[name] = v
        for k, v in variant.values.items():
            if k in self.inputs:
                out[k] = v
        return out


@dataclass(frozen=True)
class Job:
    job_id: str
    run_id: str
    record_id: str
    index: int
    variant: Variant
    inputs: dict[str, Any] | None  # None when the record is unusable (``error`` says why)
    error: str | None = None


def iter_jobs(
    batch_id: str,
    rows: Iterable[tuple[int, dict[str, Any] | BadRow]],
    mapper: RecordMapper,
    variants: list[Variant],
) -> Iterator[Job]:
    """Record x variant jobs, in record order. Holds the set of record ids seen (to make
    repeated ids unique), never the records."""
    seen: dict[str, int] = {}
    for index, row in rows:
        error = None
        rid = None
        if isinstance(row, BadRow):
            error = row.error
        else:
            rid = mapper.record_id(row)
            if rid is None:
                error = f"record {index} has no value in the --record-id column {mapper.id_column!r}"
        if rid is None:
            rid = f"row{index}"
        n = seen.get(rid, 0) + 1
        seen[rid] = n
        if n > 1:
            rid = f"{rid}#{n}"
        for v in variants:
            inputs = None if error or isinstance(row, BadRow) else mapper.to_inputs(row, rid, v)
            yield Job(
                job_id(batch_id, rid, v.label),
                run_id_for(batch_id, rid, v.label),
                rid,
                index,
                v,
                inputs,
                error,
            )
