"""FlowRunner (vibesse/langpad) flow files run as llmflow flows through the CLI: converted
on load with a provenance note (issue 15, item 16)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from server.helpers import LLMFLOW, base_env

# the app's normalised state: steps name their actions, actions live in a map by id
STORY = {
    "id": "f1",
    "name": "Story",
    "variables": [{"name": "TOPIC", "value": "tea"}],
    "steps": [
        {"id": "s1", "name": "Draft", "actionIds": ["a1", "a2"]},
        {"id": "s2", "name": "Title", "actionIds": ["a3"]},
    ],
    "actions": {
        "a1": {
            "id": "a1",
            "selectedModel": "gpt-4o",
            "temperature": 0.7,
            "systemPromptEnabled": True,
            "systemPrompt": "Be brief.",
            "messages": [
                {"id": "m1", "role": "user", "content": "Write about {{$var.TOPIC}}{{$step2.action1.output}}"}
            ],
        },
        "a2": {
            "id": "a2",
            "selectedModel": "gpt-4o-mini",
            "messages": [{"id": "m2", "role": "user", "content": "Facts on { $var.TOPIC }"}],
        },
        "a3": {
            "id": "a3",
            "messages": [
                {
                    "id": "m3",
                    "role": "user",
                    "content": "Title for: {{$step1.action1.output}} / {{$step1.action2.output}} {{$var.UNSET}}",
                }
            ],
        },
    },
}


def llmflow(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return subprocess.run(
        [LLMFLOW, *args], cwd=tmp_path, env=base_env(home), capture_output=True, text=True, timeout=120
    )


def write(tmp_path: Path, doc: dict[str, Any], name: str = "story.json") -> str:
    (tmp_path / name).write_text(json.dumps(doc))
    return name


def test_a_flowrunner_file_loads_with_a_provenance_note_and_runs(tmp_path: Path) -> None:
    f = write(tmp_path, STORY)
    shown = llmflow(tmp_path, "flows", "show", f)
    assert shown.returncode == 0, shown.stderr
    assert "Converted on load from the FlowRunner flow file story.json" in shown.stdout
    assert (
        "step1 [parallel] <- step1_action1, step1_action2" in shown.stdout
        and "step2_action1 [llm] <- step1" in shown.stdout
    )
    p = llmflow(tmp_path, "run", f, "--json")
    assert p.returncode == 0, p.stderr
    run = json.loads(p.stdout)
    assert run["status"] == "COMPLETED" and run["inputs"] == {"TOPIC": "tea", "UNSET": ""}
    # {{$var.NAME}} / { $var.NAME } are the inputs; {{$stepN.actionM.output}} an earlier output;
    # a forward reference ({{$step2...}} in step 1) is empty, as in FlowRunner
    out = run["outputs"]["action1"]
    assert (
        out.startswith("fake answer to: Title for: fake answer to: Write about tea")
        and "$step" not in out
        and "$var" not in out
    )
    p = llmflow(tmp_path, "run", f, "-i", "TOPIC=coffee", "--json")
    assert "Write about coffee" in json.loads(p.stdout)["outputs"]["action1"]


def test_inline_actions_and_a_failing_action_fails_the_run(tmp_path: Path) -> None:
    """Steps with their actions inline; a failed action fails the run (FlowRunner carried on
    and never marked the run failed) and cancels its siblings."""
    doc = {
        "name": "two",
        "steps": [
            {
                "name": "A",
                "actions": [
                    {"messages": [{"role": "user", "content": "one"}]},
                    {"messages": [{"role": "user", "content": "two"}]},
                ],
            },
            {
                "name": "B",
                "actions": [{"messages": [{"role": "user", "content": "{{$step1.action2.output}}"}]}],
            },
        ],
    }
    f = write(tmp_path, doc, "two.json")
    p = llmflow(
        tmp_path,
        "run",
        f,
        "--model",
        "step1_action1=fake:?latency=5",
        "--model",
        "step1_action2=fake:?fail=429&fail_times=9",
        "--json",
    )
    assert p.returncode == 1, p.stdout + p.stderr
    run = json.loads(p.stdout)
    assert run["status"] == "FAILED" and "step1_action2" in run["error"]


def test_bad_flowrunner_files_are_clear_errors(tmp_path: Path) -> None:
    missing = {"name": "m", "steps": [{"name": "A", "actionIds": ["nope"]}], "actions": {}}
    p = llmflow(tmp_path, "run", write(tmp_path, missing, "m.json"))
    assert p.returncode == 2 and "names action 'nope'" in p.stderr and "Traceback" not in p.stderr
    files = {
        "name": "f",
        "steps": [
            {"name": "A", "actions": [{"filesEnabled": True, "messages": [{"role": "user", "content": "x"}]}]}
        ],
    }
    p = llmflow(tmp_path, "run", write(tmp_path, files, "f.json"))
    assert p.returncode == 2 and "attaches files" in p.stderr and "Traceback" not in p.stderr
