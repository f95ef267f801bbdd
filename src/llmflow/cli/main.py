"""The `llmflow` command. Thin: parse, call the runtime, render with Rich.

Subcommand modules are imported lazily so `llmflow --help` stays fast.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

app = typer.Typer(
    name="llmflow",
    help="Run multi-step, multi-agent LLM flows with a durable event log.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion for bash, zsh, fish, PowerShell
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        from llmflow import __version__

        print(f"llmflow {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", "-V", is_eager=True, callback=_version, help="Print the version and exit"),
    ] = False,
) -> None:
    """Run multi-step, multi-agent LLM flows with a durable event log."""


_REGISTERED: list[bool] = []


def _conventional_help() -> None:
    """Typer 0.29 prints each parameter's Python annotation in --help (``--model <list[str]>``,
    ``--limit <int range>``). Help here reads like other CLIs instead: an option's value is its
    metavar, its choices (``[QUEUED|RUNNING|...]``) or its name in capitals (``--data DATA``);
    an argument shows its metavar alone. Patched once, for this process's commands only."""
    from typer.core import TyperArgument, TyperOption

    if getattr(TyperOption, "_llmflow_conventional", False):
        return

    def option_value(self: TyperOption, ctx: object) -> str | None:
        if self.metavar is not None:
            return self.metavar
        desc = self.type_descriptor
        if desc.is_choice:
            return "[" + "|".join(str(getattr(c, "value", c)) for c in desc.choices or ()) + "]"
        return (self.name or "value").upper()

    def argument_value(self: TyperArgument, ctx: object) -> str | None:
        return None

    TyperOption.display_type_rich = option_value  # type: ignore[method-assign]
    TyperArgument.display_type_rich = argument_value  # type: ignore[method-assign,assignment]
    TyperOption._llmflow_conventional = True  # type: ignore[attr-defined]


def _register() -> None:
    if _REGISTERED:
        return
    _REGISTERED.append(True)
    _conventional_help()
    from llmflow.cli import flows_cmd, runs_cmd

    flows_cmd.register(app)
    runs_cmd.register(app)
    __import__("llmflow.cli.serve_cmd", fromlist=["register"]).register(app)
    __import__("llmflow.cli.worker_cmd", fromlist=["register"]).register(app)
    __import__("llmflow.cli.ws_cmd", fromlist=["register"]).register(app)
    __import__("llmflow.cli.batch_cmd", fromlist=["register"]).register(app)
    __import__("llmflow.cli.index_cmd", fromlist=["register"]).register(app)
    __import__("llmflow.cli.eval_cmd", fromlist=["register"]).register(app)
    __import__("llmflow.cli.mcp_cmd", fromlist=["register"]).register(app)


def main(argv: list[str] | None = None) -> None:
    """Entry point: every failure becomes a clear message and an exit code, never a traceback."""
    from llmflow.cli.errors import run_guarded

    _register()
    code = run_guarded(app, argv if argv is not None else sys.argv[1:])
    raise SystemExit(code)
