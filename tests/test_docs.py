"""Docs stay true: the CLI reference is current and Python snippets run."""

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


@pytest.mark.parametrize("doc", ["python-api.md", "runs.md"])
def test_python_snippets_run(doc, tmp_path):
    blocks = python_blocks(ROOT / "docs" / doc)
    for i, code in enumerate(blocks):
        f = tmp_path / f"snippet{i}.py"
        f.write_text(code, encoding="utf-8")
        p = subprocess.run([sys.executable, str(f)], cwd=tmp_path, capture_output=True, text=True, timeout=120, env={"PATH": "/usr/bin:/bin", "LLMFLOW_HOME": str(tmp_path), "LLMFLOW_BLOCK_REAL_MODELS": "1", "HOME": str(tmp_path)})
        assert p.returncode == 0, f"{doc} snippet {i} failed:\n{code}\n{p.stderr[-3000:]}"


def test_every_doc_page_linked_from_the_readme_exists():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for link in re.findall(r"\]\((docs/[^)]+|examples/[^)]+)\)", readme):
        assert (ROOT / link).exists(), link
