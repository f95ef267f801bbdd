"""Unknown tools, missing MCP servers and tools without a schema are validation errors with
file:line, from `llmflow validate`, `llmflow run` and the Python API; never a silent no-op."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from llmflow.errors import FlowValidationError
from llmflow.runtime import build_runtime

ROOT = Path(__file__).resolve().parents[2]

BROKEN = """\
name: broken
model: "fake:"
mcp_servers:
  docs: {command: python, args: [server.py]}
agents:
  helper:
    tools: [web_search, "mypkg_nowhere:lookup"]
steps:
  - id: ask
    llm:
      prompt: hi
      tools:
        - read_fil
        - docs.search
        - wiki.search
        - tests.tools.helpers:untyped_star
        - {flow: missing-subflow.yaml}
        - {index: nowhere}
"""


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMFLOW_")}
    env.update(LLMFLOW_HOME=str(home), LLMFLOW_BLOCK_REAL_MODELS="1", PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "llmflow", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=home,
        timeout=120,
    )


def test_every_tool_problem_is_reported_with_its_line(tmp_path):
    f = tmp_path / "broken.yaml"
    f.write_text(BROKEN)
    rt = build_runtime(home=tmp_path)
    with pytest.raises(FlowValidationError) as exc:
        rt.create_run(str(f))
    found = {(d.code, d.location.line) for d in exc.value.diagnostics}
    assert found == {
        ("unknown-tool", 7),  # web_search
        ("unknown-tool", 7),  # mypkg_nowhere:lookup
        ("unknown-tool", 13),  # read_fil
        ("unknown-mcp-server", 15),  # wiki.search
        ("tool-schema", 16),
        ("unknown-tool", 17),  # the flow tool
    }  # the missing index (line 18) fails the step at run time: it may be made after the flow
    text = "\n".join(d.format() for d in exc.value.diagnostics)
    assert "did you mean 'read_file'?" in text
    assert f"{f.name}:15" in text and "MCP server 'wiki'" in text
    assert "docs.search" not in text  # declared: its tools are listed when the step connects
    assert rt.store.list_runs() == []


def test_validate_and_run_show_tool_problems_and_exit_2(tmp_path):
    f = tmp_path / "broken.yaml"
    f.write_text(BROKEN)
    p = cli(tmp_path, "validate", str(f))
    assert p.returncode == 2
    assert "broken.yaml:13:11: steps[0].llm.tools[0]: step 'ask': unknown tool 'read_fil'" in p.stderr
    assert "Traceback" not in p.stderr
    p = cli(tmp_path, "run", str(f))
    assert p.returncode == 2 and "unknown tool 'read_fil'" in p.stderr
    p = cli(tmp_path, "validate", "--json", str(f))
    data = json.loads(p.stdout)
    assert {d["code"] for d in data[str(f)]["diagnostics"]} >= {
        "unknown-tool",
        "unknown-mcp-server",
        "tool-schema",
    }


def test_a_valid_tool_list_validates(tmp_path):
    f = tmp_path / "ok.yaml"
    f.write_text(
        "name: ok\nmcp_servers: {docs: {url: 'http://127.0.0.1:9/mcp'}}\nsteps:\n  - id: a\n    llm: {prompt: hi, tools: [read_file, docs, docs.search, 'tests.tools.helpers:record']}\n"
    )
    p = cli(tmp_path, "validate", str(f))
    assert p.returncode == 0, p.stderr


def test_project_servers_are_declared_once_for_every_flow(tmp_path):
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "mcp_servers.yaml").write_text("shared: {url: 'http://127.0.0.1:9/mcp'}\n")
    f = tmp_path / "uses.yaml"
    f.write_text("name: uses\nsteps:\n  - id: a\n    llm: {prompt: hi, tools: [shared.lookup]}\n")
    assert cli(tmp_path, "validate", str(f)).returncode == 0
    (conf / "mcp_servers.yaml").write_text("shared: {command: x, url: 'http://a'}\n")
    p = cli(tmp_path, "validate", str(f))
    assert p.returncode == 2 and "mcp_servers.yaml" in p.stderr and "exactly one of 'command'" in p.stderr


def test_an_mcp_server_needs_one_transport(tmp_path):
    from llmflow.model.loader import parse_flow_text

    with pytest.raises(FlowValidationError) as exc:
        parse_flow_text("name: x\nmcp_servers:\n  s: {args: [a]}\nsteps: [{id: a, llm: hi}]\n")
    assert "exactly one of 'command' (stdio) or 'url'" in str(exc.value)
    assert asyncio  # the module is used by the other test files
