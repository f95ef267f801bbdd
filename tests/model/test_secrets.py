"""A value a flow reads from a secret environment variable (``${oc.env:*_API_KEY}``,
``*_TOKEN``, ``*_PASSWORD`` ...) is used by the step, but never stored with the run, printed
by ``llmflow config`` or sent by the API; a process that resumes the run reads it from its
own environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from llmflow.model.loader import load_flow, restore_secrets, secret_interpolation

ROOT = Path(__file__).resolve().parents[2]
SECRET = "sk-live-NEVER-STORE-4242"

FLOW = """\
name: sec
inputs: {out: string}
parameters:
  region: ${oc.env:LLMFLOW_TEST_REGION,eu}
steps:
  - id: use
    python:
      function: "tests.model.secret_probe:record"
      args: {key: "${oc.env:MY_SERVICE_API_KEY}", out: "{{ inputs.out }}"}
"""


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMFLOW_")}
    env.update(
        LLMFLOW_HOME=str(home),
        LLMFLOW_MODEL="fake:",
        LLMFLOW_BLOCK_REAL_MODELS="1",
        PYTHONPATH=str(ROOT),
        **extra,
    )
    return env


def _llmflow(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "llmflow", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_which_interpolations_read_secrets():
    for raw in (
        "${oc.env:OPENAI_API_KEY}",
        "${oc.env:GH_TOKEN,}",
        "Bearer ${oc.env:SERVICE_TOKEN}",
        "${oc.env:DB_PASSWORD}",
    ):
        assert secret_interpolation(raw) == raw
    assert secret_interpolation("${oc.env:API_KEY} ${llms.x}") == "***"  # cannot be re-read alone
    for raw in ("${oc.env:LLMFLOW_MODEL,fake:}", "${llms.general}", "plain"):
        assert secret_interpolation(raw) is None  # a choice the run keeps, not a secret


def test_a_secret_is_used_by_the_step_but_not_stored_nor_printed(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    flow = tmp_path / "flow.yaml"
    flow.write_text(FLOW)
    out = tmp_path / "seen.txt"
    env = _env(home, MY_SERVICE_API_KEY=SECRET, LLMFLOW_TEST_REGION="us")
    run = _llmflow(["run", str(flow), "--input", f"out={out}", "--json"], env, tmp_path)
    assert run.returncode == 0, run.stderr
    assert out.read_text() == SECRET  # the step got the value
    view = json.loads(run.stdout)
    assert view["status"] == "COMPLETED"
    stored = b"".join(p.read_bytes() for p in (home / ".llmflow").rglob("*") if p.is_file())
    assert SECRET.encode() not in stored  # not in the run's spec, events or files
    shown = _llmflow(["runs", "show", view["id"], "--json"], env, tmp_path)
    assert SECRET not in shown.stdout
    for args in (
        ["config", str(flow)],
        ["config", str(flow), "--provenance"],
        ["config", str(flow), "--json"],
        ["config", str(flow), "--json", "--provenance"],
    ):
        printed = _llmflow(args, env, tmp_path)
        assert printed.returncode == 0, printed.stderr
        assert SECRET not in printed.stdout + printed.stderr, args
    assert "${oc.env:MY_SERVICE_API_KEY}" in _llmflow(["config", str(flow)], env, tmp_path).stdout
    # a value from a non-secret variable is a choice the run keeps, as resolved
    assert "region: us" in _llmflow(["config", str(flow)], env, tmp_path).stdout


def test_a_stored_spec_reads_its_secrets_again_from_the_resuming_process(tmp_path, monkeypatch):
    flow = tmp_path / "flow.yaml"
    flow.write_text(FLOW)
    monkeypatch.setenv("MY_SERVICE_API_KEY", SECRET)
    rec = load_flow(flow).record()
    assert SECRET not in json.dumps(rec)
    assert rec["secrets"] == [["steps", 0, "args", "key"]]
    assert rec["flow"]["steps"][0]["args"]["key"] == "${oc.env:MY_SERVICE_API_KEY}"
    restored = restore_secrets(rec["flow"], rec["secrets"], {"MY_SERVICE_API_KEY": "sk-other-process"})
    assert restored["steps"][0]["args"]["key"] == "sk-other-process"
    # only the recorded paths: text that merely looks like an interpolation stays text
    posted = {"name": "p", "steps": [{"id": "a", "kind": "llm", "prompt": "${oc.env:MY_SERVICE_API_KEY}"}]}
    assert restore_secrets(posted, [], {"MY_SERVICE_API_KEY": SECRET}) == posted
