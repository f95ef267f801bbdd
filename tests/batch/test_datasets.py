"""Datasets: every format streams its records, shuffles reproducibly, and fails clearly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmflow.batch import datasets
from llmflow.batch.datasets import BadRow, DataSource, count_rows, iter_rows, open_source, source_from_flow
from llmflow.errors import DatasetError

from .conftest import write_csv, write_jsonl

ROWS = [
    {"id": "a", "text": "héllo, world"},
    {"id": "b", "text": "line one\nline two"},
    {"id": "c", "text": 'quote " inside'},
]


def rows_of(src: DataSource, **kw: object) -> list[dict]:
    return [r for _, r in iter_rows(src, **kw)]


def test_csv_rows_keep_quoted_newlines_commas_and_a_bom(tmp_path: Path) -> None:
    p = write_csv(tmp_path / "d.csv", ROWS)
    p.write_bytes(b"\xef\xbb\xbf" + p.read_bytes())
    src = open_source(p)
    assert src.format == "csv"
    assert rows_of(src) == ROWS
    assert count_rows(src) == 3


@pytest.mark.parametrize("arrow", [True, False], ids=["pyarrow", "own-parser"])
def test_csv_reads_the_same_with_pyarrow_or_without(
    tmp_path: Path, arrow: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # pyarrow parses CSV where it is installed (the batch extra); the module's own parser is
    # the fallback, and takes over mid-file from a row pyarrow refuses (a short row here)
    if arrow:
        pytest.importorskip("pyarrow")
    else:
        monkeypatch.setattr(datasets, "_arrow_csv", lambda: None)
    p = tmp_path / "d.csv"
    p.write_bytes(
        b'\xef\xbb\xbf id ,text\n007,"a, b"\n,""\n\n008,"two\nlines"\n009\n010,"after, the short row"\n'
    )
    want = [
        {"id": "007", "text": "a, b"},
        {"id": "", "text": ""},
        {"id": "008", "text": "two\nlines"},
        {"id": "009", "text": None},
        {"id": "010", "text": "after, the short row"},
    ]
    src = open_source(p)
    assert rows_of(src) == want
    assert rows_of(src, limit=2) == want[:2]
    assert count_rows(src) == 5
    assert sorted(rows_of(src, shuffle=True, seed=3), key=lambda r: r["id"]) == sorted(
        want, key=lambda r: r["id"]
    )


def test_tsv_rows(tmp_path: Path) -> None:
    p = tmp_path / "d.tsv"
    p.write_text("id\ttext\na\tone\nb\ttwo\n")
    assert rows_of(open_source(p)) == [{"id": "a", "text": "one"}, {"id": "b", "text": "two"}]


def test_jsonl_skips_blank_lines_and_turns_a_bad_line_into_a_bad_row(tmp_path: Path) -> None:
    p = tmp_path / "d.jsonl"
    p.write_text('{"id": "a"}\n\n{not json\n"just text"\n{"id": "c"}\n')
    got = rows_of(open_source(p))
    assert got[0] == {"id": "a"} and got[2] == {"text": "just text"} and got[3] == {"id": "c"}
    assert isinstance(got[1], BadRow) and "line 3" in got[1].error
    assert count_rows(open_source(p)) == 4


def test_plain_text_lines_become_text_records(tmp_path: Path) -> None:
    p = tmp_path / "d.txt"
    p.write_text("first line\n\n  second line  \n")
    assert rows_of(open_source(p)) == [{"text": "first line"}, {"text": "second line"}]


def test_json_arrays_stream_across_chunk_boundaries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datasets, "_CHUNK", 7)  # every record spans several reads
    recs = [
        {"id": i, "text": "ünïcode " * (i % 5), "n": 12345.678 * i, "nested": {"a": [1, 2, {"b": None}]}}
        for i in range(50)
    ]
    p = tmp_path / "d.json"
    p.write_text("  \n[ " + " ,\n ".join(json.dumps(r, ensure_ascii=False) for r in recs) + " ]\n")
    assert rows_of(open_source(p)) == recs
    p.write_text("[1234567, 89]")  # a number cut by a chunk boundary is read whole
    assert rows_of(open_source(p)) == [{"value": 1234567}, {"value": 89}]
    p.write_text("[]")
    assert rows_of(open_source(p)) == []


@pytest.mark.parametrize(
    ("text", "msg"),
    [
        ('{"id": 1}', "start with '\\['"),
        ('[{"id": 1} {"id": 2}]', "expected ','"),
        ('[{"id": 1}', "ends before"),
        ('[{"id": ', "Expecting value"),
    ],
)
def test_malformed_json_arrays_fail_with_the_position(tmp_path: Path, text: str, msg: str) -> None:
    p = tmp_path / "d.json"
    p.write_text(text)
    with pytest.raises(DatasetError, match=msg):
        rows_of(open_source(p))


def test_parquet_rows_stream_in_batches(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    p = tmp_path / "d.parquet"
    pq.write_table(
        pa.Table.from_pylist([{"id": f"r{i}", "n": i} for i in range(2500)]), p, row_group_size=1000
    )
    src = open_source(p)
    got = rows_of(src)
    assert len(got) == 2500 and got[1234] == {"id": "r1234", "n": 1234}
    assert count_rows(src) == 2500
    shuffled = rows_of(src, shuffle=True, seed=3)
    assert sorted(r["n"] for r in shuffled) == list(range(2500)) and [r["n"] for r in shuffled] != list(
        range(2500)
    )


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "json", "txt"])
def test_shuffle_is_a_permutation_fixed_by_the_seed_and_max_records_is_exact(
    tmp_path: Path, fmt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(datasets, "SHUFFLE_WINDOW", 7)
    recs = [{"text": f"record {i}"} for i in range(40)]
    p = tmp_path / f"d.{fmt}"
    if fmt == "csv":
        write_csv(p, recs)
    elif fmt == "jsonl":
        write_jsonl(p, recs)
    elif fmt == "json":
        p.write_text(json.dumps(recs))
    else:
        p.write_text("".join(r["text"] + "\n" for r in recs))
    src = open_source(p)
    a = list(iter_rows(src, shuffle=True, seed=42))
    assert sorted(i for i, _ in a) == list(range(40)) and [i for i, _ in a] != list(range(40))
    assert all(r == recs[i] for i, r in a)  # each index still reads its own record
    assert a == list(iter_rows(src, shuffle=True, seed=42))
    assert [i for i, _ in iter_rows(src, shuffle=True, seed=43)] != [i for i, _ in a]
    assert [i for i, _ in iter_rows(src, limit=3)] == [0, 1, 2]  # Buttermilk gave 4
    assert [i for i, _ in iter_rows(src, shuffle=True, seed=42, limit=3)] == [i for i, _ in a[:3]]
    assert list(iter_rows(src, limit=0)) == []


def test_inline_and_file_data_from_the_flow(tmp_path: Path) -> None:
    inline = source_from_flow([{"text": "a"}, "b"], [tmp_path])
    assert rows_of(inline) == [{"text": "a"}, {"text": "b"}]
    (tmp_path / "data").mkdir()
    write_jsonl(tmp_path / "data" / "x.jsonl", [{"t": 1}])
    src = source_from_flow(
        {"type": "file", "path": "data/x.jsonl", "columns": {"text": "t"}}, [tmp_path / "elsewhere", tmp_path]
    )
    assert src.format == "jsonl" and src.columns == {"text": "t"} and rows_of(src) == [{"t": 1}]
    named = source_from_flow({"sample": {"type": "file", "path": str(tmp_path / "data" / "x.jsonl")}}, [])
    assert named.path == str((tmp_path / "data" / "x.jsonl").resolve())
    assert source_from_flow(None, []) is None


@pytest.mark.parametrize(
    ("data", "msg"),
    [
        ({"a": {"type": "file", "path": "x"}, "b": {"type": "file", "path": "y"}}, "2 data sources"),
        ({"type": "bq", "path": "x"}, "not supported"),
        ({"type": "file"}, "no 'path'"),
        ({"type": "file", "path": "missing.csv"}, "was not found"),
        ("text", "must be a list"),
    ],
)
def test_flow_data_problems_say_what_to_do(tmp_path: Path, data: object, msg: str) -> None:
    with pytest.raises(DatasetError, match=msg) as e:
        source_from_flow(data, [tmp_path])
    assert e.value.hint or "must be a list" in msg


def test_open_source_problems(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        open_source(tmp_path / "nope.csv")
    (tmp_path / "d.xlsx").write_text("x")
    with pytest.raises(DatasetError, match="cannot tell the format"):
        open_source(tmp_path / "d.xlsx")
    assert open_source(tmp_path / "d.xlsx", "csv").format == "csv"
    with pytest.raises(DatasetError, match="directory"):
        open_source(tmp_path)
