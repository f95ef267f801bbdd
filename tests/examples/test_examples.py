"""Every example runs on the fake model, through the CLI a user would type."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from llmflow.cli.main import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run_cli(args: list[str], capsys, monkeypatch, **env: str) -> tuple[int, dict]:
    monkeypatch.setenv("LLMFLOW_MODEL", "fake:")
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(SystemExit) as e:
        main(["run", *args, "--json", "--no-human"])
    cap = capsys.readouterr()
    assert cap.out.strip(), f"no JSON on stdout (exit {e.value.code}); stderr:\n{cap.err}"
    return e.value.code, json.loads(cap.out)


def test_hello(capsys, monkeypatch):
    code, v = run_cli([str(EXAMPLES / "hello"), "--prompt", "Why is the sky blue?"], capsys, monkeypatch)
    assert code == 0
    assert v["outputs"]["result"].startswith("fake answer to: Why is the sky blue?")


def test_review_broadcasts_to_three_critics_and_writes_a_report(capsys, monkeypatch):
    code, v = run_cli(
        [str(EXAMPLES / "review"), "--input", "text=The council approved the budget."], capsys, monkeypatch
    )
    assert code == 0, v["error"]
    critics = next(s for s in v["steps"] if s["id"] == "critics")
    assert sorted(a["unit"] for a in critics["attempts"]) == ["accuracy", "fairness", "tone"]
    report = Path(v["workspace"]) / v["outputs"]["file"]
    assert "Majority verdict" in report.read_text()


def test_review_skips_the_critics_for_other_articles(capsys, monkeypatch, tmp_path):
    scripts = tmp_path / "s.yaml"
    scripts.write_text("classifier: {answers: [other]}\n")
    code, v = run_cli(
        [str(EXAMPLES / "review"), "--input", "text=lorem", "--model", "classify=fake:classifier"],
        capsys,
        monkeypatch,
        LLMFLOW_FAKE_SCRIPTS=str(scripts),
    )
    assert code == 0
    status = {s["id"]: s["status"] for s in v["steps"]}
    assert status == {"classify": "COMPLETED", "critics": "SKIPPED", "report": "SKIPPED", "save": "SKIPPED"}


@pytest.mark.parametrize(
    ("answer", "branch"), [("billing", "billing"), ("Technical.", "technical"), ("no idea", "general")]
)
def test_support_router_routes_with_a_default(capsys, monkeypatch, tmp_path, answer, branch):
    scripts = tmp_path / "s.yaml"
    scripts.write_text(f"triage: {{answers: ['{answer}']}}\n")
    code, v = run_cli(
        [str(EXAMPLES / "support-router"), "--input", "message=help", "--model", "triage=fake:triage"],
        capsys,
        monkeypatch,
        LLMFLOW_FAKE_SCRIPTS=str(scripts),
    )
    assert code == 0
    ran = {s["id"] for s in v["steps"] if s["status"] == "COMPLETED"}
    assert branch in ran and not ({"billing", "technical", "general"} - {branch}) & ran
    assert v["outputs"]["route"] == [branch]


def test_quarkus_bootstrap_splits_the_coders_files_and_a_failing_test_fails_the_run(
    capsys, monkeypatch, tmp_path
):
    env = {
        "LLMFLOW_MODEL_CODER": "fake:coder",
        "LLMFLOW_FAKE_SCRIPTS": str(EXAMPLES / "quarkus-bootstrap-v1" / "fake-scripts.yaml"),
    }
    ws = tmp_path / "project"
    code, v = run_cli(
        [
            str(EXAMPLES / "quarkus-bootstrap-v1"),
            "--workspace",
            str(ws),
            "parameters.test_command=test -f pom.xml",
        ],
        capsys,
        monkeypatch,
        **env,
    )
    assert code == 0, v["error"]
    assert (ws / "PLAN.md").exists() and (ws / "src/main/java/org/acme/GreetingResource.java").exists()
    assert v["outputs"]["tests"] == 0
    code, v = run_cli(
        [
            str(EXAMPLES / "quarkus-bootstrap-v1"),
            "--workspace",
            str(ws),
            "parameters.test_command='echo Tests run: 1, Failures: 1; exit 1'",
        ],
        capsys,
        monkeypatch,
        **env,
    )
    assert code == 1
    assert v["status"] == "FAILED" and "maven_test" in v["error"]


def test_quarkus_default_models_are_agent_runners_and_env_overrides_them(capsys, monkeypatch):
    from llmflow.engine.models import resolve_model
    from llmflow.model.loader import load_flow

    f = load_flow(EXAMPLES / "quarkus-bootstrap-v1").flow
    assert resolve_model(f.step("planner"), f)[0] == "ollama:gemma3:27b"
    assert resolve_model(f.step("coder"), f)[0] == "ollama:qwen3-coder:latest"
    assert resolve_model(f.step("planner"), f, env={"OLLAMA_PLANNER_MODEL": "llama3.1"}) == (
        "ollama:llama3.1",
        "environment OLLAMA_PLANNER_MODEL",
    )


def test_panel_conductor_with_human_confirmation(capsys, monkeypatch):
    code, v = run_cli([str(EXAMPLES / "panel"), "--input", "topic=tabs or spaces"], capsys, monkeypatch)
    assert code == 0
    chat = next(s for s in v["steps"] if s["id"] == "chat")
    assert [t["participant"] for t in chat["output"]["transcript"]] == ["optimist", "skeptic", "editor"]
    assert v["outputs"]["turns"] == 3


def test_panel_human_rejects_the_second_turn(tmp_path):
    env = {**os.environ, "LLMFLOW_MODEL": "fake:", "LLMFLOW_HOME": str(tmp_path)}
    p = subprocess.run(
        [sys.executable, "-m", "llmflow", "run", str(EXAMPLES / "panel"), "--json"],
        input="\nn\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    v = json.loads(p.stdout)
    chat = next(s for s in v["steps"] if s["id"] == "chat")
    assert [t["participant"] for t in chat["output"]["transcript"]] == ["optimist"]


@pytest.mark.parametrize("name", ["judges", "allinone"])
def test_buttermilk_style_examples_run(capsys, monkeypatch, tmp_path, name):
    d = EXAMPLES / name
    if not d.exists():
        pytest.skip(f"examples/{name} not present")
    from llmflow.model.loader import load_flow

    # the examples' results files (storage:) go here, not into the checkout
    monkeypatch.setenv("LLMFLOW_RESULTS_PATH", str(tmp_path / "results"))
    monkeypatch.setenv("LLMFLOW_DATA_PATH", str(tmp_path / "data"))
    f = load_flow(d).flow
    args = [str(d)]
    for k, spec in f.inputs.items():
        if spec.is_required:
            args += ["--input", f"{k}=a sample text"]
    code, v = run_cli(args, capsys, monkeypatch)
    assert code == 0, v["error"]
    if name == "judges":  # its storage group's results file: one row per step result
        rows = [json.loads(x) for x in (tmp_path / "results" / "judges.jsonl").read_text().splitlines()]
        assert rows and {r["run_id"] for r in rows} == {v["id"]}
    else:  # allinone's only file entry, tox_train, is a dataset: never written
        assert not (tmp_path / "data").exists()


def test_every_example_has_a_readme_with_a_run_command():
    for d in sorted(p for p in EXAMPLES.iterdir() if p.is_dir()):
        readme = d / "README.md"
        assert readme.exists(), f"{d.name} has no README.md"
        assert (
            f"llmflow run examples/{d.name}" in readme.read_text() or "llmflow batch" in readme.read_text()
        ), d.name


@pytest.mark.slow
@pytest.mark.real_model
def test_hello_on_the_embedded_model_streams_text(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("LLMFLOW_MODEL", "LLMFLOW_BLOCK_REAL_MODELS")}
    env["LLMFLOW_HOME"] = str(tmp_path)
    p = subprocess.run(
        [sys.executable, "-m", "llmflow", "run", str(EXAMPLES / "hello"), "--prompt", "Why is the sky blue?"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    assert "[answer] " in p.stdout  # the streamed text, as it came
    assert "RUN_COMPLETED" in p.stdout
    assert (
        "local:gemma3-270m"
        in subprocess.run(
            [
                sys.executable,
                "-m",
                "llmflow",
                "runs",
                "show",
                p.stdout.split("run ")[-1].split(":")[0].strip(),
            ],
            capture_output=True,
            text=True,
            env=env,
        ).stdout
    )
