"""The research and support agents run from their READMEs: every offline command of their
`bash` blocks is executed as written (from the repository root), then the results checked."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def readme_commands(example: str) -> list[str]:
    """Commands of the README's bash blocks that run offline (no hosted model, no install)."""
    text = (ROOT / "examples" / example / "README.md").read_text(encoding="utf-8")
    out = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for cmd in block.replace("\\\n", " ").splitlines():
            cmd = cmd.strip()
            if not cmd or cmd.startswith("#") or "pip install" in cmd or "openai:" in cmd:
                continue
            if cmd == "llmflow run examples/research-agent":
                continue  # the embedded model: see test_research_agent_on_the_embedded_model
            out.append(cmd)
    return out


def sh(cmd: str, home: Path, *, real: bool = False) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMFLOW_")}
    env.update(LLMFLOW_HOME=str(home), PATH=f"{BIN}:{env.get('PATH', '')}")
    if not real:
        env["LLMFLOW_BLOCK_REAL_MODELS"] = "1"
    return subprocess.run(["bash", "-c", cmd], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def last_run(home: Path) -> dict:
    p = sh("llmflow runs list --json", home)
    run_id = json.loads(p.stdout)[0]["id"]
    return json.loads(sh(f"llmflow runs show {run_id} --json", home).stdout)


def test_research_agent_readme_on_the_fake_model(tmp_path):
    pytest.importorskip("mcp")
    cmds = readme_commands("research-agent")
    assert cmds and all(c.startswith("LLMFLOW_MODEL=fake:researcher") for c in cmds)
    for cmd in cmds:
        p = sh(cmd, tmp_path)
        assert p.returncode == 0, f"{cmd}\n{p.stderr[-2000:]}"
    v = last_run(tmp_path)
    assert v["status"] == "COMPLETED"
    assert v["outputs"]["answer"].endswith("its note is 26 words long.")
    calls = v["steps"][0]["tool_calls"]
    assert [(c["name"], c["status"]) for c in calls] == [("lookup", "COMPLETED"), ("word_count", "COMPLETED")]
    assert calls[0]["result"].startswith("The Model Context Protocol (MCP)")  # from the MCP server


def test_support_agent_readme_on_the_fake_model(tmp_path):
    cmds = readme_commands("support-agent")
    assert [c.split()[0] for c in cmds] == ["llmflow", "LLMFLOW_MODEL=fake:support", "llmflow"]
    outputs = [sh(cmd, tmp_path) for cmd in cmds]
    for cmd, p in zip(cmds, outputs, strict=True):
        assert p.returncode == 0, f"{cmd}\n{p.stderr[-2000:]}"
    assert "12 added" in outputs[0].stdout
    assert "two-factor.md" in outputs[2].stdout.splitlines()[0]  # "lost my phone" finds two-factor first
    v = last_run(tmp_path)
    assert v["status"] == "COMPLETED"
    assert "[examples/support-agent/docs/refunds.md#0]" in v["outputs"]["answer"]
    hits = next(s for s in v["steps"] if s["id"] == "find")["output"]
    assert "examples/support-agent/docs/refunds.md" in [h["source"] for h in hits]
    assert all({"source", "chunk", "score", "text"} <= set(h) for h in hits)


@pytest.mark.slow
@pytest.mark.real_model
def test_research_agent_on_the_embedded_model(tmp_path):
    pytest.importorskip("llama_cpp")
    pytest.importorskip("mcp")
    p = sh("llmflow run examples/research-agent --json", tmp_path, real=True)
    assert p.returncode == 0, p.stderr[-2000:]
    v = json.loads(p.stdout)
    assert v["status"] == "COMPLETED"
    calls = v["steps"][0]["tool_calls"]
    assert calls, "the grammar makes the first answer a tool call"
    assert calls[0]["name"] in {"list_topics", "lookup", "word_count"}
    assert any(c["status"] == "COMPLETED" for c in calls)
