"""The evaluation examples run as their READMEs say, offline on their scripted models."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def llmflow(home: Path, *args: str, scripts: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMFLOW_")}
    env.update(
        LLMFLOW_HOME=str(home), LLMFLOW_BLOCK_REAL_MODELS="1", LLMFLOW_FAKE_SCRIPTS=str(EXAMPLES / scripts)
    )
    return subprocess.run(
        [sys.executable, "-m", "llmflow", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=EXAMPLES.parent,
        timeout=300,
    )


def test_eval_judges_compares_model_x_criteria(tmp_path: Path) -> None:
    p = llmflow(
        tmp_path, "eval", "examples/eval-judges", "--format", "json", scripts="eval-judges/fake-scripts.yaml"
    )
    assert p.returncode == 0, p.stderr
    v = json.loads(p.stdout)
    rates = {
        (x["parameters"]["model"], x["parameters"]["criteria"]): x["pass_rate"]
        for x in v["summary"]["variants"]
    }
    assert (
        len(rates) == 4
        and rates[("fake:strict", "ordinary")] == 1.0
        and rates[("fake:lenient", "hate")] == 0.0
    )
    assert [m["name"] for m in v["metrics"]] == ["verdict", "well_formed", "reasoned"]
    judged = [r["scores"]["reasoned"]["judge_run_id"] for r in v["results"]]
    assert len(set(judged)) == 24
    gate = llmflow(
        tmp_path,
        "eval",
        "examples/eval-judges",
        "--min-pass-rate",
        "80%",
        "--format",
        "junit",
        "-o",
        str(tmp_path / "j.xml"),
        scripts="eval-judges/fake-scripts.yaml",
    )
    assert gate.returncode == 1 and "pass rate under 80.0%" in gate.stderr and (tmp_path / "j.xml").exists()
    one = llmflow(
        tmp_path,
        "eval",
        "examples/eval-judges",
        "--variants",
        "model=fake:strict",
        "--metric",
        "reasoned",
        "--format",
        "json",
        scripts="eval-judges/fake-scripts.yaml",
    )
    assert one.returncode == 0, one.stderr
    assert [m["name"] for m in json.loads(one.stdout)["metrics"]] == ["reasoned"]


def test_eval_sentiment_playbook_as_the_readme_shows(tmp_path: Path) -> None:
    p = llmflow(
        tmp_path,
        "eval",
        "examples/eval-sentiment",
        "--model",
        "fake:sentiment",
        scripts="eval-sentiment/fake-scripts.yaml",
    )
    assert p.returncode == 0, p.stderr
    for line in (
        "PASS  positive_sentiment_clear  (confidence 1.00)",
        "FAIL  neutral_statement  (confidence 0.30): bdd: semantic meaning differs significantly",
        "2/3 scenarios passed (66.7%)",
        "quality gate: GOOD",
    ):
        assert line in p.stdout
