"""Jobs: variant expansion, record ids, run ids, and record -> input mapping."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llmflow.batch.datasets import BadRow
from llmflow.batch.jobs import (
    RecordMapper,
    Variant,
    expand_variants,
    hydra_value,
    iter_jobs,
    job_id,
    run_id_for,
    safe_part,
)
from llmflow.errors import DatasetError
from llmflow.model.spec import Flow


def inputs_of(yaml_inputs: dict) -> dict:
    return Flow.model_validate(
        {"name": "f", "inputs": yaml_inputs, "steps": [{"id": "a", "llm": "x"}]}
    ).inputs


def test_list_parameters_expand_into_their_cross_product() -> None:
    vs = expand_variants({"criteria": ["a", "b", "c"], "model": ["m1", "m2"], "fixed": 3, "empty": []})
    assert len(vs) == 6
    assert vs[0] == Variant("criteria=a,model=m1", {"criteria": "a", "model": "m1"})
    assert [v.label for v in vs][-1] == "criteria=c,model=m2"
    assert expand_variants({}) == [Variant("")] == expand_variants({"x": 1, "y": []})


def test_variant_labels_hash_long_or_structured_values_and_stay_unique() -> None:
    vs = expand_variants({"c": ["a b", {"k": 1}, "a b", 0.5]})
    labels = [v.label for v in vs]
    assert re.fullmatch(r"c=h[0-9a-f]{8}", labels[0]) and labels[2] == labels[0] + "#2"
    assert labels[3] == "c=0.5" and len(set(labels)) == 4


def test_record_x_variant_jobs_with_stable_ids() -> None:
    m = RecordMapper(inputs_of({"text": "string", "criteria": {"type": "string", "default": ""}}), {}, None)
    rows = [(0, {"id": "r1", "text": "a"}), (1, {"id": "r2", "text": "b"})]
    jobs = list(iter_jobs("B", rows, m, expand_variants({"criteria": ["x", "y"]})))
    assert [j.job_id for j in jobs] == [
        "B:r1:criteria=x",
        "B:r1:criteria=y",
        "B:r2:criteria=x",
        "B:r2:criteria=y",
    ]
    assert [j.run_id for j in jobs] == [
        "B.r1.criteria-x",
        "B.r1.criteria-y",
        "B.r2.criteria-x",
        "B.r2.criteria-y",
    ]
    assert jobs[1].inputs == {"text": "a", "criteria": "y"}  # a declared input gets the variant value
    assert list(iter_jobs("B", rows, m, [Variant("")]))[0].job_id == "B:r1"


def test_record_ids_from_a_column_a_default_field_or_a_content_hash_and_repeats_get_a_suffix() -> None:
    ins = inputs_of({"text": "string"})
    by_col = RecordMapper(ins, {}, "key")
    assert by_col.record_id({"key": 7, "text": "x"}) == "7"
    auto = RecordMapper(ins, {}, None)
    assert auto.record_id({"record_id": "R", "id": "I"}) == "R" and auto.record_id({"id": 3}) == "3"
    h = auto.record_id({"text": "x", "n": 1})
    assert re.fullmatch(r"h[0-9a-f]{12}", h) and h == auto.record_id({"n": 1, "text": "x"})
    rows = [(0, {"text": "same"}), (1, {"text": "same"}), (2, BadRow("broken"))]
    jobs = list(iter_jobs("B", rows, auto, [Variant("")]))
    assert jobs[1].record_id == jobs[0].record_id + "#2"
    assert len({j.run_id for j in jobs}) == 3
    assert jobs[2].record_id == "row2" and jobs[2].inputs is None and jobs[2].error == "broken"
    missing = list(iter_jobs("B", [(0, {"text": "t"})], by_col, [Variant("")]))[0]
    assert missing.inputs is None and "no value in the --record-id column 'key'" in missing.error


@given(st.text(min_size=1, max_size=80), st.text(min_size=1, max_size=80))
def test_run_ids_are_url_and_file_safe_and_distinct_for_distinct_record_ids(a: str, b: str) -> None:
    ra, rb = run_id_for("B", a, ""), run_id_for("B", b, "")
    assert re.fullmatch(r"[A-Za-z0-9_.\-]+", ra) and len(ra) <= 2 + 64
    assert "." not in ra[2:]  # the record part never holds the separator
    if a != b:
        assert ra != rb


def test_variant_run_ids_never_collide_with_sub_flow_runs() -> None:
    rid = run_id_for("B", "r1", "criteria=a b")
    assert rid.startswith("B.r1.criteria_a_b-") and "-" in rid.split(".")[-1]
    assert job_id("B", "r1", "criteria=a b") == "B:r1:criteria=a b"
    assert safe_part("ok-id_1") == "ok-id_1"


def test_columns_map_fields_to_inputs_with_dotted_paths() -> None:
    m = RecordMapper(
        inputs_of({"text": "string", "n": "integer", "record_id": {"type": "string", "default": ""}}),
        {"text": "body.title", "n": "count"},
        None,
    )
    m.check({"body": {"title": "T"}, "count": "3"}, "d.jsonl")
    assert m.to_inputs({"body": {"title": "T"}, "count": "3", "extra": 1}, "R", Variant("")) == {
        "text": "T",
        "n": "3",
        "record_id": "R",
    }


def test_one_input_and_one_field_map_to_each_other() -> None:
    m = RecordMapper(inputs_of({"prompt": {"type": "string", "default": "x"}}), {}, None)
    m.check({"id": "1", "text": "hello"}, "d.csv")
    assert m.to_inputs({"id": "1", "text": "hello"}, "1", Variant("")) == {"prompt": "hello"}


@pytest.mark.parametrize(
    ("inputs", "columns", "id_col", "first", "msg"),
    [
        ({"text": "string"}, {"nope": "x"}, None, {"x": 1}, "does not take"),
        ({"text": "string"}, {"text": "missing"}, None, {"x": 1}, "has no column 'missing'"),
        ({"text": "string"}, {}, "key", {"text": 1}, "no column 'key' for --record-id"),
        ({"text": "string", "n": "integer"}, {}, None, {"text": "a"}, "needs input\\(s\\) n"),
        (
            {"a": {"type": "string", "default": ""}, "b": {"type": "string", "default": ""}},
            {},
            None,
            {"x": 1, "y": 2},
            "none of the columns",
        ),
    ],
)
def test_mapping_problems_fail_before_any_job_runs(
    inputs: dict, columns: dict, id_col: str | None, first: dict, msg: str
) -> None:
    with pytest.raises(DatasetError, match=msg) as e:
        RecordMapper(inputs_of(inputs), columns, id_col).check(first, "d.csv")
    assert e.value.hint


def test_hydra_values_are_quoted_and_structured() -> None:
    assert hydra_value("it's a\\b") == "'it\\'s a\\\\b'"
    assert hydra_value([1, "x", None, True]) == "[1,'x',null,true]"
    assert hydra_value({"k": 1.5}) == "{'k':1.5}"
