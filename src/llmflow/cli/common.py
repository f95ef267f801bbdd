"""What the CLI's commands share: the runtime, option parsing (``k=v``, ``--model``), run and
batch ids (full, a unique prefix, or ``last``), the CLI's view of validation problems, and
small formatters."""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Annotated, Any

import typer

from llmflow.engine.states import RunStatus

if TYPE_CHECKING:
    from llmflow.runtime.ports import RunService

Json = Annotated[bool, typer.Option("--json", help="Print JSON for scripts")]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Debug logs on stderr")]
ConfigDir = Annotated[
    str | None,
    typer.Option(
        "--config-dir",
        "-C",
        metavar="DIR",
        help="Project config directory (default: $LLMFLOW_CONFIG_DIR or ./conf)",
    ),
]
Models = Annotated[
    list[str] | None,
    typer.Option(
        "--model",
        metavar="[STEP=]PROVIDER:MODEL",
        help="The model for every step, or STEP=provider:model for one step; repeatable",
    ),
]

# what `llmflow batch` and `llmflow eval` say the same way: reading a dataset, resuming
Columns = Annotated[
    list[str] | None,
    typer.Option(
        "--columns",
        metavar="FIELD=COLUMN",
        help="FIELD=COLUMN: flow input FIELD from dataset COLUMN (repeatable; dotted paths reach into JSON)",
    ),
]
RecordIdColumn = Annotated[
    str | None,
    typer.Option(
        "--record-id",
        metavar="COLUMN",
        help="Column holding each record's id (default: record_id or id, else a content hash)",
    ),
]
MaxRecords = Annotated[
    int | None,
    typer.Option("--max-records", metavar="N", help="Only the first N records (after --shuffle)"),
]
Shuffle = Annotated[bool, typer.Option("--shuffle", help="Records in a random order (see --seed)")]
Seed = Annotated[
    int | None,
    typer.Option("--seed", metavar="N", help="Seed for --shuffle (stored, so --resume keeps the order)"),
]
ProgressInterval = Annotated[
    float,
    typer.Option(
        "--progress-interval",
        metavar="SECONDS",
        help="Seconds between progress lines when not in a terminal",
    ),
]


Status = RunStatus  # what ``--status`` takes (any case): the engine's one run-status enum


STATUS_METAVAR = "[" + "|".join(s.value for s in Status) + "]"
RunIdArg = Annotated[
    str, typer.Argument(metavar="RUN", help="Run id, a unique prefix of one, or 'last' (the newest run)")
]
BatchIdArg = Annotated[
    str, typer.Argument(metavar="BATCH", help="Batch id, a unique prefix of one, or 'last'")
]


def _runtime(config_dir: str | None = None, verbose: bool = False, *, read_only: bool = False) -> Any:
    """The runtime for a command. ``read_only`` commands (listings, show, stats) create no
    ``.llmflow/`` where there is none: they read an empty store instead, so looking does
    not plant a home that later runs would be found in."""
    from llmflow.cli.logs import setup_logging
    from llmflow.runtime import build_runtime
    from llmflow.settings import Settings

    settings = Settings.from_env()
    if read_only and not settings.database_url and not (settings.state_dir / "llmflow.db").exists():
        from llmflow.store.memory import MemoryStore

        return build_runtime(settings, store=MemoryStore())
    rt = build_runtime(settings)
    if config_dir:
        from pathlib import Path

        rt.settings.config_dir = Path(config_dir)
    setup_logging(rt.settings.state_dir, rt.settings.log_level, verbose)
    return rt


def _parse_kv(items: list[str] | None, what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for it in items or []:
        k, sep, v = it.partition("=")
        if not sep or not k.strip():
            raise typer.BadParameter(f"{it!r}: expected {what}")
        out[k.strip()] = v
    return out


_STEP_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-/]*$")


def _models(items: list[str] | None) -> dict[str, str]:
    """``STEP=provider:model`` for one step, ``provider:model`` for every step. A value that
    starts with ``provider:`` is a model even when its options hold ``=``
    (``fake:?latency=0.2``)."""
    out: dict[str, str] = {}
    for it in items or []:
        head, sep, model = it.partition("=")
        if sep and ":" not in head and _STEP_KEY.match(head.strip()) and model.strip():
            out[head.strip()] = model.strip()
        elif ":" in it.partition("=")[0]:
            out["*"] = it.strip()
        else:
            raise typer.BadParameter(
                f"{it!r}: expected STEP=provider:model, or provider:model for every step (e.g. --model fake: or --model report=openai:gpt-4o-mini)"
            )
    return out


