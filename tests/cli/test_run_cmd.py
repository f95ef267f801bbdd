"""`llmflow run` and `llmflow runs ...` as a user runs them: subprocesses, pipes, signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.support import wait_until

ROOT = Path(__file__).resolve().parents[2]


def env_for(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMFLOW_")}
    env.update(
        {"LLMFLOW_HOME": str(home), "LLMFLOW_MODEL": "fake:", "LLMFLOW_BLOCK_REAL_MODELS": "1", **extra}
    )
    return env


def llmflow(
    home: Path, *args: str, input: str | None = None, timeout: float = 120, **extra: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "llmflow", *args],
        capture_output=True,
        text=True,
        env=env_for(home, **extra),
        input=input,
        timeout=timeout,
        cwd=home,
    )


def read_until(proc: subprocess.Popen[str], marker: str) -> str:
    """``proc``'s stdout up to the line holding ``marker`` (blocks on the pipe, no polling)."""
    out = ""
    while marker not in out:
        line = proc.stdout.readline() if proc.stdout else ""
        if not line:
            raise AssertionError(f"the output ended before {marker!r}:\n{out}")
        out += line
    return out


def write(tmp: Path, name: str, text: str) -> Path:
    p = tmp / name
    p.write_text(text)
    return p


def test_piped_output_has_no_control_codes_and_shows_streamed_text(tmp_path):
    f = write(tmp_path, "f.yaml", "name: f\nsteps:\n  - id: a\n    llm: 'Hello there'\n")
    p = llmflow(tmp_path, "run", str(f))
    assert p.returncode == 0, p.stderr
    assert "\x1b[" not in p.stdout and "\x1b[" not in p.stderr
    assert "[a] fake answer to: Hello there" in p.stdout
    assert "RUN_COMPLETED" in p.stdout


def test_exit_codes_failed_and_invalid(tmp_path):
    bad = write(tmp_path, "bad.yaml", "name: b\nsteps:\n  - id: a\n    shel: x\n")
    p = llmflow(tmp_path, "run", str(bad))
    assert p.returncode == 2
    assert "bad.yaml:3:5" in p.stderr and "Traceback" not in p.stderr
    failing = write(tmp_path, "fail.yaml", "name: f\nsteps:\n  - id: a\n    shell: 'exit 4'\n")
    p = llmflow(tmp_path, "run", str(failing), "--json")
    assert p.returncode == 1
    assert json.loads(p.stdout)["status"] == "FAILED"
    p = llmflow(tmp_path, "run", str(failing), "--input", "nope=1")
    assert p.returncode == 2 and "has no input 'nope'" in p.stderr
    p = llmflow(tmp_path, "runs", "show", "does-not-exist")
    assert p.returncode == 2 and "no run 'does-not-exist'" in p.stderr


def test_ctrl_c_cancels_cleanly_with_exit_130(tmp_path):
    f = write(tmp_path, "s.yaml", "name: s\nsteps:\n  - id: s\n    shell: 'sleep 60'\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmflow", "run", str(f)],
        env=env_for(tmp_path),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    read_until(proc, "SHELL_EXECUTING")
    proc.send_signal(signal.SIGINT)
    rest, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    runs = json.loads(llmflow(tmp_path, "runs", "list", "--json").stdout)
    assert runs[0]["status"] == "CANCELED"


def test_runs_commands_render_from_the_log_while_another_process_runs(tmp_path):
    f = write(
        tmp_path,
        "slow.yaml",
        "name: slow\nsteps:\n  - id: a\n    shell: 'sleep 1; echo one'\n  - id: b\n    llm: 'b'\n",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmflow", "run", str(f), "--json"],
        env=env_for(tmp_path),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    run_id = wait_until(
        lambda: (
            (rows := json.loads(llmflow(tmp_path, "runs", "list", "--json").stdout or "[]")) and rows[0]["id"]
        ),
        60,
        what="the run to be listed",
    )
    follow = llmflow(tmp_path, "runs", "events", run_id, "--follow", "--json")
    proc.communicate(timeout=60)  # closes the pipes
    types = [json.loads(line)["type"] for line in follow.stdout.splitlines()]
    assert types[0] == "RUN_CREATED" and types[-1] == "RUN_COMPLETED"
    show = json.loads(llmflow(tmp_path, "runs", "show", run_id, "--json").stdout)
    assert [s["status"] for s in show["steps"]] == ["COMPLETED", "COMPLETED"]
    text = llmflow(tmp_path, "runs", "show", run_id, "--attempts").stdout
    assert "attempt #1" in text and "COMPLETED" in text


def test_human_answers_come_from_stdin(tmp_path):
    f = write(
        tmp_path,
        "h.yaml",
        "name: h\nsteps:\n  - id: name\n    human: 'Your name?'\n  - id: hi\n    llm: 'Hi {{ steps.name.output }}'\n",
    )
    p = llmflow(tmp_path, "run", str(f), "--json", input="Grace\n")
    assert p.returncode == 0, p.stderr
    v = json.loads(p.stdout)
    assert v["steps"][0]["output"] == "Grace"
    assert "Your name?" in p.stderr


def test_rerun_and_stats_from_the_cli(tmp_path):
    f = write(
        tmp_path,
        "r.yaml",
        "name: r\nsteps:\n  - id: a\n    llm: a\n  - id: b\n    llm: 'b {{ steps.a.output }}'\n",
    )
    v = json.loads(llmflow(tmp_path, "run", str(f), "--json").stdout)
    p = llmflow(tmp_path, "runs", "rerun", v["id"], "--step", "a", "--json")
    assert p.returncode == 0, p.stderr
    after = json.loads(p.stdout)
    assert [s["status"] for s in after["steps"]] == ["COMPLETED", "STALE"]
    assert len(after["steps"][0]["attempts"]) == 2
    stats = json.loads(llmflow(tmp_path, "stats", "r", "--json").stdout)
    assert stats["runs"]["total"] == 1 and stats["runs"]["completed"] == 1
    assert stats["models"]["fake:"]["calls"] == 3


def test_resume_after_kill_9_from_the_cli(tmp_path):
    f = write(
        tmp_path,
        "k.yaml",
        "name: k\nsteps:\n  - id: a\n    llm: a\n  - id: s\n    shell: 'sleep 30'\n  - id: c\n    llm: c\n",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmflow", "run", str(f)],
        env=env_for(tmp_path),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    read_until(proc, "SHELL_EXECUTING")
    proc.kill()
    proc.wait()
    proc.stdout.close()
    run_id = json.loads(llmflow(tmp_path, "runs", "list", "--json").stdout)[0]["id"]
    write(
        tmp_path,
        "k.yaml",
        "name: k\nsteps:\n  - id: a\n    llm: a\n  - id: s\n    shell: 'true'\n  - id: c\n    llm: c\n",
    )
    p = llmflow(tmp_path, "runs", "resume", run_id)
    assert p.returncode == 2 and "changed since run" in p.stderr and "--force" in p.stderr
    p = llmflow(tmp_path, "runs", "resume", run_id, "--force", "--json")
    assert p.returncode == 0, p.stderr
    v = json.loads(p.stdout)
    a = v["steps"][0]
    assert len(a["attempts"]) == 1  # completed before the kill: not executed again
    assert [x["status"] for x in v["steps"][1]["attempts"]] == ["INTERRUPTED", "COMPLETED"]
