"""Turn every failure into a message on stderr and an exit code (0 ok, 1 failed, 2 bad input, 130 cancelled)."""

from __future__ import annotations

import os
import sys
from typing import Any

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID = 2
EXIT_CANCELED = 130


def eprint(*parts: Any) -> None:
    print(*parts, file=sys.stderr)


def bad_input(exc: Any) -> int:
    """An LlmflowError that stopped a command before anything ran: its message and hint."""
    eprint(f"error: {exc.message}")
    if getattr(exc, "hint", None):
        eprint(f"hint: {exc.hint}")
    return EXIT_INVALID


def print_diagnostics(diags: list[Any]) -> None:
    for d in diags:
        eprint(f"error: {d.format()}")


def _settings_limits() -> Any:
    from llmflow.settings import Settings

    return Settings.from_env().limits()


def run_guarded(app: Any, argv: list[str]) -> int:
    from typer.exceptions import Abort, Exit, TyperException

    from llmflow.errors import (
        BatchError,
        CompositionError,
        FlowNotFoundError,
        FlowValidationError,
        LlmflowError,
        ResumeRefusedError,
        RunNotFoundError,
        RunStateError,
    )

    try:
        from llmflow.model.limits import DEFAULT, SETTINGS, using

        # LLMFLOW_MAX_STEPS, LLMFLOW_TEMPLATE_TIMEOUT...: read by the typed settings, which import
        # pydantic, so only when one is set (`llmflow --help` stays light)
        limits = _settings_limits() if any(os.environ.get(k) for k in SETTINGS.values()) else DEFAULT
        with using(limits):
            result = app(args=argv, standalone_mode=False, prog_name="llmflow")
        return int(result) if isinstance(result, int) else EXIT_OK
    except Exit as exc:
        return int(exc.exit_code)
    except Abort:
        eprint("aborted")
        return EXIT_CANCELED
    except TyperException as exc:
        show = getattr(exc, "show", None)
        if show is not None:
            show()
        else:
            eprint(f"error: {exc.format_message()}")
        return EXIT_INVALID
    except FlowValidationError as exc:
        print_diagnostics(exc.diagnostics)
        n = len(exc.diagnostics)
        eprint(f"{n} problem{'s' if n != 1 else ''} found; nothing was run")
        return EXIT_INVALID
    except (
        CompositionError,
        FlowNotFoundError,
        RunNotFoundError,
        RunStateError,
        ResumeRefusedError,
        BatchError,
    ) as exc:
        eprint(f"error: {exc.message}")
        if exc.hint:
            eprint(f"hint: {exc.hint}")
        return EXIT_INVALID
    except LlmflowError as exc:
        eprint(f"error: {exc.message}")
        if exc.hint:
            eprint(f"hint: {exc.hint}")
        return EXIT_FAILED
    except KeyboardInterrupt:
        eprint("interrupted")
        return EXIT_CANCELED
    except Exception as exc:  # noqa: BLE001 - never show a traceback to a user
        import logging
        import traceback

        log = logging.getLogger("llmflow")
        if log.handlers:  # the log file, when configured; never Python's stderr fallback
            log.error("internal error\n%s", traceback.format_exc())
        eprint(f"internal error: {type(exc).__name__}: {exc}")
        eprint("this is a bug in llmflow; run with LLMFLOW_DEBUG=1 to see the traceback")
        if os.environ.get("LLMFLOW_DEBUG"):
            traceback.print_exc()
        return EXIT_FAILED
