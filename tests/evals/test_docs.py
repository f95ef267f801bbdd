"""docs/evals.md stays true: its Python snippets run (offline, on the fake model)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_python_snippets_of_the_evaluation_page_run(tmp_path: Path) -> None:
    blocks = re.findall(
        r"```python\n(.*?)```", (ROOT / "docs" / "evals.md").read_text(encoding="utf-8"), re.S
    )
    assert len(blocks) >= 2
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
        assert p.returncode == 0, f"snippet {i} failed:\n{code}\n{p.stderr[-3000:]}"
