"""The result file: streamed rows, repaired on resume, each job exactly once."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from llmflow.batch.output import ResultFile, flat_row, output_format
from llmflow.errors import BatchError


def row(i: int, status: str = "COMPLETED") -> dict:
    return {
        "job_id": f"B:r{i}",
        "record_id": f"r{i}",
        "variant": "",
        "parameters": {},
        "status": status,
        "outputs": {"result": f"answer {i}", "score": i},
        "error": None if status == "COMPLETED" else "boom",
        "usage": {"input_tokens": i, "output_tokens": 2 * i, "cost": 0.5},
        "duration": 0.25,
        "run_id": f"B.r{i}",
    }


def job_ids(path: Path, fmt: str) -> list[str]:
    if fmt == "jsonl":
        return [json.loads(x)["job_id"] for x in path.read_text().splitlines()]
    if fmt == "csv":
        with open(path, newline="") as f:
            return [r["job_id"] for r in csv.DictReader(f)]
    import pyarrow.parquet as pq

    return pq.read_table(path).column("job_id").to_pylist()


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_rows_are_written_as_jobs_finish_and_a_reopen_keeps_each_job_once(tmp_path: Path, fmt: str) -> None:
    if fmt == "parquet":
        pytest.importorskip("pyarrow")
    out = tmp_path / f"results.{fmt}"
    f = ResultFile(out, ["result", "score"])
    f.open()
    f.write(row(1))
    f.write(row(2, "FAILED"))
    f.write(row(1))  # a job is written once
    if fmt != "parquet":
        assert job_ids(out, fmt) == ["B:r1", "B:r2"]  # visible before close
    f.close(completed=False)
    g = ResultFile(out, ["result", "score"])
    g.open(drop=lambda r: r["job_id"] == "B:r2")  # --retry-failed: r2 runs again
    assert g.job_ids == {"B:r1"} and g.run_ids == {"B.r1"}
    g.write(row(2))
    g.write(row(3))
    g.close(completed=True)
    assert job_ids(out, fmt) == ["B:r1", "B:r2", "B:r3"]
    assert not out.with_name(out.name + ".partial.jsonl").exists()


def test_a_torn_last_line_is_dropped_on_reopen(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    out.write_text(json.dumps(row(1)) + "\n" + json.dumps(row(2))[:30])
    f = ResultFile(out, ["result"])
    f.open()
    f.write(row(2))
    f.close(completed=True)
    assert job_ids(out, "jsonl") == ["B:r1", "B:r2"]


def test_a_torn_csv_record_is_dropped_on_reopen(tmp_path: Path) -> None:
    out = tmp_path / "r.csv"
    f = ResultFile(out, ["result"])
    f.open()
    f.write({**row(1), "outputs": {"result": "multi\nline"}})
    f.close(completed=False)
    with open(out, "a") as fh:
        fh.write('B:r2,r2,,COMPLETED,"cut in the mid')
    g = ResultFile(out, ["result"])
    g.open()
    g.write(row(3))
    g.close(completed=True)
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["job_id"] for r in rows] == ["B:r1", "B:r3"] and rows[0]["output.result"] == "multi\nline"


def test_flat_rows_have_one_column_per_output_and_json_for_non_text() -> None:
    f = flat_row(row(4), ["result", "score", "absent"])
    assert f["output.result"] == "answer 4" and f["output.score"] == "4" and f["output.absent"] is None
    assert (f["input_tokens"], f["output_tokens"], f["cost"]) == (4, 8, 0.5)


def test_parquet_keeps_types_and_the_journal_until_the_batch_completes(tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    out = tmp_path / "r.parquet"
    f = ResultFile(out, ["result"])
    f.open()
    f.write(row(1))
    f.close(completed=False)
    journal = tmp_path / "r.parquet.partial.jsonl"
    assert journal.exists() and out.exists()
    t = pq.read_table(out)
    assert t.schema.field("input_tokens").type == "int64" and t.column("output.result").to_pylist() == [
        "answer 1"
    ]
    journal.unlink()  # only the Parquet file is left: a resume rebuilds the journal from it
    g = ResultFile(out, ["result"])
    g.open()
    assert g.job_ids == {"B:r1"}
    g.write(row(2))
    g.close(completed=True)
    assert pq.read_table(out).column("job_id").to_pylist() == ["B:r1", "B:r2"]


def test_output_format_comes_from_the_extension() -> None:
    assert output_format("a/b.JSONL") == "jsonl" and output_format("x.pq") == "parquet"
    with pytest.raises(BatchError, match="jsonl, .csv or .parquet"):
        output_format("x.json")
