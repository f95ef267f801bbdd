"""Datasets for batch mode: CSV/TSV, JSONL, JSON arrays, Parquet, plain-text lines, and a
flow's inline ``data:`` list -- all streamed, never loaded whole.

A reader yields ``(offset, row)`` pairs in file order: ``offset`` is where the record
starts (a byte offset for the text formats, a row number for Parquet and inline lists) so
that ``--shuffle`` can read records in a shuffled order holding only one 8-byte offset per
record, not the records (see :func:`iter_rows`). JSON arrays are parsed incrementally with
``json.JSONDecoder.raw_decode`` over chunks. A JSONL line that is not valid JSON is yielded
as a :class:`BadRow`, so it becomes one failed job instead of stopping the batch.

Read in file order (no ``--shuffle``), CSV and TSV go through pyarrow's streaming CSV reader
when pyarrow is installed (the ``batch`` extra; Parquet needs it anyway), with this module's
parser as the fallback. JSONL stays with the parser here: pyarrow's JSON reader unifies
every record into one schema (a key one record lacks comes back as null, which would hide
an input's default) and fails the whole file on one bad line. ``python -m bench.datasets``
measures both; either is two orders of magnitude faster than a batch consumes records.
"""

from __future__ import annotations

import codecs
import csv
import itertools
import json
import random
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from llmflow.errors import DatasetError

FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".txt": "text",
    ".text": "text",
}
FORMAT_NAMES = ("csv", "tsv", "jsonl", "json", "parquet", "text")
PARQUET_HINT = "pip install 'llmflow[batch]'  (installs pyarrow)"
SHUFFLE_WINDOW = 4096  # records read per window when reading in shuffled order
_CHUNK = 1 << 16


@dataclass(frozen=True)
class BadRow:
    """A record that could not be parsed; it becomes a failed job."""

    error: str


@dataclass(frozen=True)
class DataSource:
    """Where the records come from. ``columns`` (field -> column) comes from the flow's
    data config; ``--columns`` adds to it."""

    format: str
    path: str | None = None
    records: list[Any] | None = None  # inline
    columns: dict[str, str] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        """What the batch record stores (inline records are re-read from the flow)."""
        d: dict[str, Any] = {"format": self.format}
        if self.path is not None:
            d["path"] = self.path
        if self.records is not None:
            d["records"] = len(self.records)
        if self.columns:
            d["columns"] = dict(self.columns)
        return d

    @property
    def label(self) -> str:
        return self.path or f"the flow's inline data ({len(self.records or [])} records)"


def open_source(
    path: str | Path, fmt: str | None = None, columns: dict[str, str] | None = None
) -> DataSource:
    p = Path(path).expanduser()
    if not p.exists():
        raise DatasetError(f"data file {p} does not exist", hint="check the path given to --data")
    if p.is_dir():
        raise DatasetError(
            f"{p} is a directory; --data takes one file", hint=f"formats: {', '.join(FORMAT_NAMES)}"
        )
    fmt = fmt or FORMATS.get(p.suffix.lower())
    if fmt is None:
        raise DatasetError(
            f"cannot tell the format of {p.name} from its extension",
            hint="use .csv, .tsv, .jsonl, .json, .parquet or .txt, or pass --format",
        )
    if fmt not in FORMAT_NAMES:
        raise DatasetError(f"unknown data format {fmt!r}", hint=f"formats: {', '.join(FORMAT_NAMES)}")
    return DataSource(fmt, str(p.resolve()), None, dict(columns or {}))


_FILE_TYPES = ("file", "plaintext", "csv", "tsv", "jsonl", "json", "parquet", "text")


