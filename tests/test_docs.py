"""Docs stay true: the CLI reference is current, Python snippets run, and every command block
marked runnable in the README, docs/*.md and the examples' READMEs runs and succeeds.

A runnable block is a ```bash (or ```sh) fence right after a line ``<!-- runnable -->``
(an HTML comment: invisible where the Markdown is rendered). Each runs with
``bash -euo pipefail`` in a fresh directory holding a link to ``examples/`` and every YAML
block of the same page whose first line names a file (``# review.yaml``), with the fake
model (``LLMFLOW_MODEL=fake:``), real models blocked, and its own LLMFLOW_HOME; a block may
``export`` something else. Blocks of one page run in order in one directory, so a later
block sees what an earlier one made (``llmflow runs show last``)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_cli_reference_is_current():
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import gen_cli_docs
    finally:
        sys.path.pop(0)
    expected = gen_cli_docs.render()
    actual = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    assert actual == expected, "docs/cli.md is stale: run `python scripts/gen_cli_docs.py`"


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(encoding="utf-8"), re.S)


@pytest.mark.parametrize("doc", ["python-api.md", "runs.md", "architecture.md"])
def test_python_snippets_run(doc, tmp_path):
    blocks = python_blocks(ROOT / "docs" / doc)
    for i, code in enumerate(blocks):
        f = tmp_path / f"snippet{i}.py"
        f.write_text(code, encoding="utf-8")
        p = subprocess.run(
            [sys.executable, str(f)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            env={
                "PATH": "/usr/bin:/bin",
                "LLMFLOW_HOME": str(tmp_path),
                "LLMFLOW_BLOCK_REAL_MODELS": "1",
                "HOME": str(tmp_path),
            },
        )
        assert p.returncode == 0, f"{doc} snippet {i} failed:\n{code}\n{p.stderr[-3000:]}"


def test_every_doc_page_linked_from_the_readme_exists():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for link in re.findall(r"\]\((docs/[^)]+|examples/[^)]+)\)", readme):
        assert (ROOT / link).exists(), link


RUNNABLE = re.compile(r"^<!-- runnable -->\n```(?:bash|sh)\n(.*?)^```", re.S | re.M)
NAMED_YAML = re.compile(r"^```ya?ml\n# ([\w./-]+\.ya?ml)\n(.*?)^```", re.S | re.M)
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "examples").glob("*/README.md")])


def runnable_blocks(path: Path) -> list[str]:
    return RUNNABLE.findall(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    "page", [p for p in PAGES if runnable_blocks(p)], ids=lambda p: str(p.relative_to(ROOT))
)
def test_runnable_command_blocks_run(page: Path, tmp_path: Path):
    text = page.read_text(encoding="utf-8")
    for name, body in NAMED_YAML.findall(text):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(f"# {name}\n{body}", encoding="utf-8")
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "LLMFLOW_HOME": str(tmp_path),
        "LLMFLOW_MODEL": "fake:",
        "LLMFLOW_BLOCK_REAL_MODELS": "1",
        "COLUMNS": "100",
    }
    for i, block in enumerate(runnable_blocks(page)):
        p = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", block],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert p.returncode == 0, (
            f"{page.name} runnable block {i} failed (exit {p.returncode}):\n{block}\n--- stdout\n{p.stdout[-2000:]}\n--- stderr\n{p.stderr[-3000:]}"
        )


def test_runnable_blocks_are_marked_in_the_readme_and_the_docs():
    """The marker is in use where a newcomer starts (it would silently test nothing otherwise)."""
    assert runnable_blocks(ROOT / "README.md")
    assert sum(len(runnable_blocks(p)) for p in PAGES) >= 8


def test_the_readme_python_snippet_runs_on_its_flow(tmp_path: Path):
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    for name, body in NAMED_YAML.findall(text):
        (tmp_path / name).write_text(f"# {name}\n{body}", encoding="utf-8")
    (code,) = python_blocks(ROOT / "README.md")
    (tmp_path / "snippet.py").write_text(code, encoding="utf-8")
    p = subprocess.run(
        [sys.executable, "snippet.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={
            "PATH": "/usr/bin:/bin",
            "LLMFLOW_HOME": str(tmp_path),
            "LLMFLOW_BLOCK_REAL_MODELS": "1",
            "HOME": str(tmp_path),
        },
    )
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stdout.startswith("COMPLETED ") and "fake answer to:" in p.stdout
