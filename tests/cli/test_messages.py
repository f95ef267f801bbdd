"""Messages a newcomer meets: input errors name the flow file (CLI and Python), the Python
hint is not a CLI flag, a re-run says so instead of "Run recovered by ...", and "Loading
model" appears once per model call."""

from __future__ import annotations

import json
import subprocess
import sys

from .terminal import in_terminal, piped

FLOW = "name: f\ninputs:\n  n: {type: integer}\nsteps:\n  - id: a\n    llm: 'hi {{ inputs.n }}'\n  - id: b\n    llm: '{{ steps.a.output }}'\n"


def test_input_errors_name_the_file_in_the_cli_and_in_python(tmp_path):
    (tmp_path / "f.yaml").write_text(FLOW)
    p = piped(tmp_path, "run", "f.yaml", "-i", "n=abc")
    assert (
        "error: f.yaml: inputs.n: input 'n' must be an integer, got str 'abc'" in p.stderr
        and "<flow>" not in p.stderr
    )
    code = "import llmflow\ntry:\n    llmflow.run_sync('f.yaml', {}, models='fake:')\nexcept llmflow.FlowValidationError as e:\n    print(e)\n"
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"LLMFLOW_HOME": str(tmp_path), "LLMFLOW_BLOCK_REAL_MODELS": "1", "PATH": "/usr/bin:/bin"},
        timeout=120,
    ).stdout
    assert "f.yaml: inputs.n: missing required input 'n' (integer) (hint: add 'n' to the run's inputs)" in out
    assert "--input" not in out and "<flow>" not in out


def test_a_rerun_says_it_reruns_the_step(tmp_path):
    (tmp_path / "f.yaml").write_text(FLOW)
    run_id = json.loads(piped(tmp_path, "run", "f.yaml", "-i", "n=1", "--json").stdout)["id"]
    p = piped(tmp_path, "runs", "rerun", run_id, "--step", "a", "--downstream")
    assert p.returncode == 0, p.stderr
    assert f"run {run_id}: re-running step a and what depends on it" in p.stderr
    assert "RUN_RESUMED            Re-running step a" in p.stdout
    assert "recovered" not in (p.stdout + p.stderr).lower()
    r = in_terminal(tmp_path, "runs", "rerun", "last", "--step", "b")
    assert r.code == 0 and "re-running step b" in r.text and "recovered" not in r.text.lower()


def test_loading_model_is_said_once_per_call(tmp_path):
    (tmp_path / "f.yaml").write_text(FLOW)
    run_id = json.loads(piped(tmp_path, "run", "f.yaml", "-i", "n=1", "--json").stdout)["id"]
    events = [
        json.loads(line) for line in piped(tmp_path, "runs", "events", run_id, "--json").stdout.splitlines()
    ]
    calls = [e for e in events if e["type"] == "LLM_GENERATING"]
    loading = [e for e in events if "Loading model" in e["message"]]
    assert len(calls) == 2 and len(loading) == 2
