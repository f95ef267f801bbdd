"""Every snippet of the flow docs runs: YAML flows validate, config fragments parse, Python
examples execute, and shown command output matches what the command prints."""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest
import yaml

from llmflow.model.loader import parse_flow_text

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "docs" / n for n in ("flows.md", "composition.md", "expressions.md")]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def snippets(lang: str) -> list[tuple[str, str]]:
    out = []
    for doc in DOCS:
        for m in FENCE.finditer(doc.read_text(encoding="utf-8")):
            if m.group(1) == lang:
                line = doc.read_text(encoding="utf-8")[: m.start()].count("\n") + 1
                out.append((f"{doc.name}:{line}", m.group(2)))
    return out


@pytest.mark.parametrize(
    ("where", "text"), snippets("yaml"), ids=lambda v: v if isinstance(v, str) and ".md:" in v else ""
)
def test_yaml_snippets(where, text):
    if text.startswith("name:"):
        parse_flow_text(text, file=where)  # a whole flow: it validates
    else:
        yaml.safe_load(text)  # a config fragment: it is YAML


@pytest.mark.parametrize(
    ("where", "text"), snippets("python"), ids=lambda v: v if isinstance(v, str) and ".md:" in v else ""
)
def test_python_snippets(where, text):
    exec(compile(text, where, "exec"), {})


@contextlib.contextmanager
def _registrations_restored():
    """main() registers the subcommands once per process; nothing to undo."""
    yield


def _commands() -> list[tuple[str, str, list[str]]]:
    out = []
    for where, text in snippets("text"):
        blocks = re.split(r"^\$ ", text, flags=re.M)
        for block in blocks[1:]:
            cmd, *expected = block.rstrip("\n").split("\n")
            out.append((where, cmd, expected))
    return out


@pytest.mark.parametrize(
    ("where", "cmd", "expected"), _commands(), ids=lambda v: v if isinstance(v, str) and ".md:" in v else ""
)
def test_shown_command_output(where, cmd, expected, monkeypatch, tmp_path):
    from llmflow.cli.main import main

    monkeypatch.chdir(ROOT)
    # the examples' results files (storage:) go to a temporary directory, not into the repository
    monkeypatch.setenv("LLMFLOW_RESULTS_PATH", str(tmp_path / "results"))
    argv = shlex.split(cmd)
    assert argv[0] == "llmflow"
    out, err = io.StringIO(), io.StringIO()
    with (
        _registrations_restored(),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
        pytest.raises(SystemExit),
    ):
        main(argv[1:])
    actual = {" ".join(line.split()) for line in (out.getvalue() + err.getvalue()).splitlines()}
    for line in expected:
        assert " ".join(line.split()) in actual, (
            f"{where}: `{cmd}` does not print:\n{line}\n\nit prints:\n{out.getvalue()}{err.getvalue()}"
        )
