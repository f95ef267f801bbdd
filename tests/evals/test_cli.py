"""`llmflow eval` and `llmflow evals` as a user runs them: subprocesses on a temporary
project with scripted fake models, SIGKILL and resume, CI gates, JUnit, comparisons."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from llmflow.store.factory import open_store

ROOT = Path(__file__).resolve().parents[2]

FLOW = """
name: classify
inputs:
  text: {type: string}
steps:
  - id: label
    llm: {prompt: "Classify the sentiment of: {{ inputs.text }}"}
"""

SCRIPTS = """
good:
  answers: {great: positive, awful: negative, fine: neutral, number: positive}
bad:
  answers: {great: positive, awful: positive, fine: neutral}
judge:
  answers: ['{"score": 0.8, "reason": "reads well"}']
"""

DATA = [
    {"id": "r1", "text": "a great day", "label": "positive"},
    {"id": "r2", "text": "an awful day", "label": "negative"},
    {"id": "r3", "text": "a fine day", "label": "neutral"},
]


def env_for(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMFLOW_")}
    env.update(
        {
            "LLMFLOW_HOME": str(home),
            "LLMFLOW_MODEL": "fake:good",
            "LLMFLOW_BLOCK_REAL_MODELS": "1",
            "LLMFLOW_FAKE_SCRIPTS": str(home / "scripts.yaml"),
            **extra,
        }
    )
    return env


def llmflow(home: Path, *args: str, timeout: float = 120, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "llmflow", *args],
        capture_output=True,
        text=True,
        env=env_for(home, **extra),
        timeout=timeout,
        cwd=home,
    )


def project(tmp_path: Path, rows: list[dict[str, Any]] | None = None) -> Path:
    (tmp_path / "flow.yaml").write_text(FLOW)
    (tmp_path / "scripts.yaml").write_text(SCRIPTS)
    (tmp_path / "cases.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows or DATA))
    return tmp_path


def eval_ids(home: Path) -> list[str]:
    p = llmflow(home, "evals", "list", "--json")
    assert p.returncode == 0, p.stderr
    return [e["id"] for e in json.loads(p.stdout)]


def test_an_evaluation_is_stored_listed_and_shown_with_links_to_its_runs(tmp_path: Path) -> None:
    home = project(tmp_path)
    p = llmflow(
        home,
        "eval",
        "flow.yaml",
        "--data",
        "cases.jsonl",
        "--metric",
        "exact",
        "--metric",
        "{type: judge, rubric: 'Is the label a sentiment?', model: \"fake:judge\"}",
        "--format",
        "json",
    )
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["summary"]["overall"]["pass_rate"] == 1.0 and out["expected_column"] == "label"
    (eid,) = eval_ids(home)
    assert eid == out["id"]
    shown = json.loads(llmflow(home, "evals", "show", eid, "--json").stdout)
    assert [r["record_id"] for r in shown["results"]] == ["r1", "r2", "r3"]
    store = open_store(None, project_dir=home)
    try:
        for r in shown["results"]:
            run = store.get_run(r["run_id"])
            assert run is not None and run.batch_id == eid and run.outputs == {"result": r["output"]}
            judge = store.get_run(r["scores"]["judge"]["judge_run_id"])
            assert (
                judge.run_type == "judge"
                and judge.metadata["judged_run"] == r["run_id"]
                and r["scores"]["judge"]["score"] == 0.8
            )
    finally:
        store.close()
    text = llmflow(home, "evals", "list").stdout
    assert eid in text and "3/3" in text and "100.0%" in text
    table = llmflow(home, "evals", "show", eid).stdout
    assert "overall: 3/3 passed (100.0%)" in table


def test_min_pass_rate_gates_ci_and_junit_is_written(tmp_path: Path) -> None:
    home = project(tmp_path)
    p = llmflow(
        home,
        "eval",
        "flow.yaml",
        "-d",
        "cases.jsonl",
        "--model",
        "fake:bad",
        "--min-pass-rate",
        "80%",
        "--format",
        "junit",
        "-o",
        "report.xml",
    )
    assert p.returncode == 1, p.stderr
    assert "pass rate under 80.0%" in p.stderr and "Traceback" not in p.stderr
    from junitparser import JUnitXml

    xml = JUnitXml.fromfile(str(home / "report.xml"))
    assert (xml.tests, xml.failures, xml.errors) == (3, 1, 0)
    ok = llmflow(
        home,
        "eval",
        "flow.yaml",
        "-d",
        "cases.jsonl",
        "--model",
        "fake:bad",
        "--min-pass-rate",
        "0.6",
        "--format",
        "markdown",
    )
    assert ok.returncode == 0, ok.stderr
    assert "**2/3 passed (66.7%)**" in ok.stdout


def test_compare_shows_the_planted_regression(tmp_path: Path) -> None:
    home = project(tmp_path)
    assert llmflow(home, "eval", "flow.yaml", "-d", "cases.jsonl", "--model", "fake:good").returncode == 0
    assert llmflow(home, "eval", "flow.yaml", "-d", "cases.jsonl", "--model", "fake:bad").returncode == 0
    new, old = eval_ids(home)
    p = llmflow(home, "evals", "compare", old, new, "--json")
    c = json.loads(p.stdout)
    assert [r["record_id"] for r in c["regressed"]] == ["r2"] and c["improved"] == []
    assert c["variants"][0]["metrics"]["exact"]["delta"] == -0.333333
    text = llmflow(home, "evals", "compare", old, new)
    assert "regressed: 1:" in text.stdout and "r2: pass 1.000 -> fail 0.000" in text.stdout
    assert llmflow(home, "evals", "compare", old, new, "--fail-on-regression").returncode == 1
    assert llmflow(home, "evals", "compare", new, old, "--fail-on-regression").returncode == 0


def test_model_variants_are_compared_side_by_side(tmp_path: Path) -> None:
    home = project(tmp_path)
    p = llmflow(
        home,
        "eval",
        "flow.yaml",
        "-d",
        "cases.jsonl",
        "--variants",
        "model=fake:good,fake:bad",
        "--format",
        "json",
    )
    assert p.returncode == 0, p.stderr
    vs = {v["parameters"]["model"]: v for v in json.loads(p.stdout)["summary"]["variants"]}
    assert (vs["fake:good"]["passed"], vs["fake:bad"]["passed"]) == (3, 2)
    assert all(
        v["tokens"] > 0 and v["latency_p50"] is not None and v["latency_p95"] is not None for v in vs.values()
    )
    table = llmflow(home, "evals", "show", json.loads(p.stdout)["id"]).stdout
    assert "model=fake:good" in table and "model=fake:bad" in table and "p95" in table


def test_bad_input_exits_2_with_a_message_and_records_nothing(tmp_path: Path) -> None:
    home = project(tmp_path)
    p = llmflow(home, "eval", "flow.yaml", "-d", "cases.jsonl", "--metric", "exackt")
    assert p.returncode == 2 and "unknown metric 'exackt'" in p.stderr and "Traceback" not in p.stderr
    (home / "nolabel.jsonl").write_text('{"text": "x"}\n')
    p = llmflow(home, "eval", "flow.yaml", "-d", "nolabel.jsonl", "--metric", "exact")
    assert p.returncode == 2 and "no expected column" in p.stderr and "--expected COLUMN" in p.stderr
    p = llmflow(home, "eval", "flow.yaml", "-d", "cases.jsonl", "--min-pass-rate", "lots")
    assert p.returncode == 2 and "not a number" in p.stderr
    p = llmflow(home, "eval", "--resume", "eval-nope")
    assert p.returncode == 2 and "no evaluation 'eval-nope'" in p.stderr
    assert eval_ids(home) == []
    store = open_store(None, project_dir=home)
    try:
        assert store.list_batches() == []
    finally:
        store.close()


def test_sigkill_mid_eval_then_resume_scores_every_record_exactly_once(tmp_path: Path) -> None:
    rows = [{"id": f"r{i}", "text": f"number {i}", "label": "positive"} for i in range(20)]
    home = project(tmp_path, rows)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llmflow",
            "eval",
            "flow.yaml",
            "-d",
            "cases.jsonl",
            "-j",
            "3",
            "--metric",
            "exact",
            "--metric",
            "{type: judge, rubric: 'Is it a sentiment?', model: \"fake:judge\"}",
        ],
        env=env_for(home, LLMFLOW_MODEL="fake:good?latency=0.3"),
        cwd=home,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    db = home / ".llmflow" / "llmflow.db"
    try:
        deadline = time.monotonic() + 90
        scored = 0
        while time.monotonic() < deadline and scored < 5:
            time.sleep(0.1)
            if db.exists():
                s = open_store(None, project_dir=home)
                try:
                    evs = s.list_evals()
                    scored = len(s.eval_results(evs[0].id)) if evs else 0
                finally:
                    s.close()
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    (eid,) = eval_ids(home)
    store = open_store(None, project_dir=home)
    try:
        before = store.eval_results(eid)
        assert 5 <= len(before) < 20 and store.get_eval(eid).status == "RUNNING"
        scored_before = {r.job_key: r.run_seq for r in before}
        p = llmflow(home, "eval", "--resume", eid, "--format", "json")
        assert p.returncode == 0, p.stderr
        after = store.eval_results(eid)
        assert sorted(r.record_id for r in after) == sorted(
            f"r{i}" for i in range(20)
        )  # each record exactly once
        assert all(r.passed and r.status == "COMPLETED" for r in after)
        for r in after:  # a record scored before the kill kept its result
            if r.job_key in scored_before:
                assert r.run_seq == scored_before[r.job_key]
        judges = [x for x in store.list_runs(limit=500) if x.run_type == "judge"]
        assert sorted(j.metadata["record_id"] for j in judges) == sorted(
            f"r{i}" for i in range(20)
        )  # one judgment per record
        assert store.get_eval(eid).status == "COMPLETED"
        assert json.loads(p.stdout)["summary"]["overall"]["passed"] == 20
    finally:
        store.close()


def test_a_playbook_prints_superoptix_results_and_its_gate(tmp_path: Path) -> None:
    ex = ROOT / "examples" / "eval-sentiment"
    p = llmflow(
        tmp_path,
        "eval",
        str(ex / "sentiment_analyzer_playbook.yaml"),
        "--model",
        "fake:sentiment",
        "--format",
        "json",
        LLMFLOW_FAKE_SCRIPTS=str(ex / "fake-scripts.yaml"),
    )
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["success"] is True and out["summary"] == {
        "total": 3,
        "passed": 2,
        "failed": 1,
        "pass_rate": "66.7%",
    }
    d = out["bdd_results"]["detailed_results"]
    assert [x["scenario_name"] for x in d] == [
        "positive_sentiment_clear",
        "negative_sentiment_clear",
        "neutral_statement",
    ]
    assert d[2]["passed"] is False and d[2]["failure_reason"] and d[0]["confidence_score"] >= 0.6
    assert out["quality_gate"]["status"] == "GOOD"
    table = llmflow(
        tmp_path,
        "agent",
        "evaluate",
        str(ex / "sentiment_analyzer_playbook.yaml"),
        "--model",
        "fake:sentiment",
        LLMFLOW_FAKE_SCRIPTS=str(ex / "fake-scripts.yaml"),
    )
    assert (
        table.returncode == 0
        and "FAIL  neutral_statement" in table.stdout
        and "quality gate: GOOD" in table.stdout
    )


def test_a_playbook_without_scenarios_reports_no_bdd_specifications(tmp_path: Path) -> None:
    project(tmp_path)
    pb = (ROOT / "examples" / "eval-sentiment" / "sentiment_analyzer_playbook.yaml").read_text()
    agents = tmp_path / "proj" / "agents" / "bare" / "playbook"
    agents.mkdir(parents=True)
    (agents / "bare_playbook.yaml").write_text(pb.split("  feature_specifications:")[0])
    p = llmflow(tmp_path, "agent", "evaluate", "bare", "--format", "json")
    assert p.returncode == 1
    out = json.loads(p.stdout)
    assert (
        out["success"] is False
        and out["message"] == "No BDD specifications defined in feature_specifications"
    )
    assert out["summary"]["total"] == 0
    missing = llmflow(tmp_path, "agent", "evaluate", "ghost")
    assert missing.returncode == 2 and "no playbook for agent 'ghost'" in missing.stderr
