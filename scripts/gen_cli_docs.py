"""Write docs/cli.md from the CLI's own --help texts (tests/test_docs.py checks it is current).

Run: python scripts/gen_cli_docs.py
"""

from __future__ import annotations

import io
import os
import sys
from contextlib import redirect_stdout
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEADER = """# CLI reference

Generated from `llmflow ... --help` by `python scripts/gen_cli_docs.py`; a test keeps it
current. Exit codes everywhere: 0 ok (run COMPLETED), 1 failed (run FAILED), 2 invalid
definition, input or usage, 130 cancelled (Ctrl-C). Every command that prints data takes
`--json` for scripts (times in ISO 8601 UTC, durations in seconds). Wherever a run or batch
id is taken, a unique prefix of it or `last` (the newest) works too.

Environment: `LLMFLOW_HOME` (project directory; state in `<home>/.llmflow`; default: the
nearest directory at or above the current one holding `.llmflow/`, as git finds a repository,
else the current directory), `LLMFLOW_DATABASE_URL` (sqlite path or `postgresql://...`),
`LLMFLOW_CONFIG_DIR` (default `./conf`), `LLMFLOW_MODEL` / `LLMFLOW_MODEL_<STEP>` (model
choice), `LLMFLOW_LOG_LEVEL`, `LLMFLOW_DISABLE_SHELL=1`, `LLMFLOW_FAKE_SCRIPTS` (scripted
fake model answers). Logs: `<home>/.llmflow/logs/llmflow.log` (JSON lines, rotating).
"""


def commands() -> list[list[str]]:
    from llmflow.cli.main import _register, app

    _register()
    import typer.main

    root = typer.main.get_command(app)
    out: list[list[str]] = []

    def walk(cmd, path):  # noqa: ANN001
        out.append(path)
        for name in sorted(getattr(cmd, "commands", {}) or {}):
            walk(cmd.commands[name], [*path, name])

    walk(root, [])
    return out


def help_text(path: list[str]) -> str:
    from llmflow.cli.main import main

    buf = io.StringIO()
    os.environ["COLUMNS"] = "100"
    with redirect_stdout(buf):
        try:
            main([*path, "--help"])
        except SystemExit:
            pass
    return buf.getvalue().rstrip()


def render() -> str:
    parts = [HEADER]
    for path in commands():
        title = " ".join(["llmflow", *path])
        parts.append(f"## `{title}`\n\n```text\n{help_text(path)}\n```\n")
    return "\n".join(parts)


if __name__ == "__main__":
    target = ROOT / "docs" / "cli.md"
    target.write_text(render(), encoding="utf-8")
    print(f"wrote {target}", file=sys.stderr)
