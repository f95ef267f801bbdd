"""Tool calls in the web console's timeline: each call's start, its result or error."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .helpers import ConsoleServer, make_home

try:
    from playwright.sync_api import expect
except ImportError:
    if os.environ.get("CI"):
        raise
    pytest.skip("Playwright is not installed: pip install 'llmflow[dev]'", allow_module_level=True)

pytestmark = pytest.mark.slow

TOOLS_FLOW = """\
name: tooling
steps:
  - id: act
    llm:
      prompt: check the files
      tools: [list_files, write_file]
"""
SCRIPTS = {
    "agent": {
        "answers": [
            {
                "tool_calls": [
                    {"name": "write_file", "arguments": {"path": "hello.txt", "content": "hi"}},
                    {"name": "list_files", "arguments": {"path": "../.."}},
                ]
            },
            "done: {tool_results}",
        ]
    }
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleServer]:
    home = make_home(tmp_path_factory.mktemp("home"))
    (home / "conf" / "flows" / "tooling.yaml").write_text(TOOLS_FLOW)
    scripts = Path(home / "tool-scripts.json")
    scripts.write_text(json.dumps(SCRIPTS))
    with ConsoleServer(home, LLMFLOW_MODEL="fake:agent", LLMFLOW_FAKE_SCRIPTS=str(scripts)) as s:
        yield s


def test_the_timeline_shows_tool_calls_with_results_and_errors(page: Any, server: ConsoleServer) -> None:
    run_id = server.start_run("tooling")
    page.goto(f"{server.url}/#/runs/{run_id}")
    timeline = page.locator(".timeline")
    expect(timeline).to_contain_text("RUN_COMPLETED")
    expect(page.locator('.ev[data-type="TOOL_CALL_STARTED"]')).to_have_count(2)
    done = page.locator('.ev[data-type="TOOL_CALL_COMPLETED"] .tool-result')
    expect(done).to_contain_text('write_file → {"path":"hello.txt","bytes":2}')
    failed = page.locator('.ev[data-type="TOOL_CALL_FAILED"]')
    expect(failed).to_have_class("ev bad")
    expect(failed.locator(".tool-result")).to_contain_text("escapes the workspace")