def source_from_flow(data: Any, search_dirs: list[Path]) -> DataSource | None:
    """The flow's ``data:``: a list of records, ``{type: file, path: ..., columns: {...}}``,
    or Buttermilk's mapping of named sources (exactly one)."""
    if data is None or data == {} or data == []:
        return None
    if isinstance(data, list):
        return DataSource("inline", None, list(data), {})
    if not isinstance(data, dict):
        raise DatasetError(
            f"the flow's data must be a list of records or a mapping, got {type(data).__name__}"
        )
    if not ({"type", "path", "records"} & set(data)):
        named = {k: v for k, v in data.items() if isinstance(v, dict)}
        if len(named) != 1:
            raise DatasetError(
                f"the flow has {len(named)} data sources ({', '.join(named) or 'none'}); batch mode reads one",
                hint="pass the file with --data PATH",
            )
        data = next(iter(named.values()))
    columns = {str(k): str(v) for k, v in (data.get("columns") or {}).items()}
    kind = str(data.get("type", "file"))
    if "records" in data:
        return DataSource("inline", None, list(data["records"] or []), columns)
    if kind not in _FILE_TYPES:
        raise DatasetError(
            f"data source type {kind!r} is not supported by llmflow batch",
            hint="export the records to a CSV, JSONL, JSON or Parquet file and pass --data PATH",
        )
    raw = data.get("path")
    if not raw:
        raise DatasetError("the flow's data source has no 'path'", hint="add path: FILE, or pass --data PATH")
    fmt = "text" if kind in ("plaintext", "text") else (kind if kind in FORMAT_NAMES else None)
    p = Path(str(raw)).expanduser()
    tried = [p] if p.is_absolute() else [d / p for d in search_dirs]
    for cand in tried:
        if cand.exists():
            return open_source(cand, fmt, columns)
    raise DatasetError(
        f"the flow's data file {raw} was not found (looked in {', '.join(str(t.parent) for t in tried)})",
        hint="pass the file with --data PATH",
    )


# -- readers ---------------------------------------------------------------------------------


def _arrow_csv() -> Any | None:
    """pyarrow with its csv module (the ``batch`` extra), or None when it is not installed."""
    try:
        import pyarrow
        import pyarrow.csv  # noqa: F401 - makes pyarrow.csv an attribute
    except ImportError:
        return None
    return pyarrow


