"""The CLI follows its ecosystem's habits: --version, shell completion, help that names
values the CLI way (choices, no Python types), filters that say when they match nothing,
run ids by prefix or `last`, --json on every command that prints data (ISO 8601 times), and
Hydra's -m/--multirun sweeps."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from llmflow import __version__

from .terminal import env_for, in_terminal, piped

ROOT = Path(__file__).resolve().parents[2]
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
FLOW = "name: f\nsteps:\n  - id: a\n    llm: 'Hello'\n"
SWEEP = """\
name: sweep
parameters: {tone: plain, size: short}
steps:
  - id: a
    llm: "Write something {{ parameters.tone }} and {{ parameters.size }}"
"""


@pytest.fixture
def home(tmp_path: Path) -> Path:
    (tmp_path / "f.yaml").write_text(FLOW)
    return tmp_path


def test_version(home):
    for flag in ("--version", "-V"):
        p = piped(home, flag)
        assert (p.returncode, p.stdout) == (0, f"llmflow {__version__}\n")


def test_shell_completion_is_offered_and_completes_commands_and_choices(home):
    assert "--install-completion" in piped(home, "--help").stdout
    script = piped(home, "--show-completion", "bash")
    assert script.returncode == 0 and "_llmflow_completion" in script.stdout
    env = env_for(
        home, _LLMFLOW_COMPLETE="complete_bash", COMP_WORDS="llmflow runs list --status ", COMP_CWORD="4"
    )
    p = piped(home, env=env)
    assert p.stdout.split() == ["QUEUED", "RUNNING", "PAUSED", "WAITING", "COMPLETED", "FAILED", "CANCELED"]


def test_help_names_values_the_cli_way():
    text = (ROOT / "docs" / "cli.md").read_text()  # every command's --help (kept current by test_docs)
    assert not re.search(r"<(str|int|float|list\[|bool)", text), "Python types leak into --help"
    assert "--status [QUEUED|RUNNING|PAUSED|WAITING|COMPLETED|FAILED|CANCELED]" in text
    sections = dict(re.findall(r"^## `(llmflow [^`]+)`\n(.*?)(?=^## |\Z)", text, re.S | re.M))
    run = sections["llmflow run"]
    assert "--model [STEP=]PROVIDER:MODEL" in sections["llmflow batch"]
    assert "--model [STEP=]PROVIDER:MODEL" in run and "-m, --multirun" in run
    assert "-m, --model" not in text  # -m is Hydra's --multirun; --model is long-form only


def test_status_filter_takes_any_case_and_an_empty_match_says_so(home):
    assert piped(home, "run", "f.yaml").returncode == 0
    p = piped(home, "runs", "list", "--status", "failed")
    assert p.returncode == 0 and p.stdout.startswith("no runs match --status FAILED (of 1 in ")
    p = piped(home, "runs", "list", "--flow", "ff")
    assert "no runs match --flow ff" in p.stdout and "did you mean 'f'?" in p.stdout
    assert len(json.loads(piped(home, "runs", "list", "--status", "Completed", "--json").stdout)) == 1
    p = piped(home, "stats", "nosuch")
    assert "no runs match --flow nosuch" in p.stdout
    p = piped(home, "runs", "list", "--status", "bogus")
    assert p.returncode == 2 and "'bogus' is not one of" in p.stderr


def test_run_ids_by_prefix_or_last_wherever_an_id_is_taken(home):
    ids = [json.loads(piped(home, "run", "f.yaml", "--json").stdout)["id"] for _ in range(2)]
    newest = ids[-1]
    assert json.loads(piped(home, "runs", "show", "last", "--json").stdout)["id"] == newest
    unique = newest[: len(newest) - 2]
    while sum(i.startswith(unique) for i in ids) > 1:  # long enough to be unique
        unique = newest[: len(unique) + 1]
    assert json.loads(piped(home, "runs", "show", unique, "--json").stdout)["id"] == newest
    events = piped(home, "runs", "events", "last", "--json").stdout.splitlines()
    assert json.loads(events[0])["run_id"] == newest
    p = piped(home, "runs", "show", newest[:4])
    assert (
        p.returncode == 2
        and "is the start of several run ids" in p.stderr
        and "type more of the id" in p.stderr
    )
    p = piped(home, "runs", "rerun", "last", "--step", "a", "--json")
    assert p.returncode == 0 and json.loads(p.stdout)["id"] == newest
    assert "re-running step a" in p.stderr
    p = piped(home, "runs", "cancel", "last", "--json")
    assert p.returncode == 2 and "COMPLETED; nothing to cancel" in p.stderr


def test_every_command_that_prints_data_takes_json_with_iso_times(home):
    run = json.loads(piped(home, "run", "f.yaml", "--json").stdout)
    assert ISO.match(run["created_at"]) and ISO.match(run["steps"][0]["started_at"])
    assert ISO.match(run["steps"][0]["attempts"][0]["ended_at"])
    assert isinstance(run["duration"], float)  # durations stay seconds
    listed = json.loads(piped(home, "runs", "list", "--json").stdout)
    assert ISO.match(listed[0]["created_at"]) and ISO.match(listed[0]["ended_at"])
    event = json.loads(piped(home, "runs", "events", run["id"], "--json").stdout.splitlines()[0])
    assert ISO.match(event["ts"])
    stats = json.loads(piped(home, "stats", "--json").stdout)
    assert stats["runs"]["total"] == 1 and stats["store"].endswith("llmflow.db")
    for args in (
        ["validate", "f.yaml"],
        ["config", "f.yaml"],
        ["flows", "show", "f.yaml"],
        ["flows", "list", "-C", "."],
        ["batches", "list"],
    ):
        p = piped(home, *args, "--json")
        assert p.returncode == 0, (args, p.stderr)
        json.loads(p.stdout)


def test_cancel_answers_json(home):
    import subprocess
    import sys

    from tests.support import wait_until

    (home / "slow.yaml").write_text(
        "name: slow\nsteps:\n  - id: s\n    shell: 'sleep 30'\n  - id: t\n    llm: hi\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmflow", "run", "slow.yaml", "--json"],
        cwd=home,
        env=env_for(home),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        rows = wait_until(
            lambda: (
                (r := json.loads(piped(home, "runs", "list", "--json").stdout or "[]"))
                and r[0]["status"] == "RUNNING"
                and r
            ),
            60,
            what="the run to be RUNNING",
        )
        p = piped(home, "runs", "cancel", "last", "--json")
        assert p.returncode == 0, p.stderr
        answer = json.loads(p.stdout)
        assert answer["action"] == "cancel" and answer["id"] == rows[0]["id"]
        out, _ = proc.communicate(timeout=60)
        assert json.loads(out)["status"] == "CANCELED"
    finally:
        proc.kill()


def test_multirun_runs_every_combination_and_groups_them(home):
    (home / "sweep.yaml").write_text(SWEEP)
    p = piped(home, "run", "sweep.yaml", "-m", "parameters.tone=calm,angry", "parameters.size=short,long")
    assert p.returncode == 0, p.stderr
    first = p.stdout.splitlines()
    summary = next(line for line in first if line.startswith("sweep sweep-"))
    sweep_id = summary.split()[1].rstrip(":")
    assert summary.endswith(f"4 of 4 runs completed (see `llmflow runs list --batch {sweep_id}`)")
    runs = json.loads(piped(home, "runs", "list", "--batch", sweep_id, "--json").stdout)
    assert sorted(r["name"] for r in runs) == sorted(
        f"parameters.tone={t} parameters.size={s}" for t in ("calm", "angry") for s in ("short", "long")
    )
    outputs = {
        r["name"]: json.loads(piped(home, "runs", "show", r["id"], "--json").stdout)["steps"][0]["output"]
        for r in runs
    }
    assert "Write something angry and long" in outputs["parameters.tone=angry parameters.size=long"]
    batch = json.loads(piped(home, "batches", "show", sweep_id, "--json").stdout)
    assert (batch["total"], batch["completed"], batch["status"]) == (4, 4, "COMPLETED")
    p = piped(home, "batch", "--resume", sweep_id)
    assert p.returncode == 2 and "is a sweep of `llmflow run --multirun`" in p.stderr


def test_multirun_json_and_a_bad_sweep(home):
    (home / "sweep.yaml").write_text(SWEEP)
    out = json.loads(piped(home, "run", "sweep.yaml", "--multirun", "parameters.tone=a,b", "--json").stdout)
    assert out["sweep"].startswith("sweep-") and [r["status"] for r in out["runs"]] == [
        "COMPLETED",
        "COMPLETED",
    ]
    p = piped(home, "run", "sweep.yaml", "-m", "parameters.tone=a,b", "--model", "opnai:x")
    assert p.returncode == 2 and "unknown provider 'opnai'" in p.stderr
    assert (
        json.loads(piped(home, "runs", "list", "--json").stdout)[0]["id"] == out["runs"][-1]["id"]
    )  # nothing new recorded


def test_multirun_in_a_terminal(home):
    (home / "sweep.yaml").write_text(SWEEP)
    r = in_terminal(home, "run", "sweep.yaml", "-m", "parameters.tone=calm,angry")
    assert r.code == 0, r.text
    assert "[1 of 2: parameters.tone=calm]" in r.text and "[2 of 2: parameters.tone=angry]" in r.text
    assert "2 of 2 runs completed" in r.text
