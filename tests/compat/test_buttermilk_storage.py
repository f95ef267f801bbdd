"""A flow's ``storage:`` honoured outside batch (issue 15, item 13): a console run and an
API run append their results as JSONL rows to the file store the flow configures, in
Buttermilk's composed shape (``/storage@trans.storage: [results, tja]``); the dataset entry
beside it is never written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from server.helpers import LiveServer, base_env, wait_until

LLMFLOW = str(Path(sys.executable).parent / "llmflow")
TRANS = """\
defaults:
  - _self_
  - /storage@trans.storage: [results, tja]
trans:
  name: trans
  agents:
    judge: {role: judge, description: applies the criteria}
  inputs:
    prompt: {type: string}
  steps:
    - id: judge
      llm: {agent: judge, prompt: "Judge: {{ inputs.prompt }}"}
  outputs:
    verdict: "{{ steps.judge.output }}"
"""
RECORDS = '{"record_id": "r1", "text": "a record"}\n'


def conf(root: Path, results: str) -> Path:
    """conf/flows/trans.yaml, conf/storage/{results,tja}.yaml and the tja dataset under ``root``."""
    (root / "conf" / "flows").mkdir(parents=True)
    (root / "conf" / "storage").mkdir()
    (root / "conf" / "flows" / "trans.yaml").write_text(TRANS)
    (root / "conf" / "storage" / "results.yaml").write_text(f"results: {{type: file, path: '{results}'}}\n")
    data = root / "data" / "tja_train.jsonl"
    data.parent.mkdir()
    data.write_text(RECORDS)
    (root / "conf" / "storage" / "tja.yaml").write_text(f"tja: {{type: file, path: '{data}'}}\n")
    return data


def rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_console_run_writes_its_results_to_the_flows_file_store(tmp_path: Path) -> None:
    data = conf(tmp_path, "${oc.env:LLMFLOW_RESULTS_PATH,results}/trans.jsonl")
    (tmp_path / "home").mkdir()
    env = base_env(tmp_path / "home")
    for prompt in ("first", "second"):
        p = subprocess.run(
            [LLMFLOW, "run", "trans", "--prompt", prompt, "--no-human"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert p.returncode == 0, p.stderr
    # relative to where the command ran, as Buttermilk's ./data/; one row per step result, appended
    got = rows(tmp_path / "results" / "trans.jsonl")
    assert [r["outputs"].split(" [")[0] for r in got] == [
        "fake answer to: Judge: first",
        "fake answer to: Judge: second",
    ]
    first = got[0]
    assert first["flow"] == "trans" and first["inputs"] == {"prompt": "first"} and first["error"] is None
    assert first["agent_info"] == {"agent_id": "judge", "role": "judge", "model": "fake:"}
    assert first["session_id"] == first["run_id"] and first["call_id"].startswith(first["run_id"] + ":judge")
    assert got[0]["run_id"] != got[1]["run_id"]
    assert data.read_text() == RECORDS  # the dataset entry holds records: never written


def test_an_api_run_writes_its_results_to_the_flows_file_store(make_app: Any, home: Path) -> None:
    out = home / "out" / "trans.jsonl"
    data = conf(home, str(out))
    with LiveServer(make_app(worker_enabled=True)) as srv, srv.client() as c:
        # Buttermilk's own request: POST /flow/{name} runs the flow and answers with it
        r = c.post("/flow/trans", json={"prompt": "over http", "record_id": "r1"})
        assert r.status_code == 200 and r.json()["status"] == "COMPLETED", r.text
        run_id = r.json()["run_id"]
        got = wait_until(lambda: out.exists() and rows(out), 30, what="the results row")
        # the native API too
        rid = c.post("/api/v1/runs", json={"flow": "trans", "inputs": {"prompt": "native"}}).json()["id"]
        wait_until(lambda: len(rows(out)) == 2, 30, what="the second results row")
    assert len(got) == 1 and got[0]["run_id"] == run_id and got[0]["record_id"] == "r1"
    assert got[0]["outputs"].startswith("fake answer to: Judge: over http")
    assert [r["run_id"] for r in rows(out)] == [run_id, rid]
    assert data.read_text() == RECORDS


def test_results_files_include_buttermilks_save_and_never_a_dataset_or_a_cloud_path(tmp_path: Path) -> None:
    from llmflow.observe.storage import result_targets

    data = tmp_path / "tja_train.jsonl"
    data.write_text(RECORDS)
    (tmp_path / "old.jsonl").write_text('{"run_id": "r", "call_id": "r:a#3"}\n')  # written by an earlier run
    flow = {
        "storage": {
            "results": {"type": "file", "path": str(tmp_path / "new" / "results.jsonl")},
            "old": {"path": str(tmp_path / "old.jsonl")},
            "tja": {"type": "file", "path": str(data)},
            "gcs": {"type": "file", "path": "gs://bucket/results.jsonl"},
            "bq": {"type": "bigquery", "dataset_id": "toxicity", "table_id": "flow"},
            "csv": {"type": "file", "path": str(tmp_path / "records.csv")},
            # a dataset not fetched yet (examples/allinone's tox_train): its reading options say so
            "train": {
                "type": "file",
                "path": str(tmp_path / "missing.jsonl"),
                "randomize": True,
                "batch_size": 9,
            },
        },
        "parameters": {"save": {"type": "file", "path": str(tmp_path / "save.jsonl")}},
    }
    targets, skipped = result_targets(flow)
    assert [name for name, _ in targets] == ["results", "old", "parameters.save"]
    assert [s.split(":")[0] for s in skipped] == ["tja", "gcs", "train"]
    assert "holds records" in skipped[0] and "not a local path" in skipped[1]
    assert "is a dataset (it sets randomize)" in skipped[2]
    assert not (tmp_path / "missing.jsonl").exists()
