"""Dataset readers: llmflow's streaming CSV / JSONL readers against pyarrow's, on the same
files (figures, not a test). Run: python -m bench.datasets [--records 200000]

Reported per format: records per second of a full read, for llmflow's own parser (byte
offsets kept for --shuffle, a bad JSONL line becomes one failed job), for ``iter_rows`` (what
``llmflow batch`` reads in file order: CSV through pyarrow when it is installed) and for
pyarrow alone (``pyarrow.csv.open_csv`` with every column read as
a string, as llmflow's reader returns them; ``pyarrow.json.read_json`` for JSONL), both
converted to Python dicts, which is what a batch job receives.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from llmflow.batch.datasets import iter_rows, open_source, reader_for


def write_files(d: Path, n: int) -> tuple[Path, Path]:
    c, j = d / "d.csv", d / "d.jsonl"
    with c.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "text", "label"])
        for i in range(n):
            w.writerow(
                [f"r{i}", f"record number {i}, with a comma and some words", "pos" if i % 2 else "neg"]
            )
    with j.open("w") as f:
        for i in range(n):
            f.write(
                json.dumps(
                    {
                        "id": f"r{i}",
                        "text": f"record number {i} and some words",
                        "label": "pos" if i % 2 else "neg",
                    }
                )
                + "\n"
            )
    return c, j


def timed(fn) -> tuple[float, int]:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    n = fn()
    return time.perf_counter() - t0, n


def llmflow_scan(path: Path) -> int:
    """The module's own parser, with byte offsets (what --shuffle reads)."""
    return sum(1 for _ in reader_for(open_source(path)).scan())


def llmflow_rows(path: Path) -> int:
    """What a batch reads in file order (CSV: pyarrow when installed)."""
    return sum(1 for _ in iter_rows(open_source(path)))


def arrow_csv(path: Path) -> int:
    import pyarrow as pa
    import pyarrow.csv as pcsv

    with path.open(newline="") as f:
        header = next(csv.reader(f))
    opts = pcsv.ConvertOptions(column_types={h: pa.string() for h in header}, strings_can_be_null=False)
    n = 0
    for batch in pcsv.open_csv(
        path, convert_options=opts, parse_options=pcsv.ParseOptions(newlines_in_values=True)
    ):
        n += len(batch.to_pylist())
    return n


def arrow_jsonl(path: Path) -> int:
    import pyarrow.json as pjson

    return len(pjson.read_json(path).to_pylist())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=200_000)
    args = ap.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f}; {args.records} records; python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory() as tmp:
        c, j = write_files(Path(tmp), args.records)
        for label, fn, path in (
            ("csv   own parser (scan)      ", llmflow_scan, c),
            ("csv   llmflow iter_rows      ", llmflow_rows, c),
            ("csv   pyarrow alone          ", arrow_csv, c),
            ("jsonl own parser (iter_rows) ", llmflow_rows, j),
            ("jsonl pyarrow read_json      ", arrow_jsonl, j),
        ):
            secs, n = timed(lambda fn=fn, path=path: fn(path))
            assert n == args.records, (label, n)
            print(f"{label}: {n / secs:>10,.0f} records/s  ({secs:.2f} s)")


if __name__ == "__main__":
    main()