def located(exc: Any, source: str) -> Any:
    """The same problems, pointing at the flow file (not ``<flow>``) and with the CLI's own
    fix for a missing input (``--input NAME=...``)."""
    from dataclasses import replace

    from llmflow.errors import FlowValidationError
    from llmflow.model.diagnostics import Location

    out = []
    for d in exc.diagnostics:
        if d.location.file is None and d.location.origin is None:
            if d.path.startswith("models."):
                d = replace(d, location=Location(origin="--model"))
            elif source and not source.startswith("<"):
                d = replace(d, location=Location(file=source))
        if d.path.startswith("options.models"):  # the CLI's name for it is the location: --model
            d = replace(d, path="")
        if d.code == "missing-input":
            d = replace(d, hint=f"pass it with --input {d.path.removeprefix('inputs.')}=...")
        out.append(d)
    return FlowValidationError(out)


def create_run_here(
    rt: RunService, loaded: Any, inputs: dict[str, Any], opts: Any, *, claim: bool = False
) -> Any:
    from llmflow.errors import FlowValidationError

    try:
        return rt.create_run(loaded, inputs, opts, claim=claim)
    except FlowValidationError as exc:
        raise located(exc, loaded.source) from None


def _fmt_ts(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


def _dur(v: float | None) -> str:
    return f"{v:.2f}s" if v is not None else "-"


_EXIT_CODES: dict[str, int] = {RunStatus.COMPLETED: 0, RunStatus.FAILED: 1, RunStatus.CANCELED: 130}


def _exit_for(status: str) -> int:
    return _EXIT_CODES.get(status, 0)


def resolve_run_id(rt: RunService, text: str) -> str:
    """A run id from what a person typed: the id, ``last`` (the newest run), or a prefix
    that only one run's id starts with (like git's short hashes)."""
    from llmflow.errors import RunNotFoundError

    text = text.strip()
    if rt.store.get_run(text) is not None:
        return text
    if text == "last":
        newest = rt.store.list_runs(limit=1)
        if not newest:
            raise RunNotFoundError(
                f"no runs yet in {rt.settings.store_label()}", hint="start one with `llmflow run FLOW`"
            )
        return newest[0].id
    matches = _prefixed([r.id for r in _all(rt.store.list_runs)], text)
    return _one(matches, text, "run", "llmflow runs list", RunNotFoundError)


def resolve_batch_id(rt: RunService, text: str) -> str:
    """A batch id: the id, ``last``, or a unique prefix."""
    from llmflow.errors import BatchError

    text = text.strip()
    if rt.store.get_batch(text) is not None:
        return text
    if text == "last":
        newest = rt.store.list_batches(limit=1)
        if not newest:
            raise BatchError("no batches yet", hint="start one with `llmflow batch FLOW --data FILE`")
        return newest[0].id
    matches = _prefixed([b.id for b in _all(rt.store.list_batches)], text)
    return _one(matches, text, "batch", "llmflow batches list", BatchError)


def _all(page: Any, size: int = 1000) -> Any:
    offset = 0
    while True:
        rows = page(limit=size, offset=offset)
        yield from rows
        if len(rows) < size:
            return
        offset += size


def _prefixed(ids: Any, prefix: str) -> list[str]:
    out: list[str] = []
    if not prefix:
        return out
    for i in ids:
        if i.startswith(prefix):
            out.append(i)
            if len(out) > 5:
                break
    return out


def _one(matches: list[str], text: str, what: str, lister: str, error: Any) -> str:
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise error(
            f"no {what} {text!r}",
            hint=f"list them with `{lister}`; give the id, a unique prefix of it, or 'last'",
        )
    shown = ", ".join(matches[:5]) + (", ..." if len(matches) > 5 else "")
    raise error(f"{text!r} is the start of several {what} ids: {shown}", hint="type more of the id")
