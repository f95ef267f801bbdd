"""The `llmflow` command. Thin: parse, call the runtime, render with Rich.

Subcommand modules are imported lazily so `llmflow --help` stays fast.
"""

from __future__ import annotations

import sys

import typer

app = typer.Typer(
    name="llmflow",
    help="Run multi-step, multi-agent LLM flows with a durable event log.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


_REGISTERED: list[bool] = []


def _register() -> None:
    if _REGISTERED:
        return
    _REGISTERED.append(True)
    from llmflow.cli import flows_cmd, runs_cmd

    flows_cmd.register(app)
    runs_cmd.register(app)
    __import__("llmflow.cli.serve_cmd", fromlist=["register"]).register(app)
    __import__("llmflow.cli.worker_cmd", fromlist=["register"]).register(app)
    __import__("llmflow.cli.ws_cmd", fromlist=["register"]).register(app)
    __import__("llmflow.cli.batch_cmd", fromlist=["register"]).register(app)
    __import__("llmflow.cli.index_cmd", fromlist=["register"]).register(app)
    __import__("llmflow.cli.eval_cmd", fromlist=["register"]).register(app)


def main(argv: list[str] | None = None) -> None:
    """Entry point: every failure becomes a clear message and an exit code, never a traceback."""
    from llmflow.cli.errors import run_guarded

    _register()
    code = run_guarded(app, argv if argv is not None else sys.argv[1:])
    raise SystemExit(code)
