"""SuperOptiX orchestras as its users run them: the orchestra file through the CLI, the
Python API in a fresh process (issue 15, item 15)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from server.helpers import LLMFLOW, base_env

# SuperOptiX's template (superoptix/templates/orchestra/orchestra.yaml.jinja2), abridged
ORCHESTRA = """\
orchestra:
  id: sdlc
  workspace: {type: local_fs, path: "./orchestra_workspaces/sdlc"}
  execution: {strategy: "sequential", max_parallel_tasks: 2, task_timeout_seconds: 300, retry_strategy: "none"}
agents: [developer, qa_engineer, writer]
tasks:
  - name: task_one
    agent: developer
    description: >
      Start working on '{goal}'.
  - name: task_two
    agent: qa_engineer
    description: "Test the work."
    context: ["task_one"]
  - name: task_three
    agent: writer
    description: "Write it up."
    context: ["task_two"]
"""

SCRIPT = """
import json, sys
from llmflow import Orchestra
def broken(text):
    raise ValueError("the agent could not parse its input")
orch = Orchestra({"clean": broken, "writer": {"model": "fake:"}})
res = orch.run_pipeline_sync("raw text", ["clean", "writer"])
print(json.dumps({"success": res["success"], "steps": res["steps"]}, default=str))
"""


def test_a_failed_task_leaves_its_dependents_out_and_the_run_failed(tmp_path: Path) -> None:
    proj = tmp_path / "proj" / "orchestras"
    proj.mkdir(parents=True)
    (proj / "sdlc_orchestra.yaml").write_text(ORCHESTRA)
    home = tmp_path / "home"
    env = base_env(home, LLMFLOW_MODEL_TASK_TWO="fake:?fail=500")
    p = subprocess.run(
        [LLMFLOW, "run", "proj/orchestras/sdlc_orchestra.yaml", "-i", "goal=a todo app", "--json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 1, p.stderr
    run = json.loads(p.stdout)
    assert run["status"] == "FAILED" and "task_two" in run["error"]
    # the workspace is relative to where the command ran, as in SuperOptiX
    ws = tmp_path / "orchestra_workspaces" / "sdlc"
    assert sorted(f.name for f in ws.iterdir()) == ["task_one_result.json"]
    assert json.loads((ws / "task_one_result.json").read_text())["task_name"] == "task_one"
    assert "Traceback" not in p.stderr


def test_run_file_results_follow_superoptix(tmp_path: Path) -> None:
    (tmp_path / "sdlc_orchestra.yaml").write_text(ORCHESTRA)
    code = (
        "import json\nfrom llmflow import Orchestra\n"
        "res = Orchestra({}).run_file_sync('sdlc_orchestra.yaml', goal='a todo app')\n"
        "print(json.dumps(res, default=str))\n"
    )
    env = base_env(tmp_path / "home", LLMFLOW_MODEL_TASK_TWO="fake:?fail=500")
    p = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout.strip().splitlines()[-1])
    assert res["success"] is False
    assert set(res["task_results"]) == {"task_one", "task_two"}  # task_three never ran: absent
    assert (
        res["task_results"]["task_two"]["success"] is False
        and "500" in res["task_results"]["task_two"]["error"]
    )
    assert (
        res["stats"]["total_tasks"] == 3
        and res["stats"]["failed_tasks"] == 1
        and res["stats"]["completed_tasks"] == 1
    )
    assert (tmp_path / "orchestra_workspaces" / "sdlc" / "task_one_result.json").is_file()
    assert "Traceback" not in p.stderr


def test_an_agents_exception_is_the_tasks_error_without_a_traceback(tmp_path: Path) -> None:
    p = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=tmp_path,
        env=base_env(tmp_path / "home"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout.strip().splitlines()[-1])
    assert res["success"] is False
    assert res["steps"][0]["error"] == "ValueError: the agent could not parse its input"
    assert "Traceback" not in p.stderr, p.stderr