def _as_row(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    return {"text": value} if isinstance(value, str) else {"value": value}


class _Reader:
    def __init__(self, src: DataSource) -> None:
        self.src = src

    def scan(self) -> Iterator[tuple[int, dict[str, Any] | BadRow]]:
        raise NotImplementedError

    def count(self) -> int:
        return sum(1 for _ in self.scan())

    def rows(self) -> Iterator[dict[str, Any] | BadRow]:
        """The records in file order (no offsets: what a batch without --shuffle reads)."""
        for _, row in self.scan():
            yield row

    def read_many(self, offsets: list[int]) -> list[dict[str, Any] | BadRow]:
        raise NotImplementedError

    def _open(self) -> BinaryIO:
        try:
            return open(self.src.path or "", "rb")  # noqa: SIM115 - the generators close it
        except OSError as exc:
            raise DatasetError(f"cannot read {self.src.path}: {exc}") from exc


def _lines(f: BinaryIO, pos: int = 0) -> Iterator[tuple[int, bytes]]:
    for raw in f:
        yield pos, raw
        pos += len(raw)


class _LineReader(_Reader):
    """JSONL and plain text: one record per non-blank line."""

    def _parse(self, raw: bytes, where: str) -> dict[str, Any] | BadRow:
        text = raw.decode("utf-8", errors="replace").strip()
        if self.src.format == "text":
            return {"text": text}
        try:
            return _as_row(json.loads(text))
        except ValueError as exc:
            return BadRow(f"{self.src.path}:{where}: not valid JSON: {exc}")

    def scan(self) -> Iterator[tuple[int, dict[str, Any] | BadRow]]:
        with self._open() as f:
            for n, (pos, raw) in enumerate(_lines(f), 1):
                if raw.strip():
                    yield pos, self._parse(raw, f"line {n}")

    def count(self) -> int:
        with self._open() as f:
            return sum(1 for raw in f if raw.strip())

    def read_many(self, offsets: list[int]) -> list[dict[str, Any] | BadRow]:
        out: list[dict[str, Any] | BadRow] = []
        with self._open() as f:
            for off in offsets:
                f.seek(off)
                out.append(self._parse(f.readline(), f"byte {off}"))
        return out


class _CsvReader(_Reader):
    def __init__(self, src: DataSource) -> None:
        super().__init__(src)
        self.delimiter = "\t" if src.format == "tsv" else ","
        self._header: list[str] | None = None

    def _records(
        self, f: BinaryIO, pos: int, header: list[str] | None
    ) -> Iterator[tuple[int, dict[str, Any]]]:
        starts: dict[int, int] = {}

        def text_lines() -> Iterator[str]:
            for n, (at, raw) in enumerate(_lines(f, pos), 1):
                starts[n] = at
                yield raw.decode("utf-8-sig" if at == 0 else "utf-8", errors="replace")

        reader = csv.reader(text_lines(), delimiter=self.delimiter)
        if header is None:
            header = next(reader, None)
            if header is None:
                return
            self._header = header = [h.strip() for h in header]
        prev = reader.line_num
        for row in reader:
            start = starts.get(prev + 1, 0)
            for k in range(prev + 1, reader.line_num + 1):
                starts.pop(k, None)
            prev = reader.line_num
            if row:
                yield start, {h: (row[i] if i < len(row) else None) for i, h in enumerate(header)}

    def scan(self) -> Iterator[tuple[int, dict[str, Any] | BadRow]]:
        with self._open() as f:
            yield from self._records(f, 0, None)

    def rows(self) -> Iterator[dict[str, Any] | BadRow]:
        """In file order, parsed by pyarrow's streaming CSV reader when it is installed
        (every column a string, as this module's own parser gives them). A row pyarrow
        refuses (a column count that differs from the header's) hands the rest of the file,
        from that record on, to the parser here, which pads or keeps it as it always has."""
        arrow = _arrow_csv()
        if arrow is None:
            yield from super().rows()
            return
        done = 0
        try:
            for batch in self._arrow_batches(arrow):
                rows = batch.to_pylist()
                yield from rows
                done += len(rows)
        except arrow.ArrowInvalid:
            yield from itertools.islice(super().rows(), done, None)

    def _arrow_batches(self, arrow: Any) -> Iterator[Any]:
        with self._open() as f:
            first = f.readline().decode("utf-8-sig", errors="replace")
        header = next(csv.reader([first], delimiter=self.delimiter), None)
        if not header:
            return
        names = [h.strip() for h in header]
        if len(set(names)) != len(names):  # a repeated column: the parser here keeps the last
            raise arrow.ArrowInvalid("repeated column names")
        read = arrow.csv.ReadOptions(column_names=names, skip_rows=1, block_size=1 << 20)
        parse = arrow.csv.ParseOptions(delimiter=self.delimiter, newlines_in_values=True)
        convert = arrow.csv.ConvertOptions(
            column_types={n: arrow.string() for n in names},
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        )
        try:
            reader = arrow.csv.open_csv(
                self.src.path or "", read_options=read, parse_options=parse, convert_options=convert
            )
        except OSError as exc:
            raise DatasetError(f"cannot read {self.src.path}: {exc}") from exc
        yield from reader

    def count(self) -> int:
        arrow = _arrow_csv()
        if arrow is None:
            return super().count()
        try:
            return sum(b.num_rows for b in self._arrow_batches(arrow))
        except arrow.ArrowInvalid:
            return super().count()

    def read_many(self, offsets: list[int]) -> list[dict[str, Any] | BadRow]:
        if self._header is None:
            with self._open() as f:
                next(self._records(f, 0, None), None)
        out: list[dict[str, Any] | BadRow] = []
        with self._open() as f:
            for off in offsets:
                f.seek(off)
                got = next(self._records(f, off, self._header or []), None)
                out.append(got[1] if got else BadRow(f"{self.src.path}: no record at byte {off}"))
        return out


class _JsonReader(_Reader):
    """A JSON array of records, parsed incrementally (``raw_decode`` over chunks)."""

    def _values(self, f: BinaryIO, start: int, top: bool) -> Iterator[tuple[int, Any]]:
        decoder = json.JSONDecoder()
        dec = codecs.getincrementaldecoder("utf-8")()
        buf, pos, at, eof, want = "", 0, start, False, _CHUNK

        def fill() -> None:
            nonlocal buf, pos, eof
            data = f.read(want)
            if pos:
                buf, pos = buf[pos:], 0
            buf += dec.decode(data, final=not data)
            eof = not data

        def skip_ws() -> None:
            nonlocal pos, at
            while True:
                n = len(buf)
                while pos < n and buf[pos] in " \t\r\n\ufeff":
                    at += len(buf[pos].encode())
                    pos += 1
                if pos < n or eof:
                    return
                fill()

        def fail(msg: str) -> DatasetError:
            return DatasetError(
                f"{self.src.path}: not a JSON array of records: {msg} (near byte {at})",
                hint="one record per line? name the file .jsonl",
            )

        skip_ws()
        if top:
            if pos >= len(buf) or buf[pos] != "[":
                raise fail("it must start with '['")
            pos, at = pos + 1, at + 1
            skip_ws()
            if pos < len(buf) and buf[pos] == "]":
                return
        while True:
            skip_ws()
            try:
                value, end = decoder.raw_decode(buf, pos)
            except json.JSONDecodeError as exc:
                if eof:
                    raise fail(exc.msg) from None
                want = max(_CHUNK, len(buf))  # a big record: read in growing chunks
                fill()
                continue
            if end == len(buf) and not eof:  # a number may go on in the next chunk
                fill()
                continue
            want = _CHUNK
            yield at, value
            at += len(buf[pos:end].encode())
            pos = end
            if not top:
                return
            skip_ws()
            if pos >= len(buf):
                raise fail("it ends before ']'")
            ch = buf[pos]
            pos, at = pos + 1, at + 1
            if ch == "]":
                return
            if ch != ",":
                raise fail(f"expected ',' or ']', got {ch!r}")

    def scan(self) -> Iterator[tuple[int, dict[str, Any] | BadRow]]:
        with self._open() as f:
            for at, value in self._values(f, 0, True):
                yield at, _as_row(value)

    def read_many(self, offsets: list[int]) -> list[dict[str, Any] | BadRow]:
        out: list[dict[str, Any] | BadRow] = []
        with self._open() as f:
            for off in offsets:
                f.seek(off)
                out.append(_as_row(next(self._values(f, off, False))[1]))
        return out


class _ParquetReader(_Reader):
    def _file(self) -> Any:
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise DatasetError(
                "reading Parquet needs pyarrow, which is not installed", hint=PARQUET_HINT
            ) from None
        try:
            return pq.ParquetFile(self.src.path or "")
        except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for bad files
            raise DatasetError(f"cannot read the Parquet file {self.src.path}: {exc}") from None

    def count(self) -> int:
        return int(self._file().metadata.num_rows)

    def scan(self) -> Iterator[tuple[int, dict[str, Any] | BadRow]]:
        n = 0
        for batch in self._file().iter_batches(batch_size=1024):
            for row in batch.to_pylist():
                yield n, row
                n += 1

    def read_many(self, offsets: list[int]) -> list[dict[str, Any] | BadRow]:
        # rows grouped by row group: each group needed by this window is read once
        pf = self._file()
        bounds, total = [], 0
        for g in range(pf.metadata.num_row_groups):
            bounds.append(total)
            total += pf.metadata.row_group(g).num_rows
        import bisect

        wanted: dict[int, list[int]] = {}
        for off in sorted(set(offsets)):
            wanted.setdefault(bisect.bisect_right(bounds, off) - 1, []).append(off)
        got: dict[int, dict[str, Any]] = {}
        for g, offs in wanted.items():
            table = pf.read_row_group(g).take([o - bounds[g] for o in offs])
            got.update(zip(offs, table.to_pylist(), strict=True))
        return [got[o] for o in offsets]


class _InlineReader(_Reader):
    def scan(self) -> Iterator[tuple[int, dict[str, Any] | BadRow]]:
        for i, v in enumerate(self.src.records or []):
            yield i, _as_row(v)

    def count(self) -> int:
        return len(self.src.records or [])

    def read_many(self, offsets: list[int]) -> list[dict[str, Any] | BadRow]:
        recs = self.src.records or []
        return [_as_row(recs[o]) for o in offsets]


def reader_for(src: DataSource) -> _Reader:
    cls = {
        "csv": _CsvReader,
        "tsv": _CsvReader,
        "jsonl": _LineReader,
        "text": _LineReader,
        "json": _JsonReader,
        "parquet": _ParquetReader,
        "inline": _InlineReader,
    }[src.format]
    return cls(src)


def count_rows(src: DataSource) -> int:
    return reader_for(src).count()


def iter_rows(
    src: DataSource, *, shuffle: bool = False, seed: int | None = None, limit: int | None = None
) -> Iterator[tuple[int, dict[str, Any] | BadRow]]:
    """``(index, row)`` for the first ``limit`` records, in file order or shuffled.

    Shuffling makes one pass to collect each record's offset (8 bytes per record), shuffles
    the positions with ``random.Random(seed)``, then reads the records back in windows of
    :data:`SHUFFLE_WINDOW` by offset: memory holds the offsets and one window of records."""
    reader = reader_for(src)
    if limit is not None and limit <= 0:
        return
    if not shuffle:
        for i, row in enumerate(reader.rows()):
            if limit is not None and i >= limit:
                return
            yield i, row
        return
    offsets = array("q", (off for off, _ in reader.scan()))
    order = array("q", range(len(offsets)))
    random.Random(seed).shuffle(order)  # type: ignore[arg-type]
    if limit is not None:
        order = order[:limit]
    for w in range(0, len(order), SHUFFLE_WINDOW):
        window = order[w : w + SHUFFLE_WINDOW]
        rows = reader.read_many([offsets[i] for i in window])
        yield from zip(window, rows, strict=True)
