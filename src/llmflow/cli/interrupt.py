"""Ctrl-C for long commands (`llmflow batch`, `llmflow eval`): the first SIGINT or SIGTERM
stops the work cleanly, leaving what did not finish for --resume; a second quits at once."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable
from typing import TypeVar

from llmflow.cli.errors import eprint

T = TypeVar("T")
SIGNALS = (signal.SIGINT, signal.SIGTERM)


async def stoppable(work: Awaitable[T], stop: Callable[[], None], what: str) -> T:
    """Await ``work``; on the first signal print that ``what`` is stopping and call ``stop``."""
    loop = asyncio.get_running_loop()
    hits = 0

    def on_signal() -> None:
        nonlocal hits
        hits += 1
        if hits > 1:
            raise KeyboardInterrupt
        eprint(f"\nstopping {what} (Ctrl-C again to quit at once)")
        stop()

    for sig in SIGNALS:
        try:
            loop.add_signal_handler(sig, on_signal)
        except (NotImplementedError, RuntimeError):  # not the main thread, or no signals here
            pass
    try:
        return await work
    finally:
        for sig in SIGNALS:
            try:
                loop.remove_signal_handler(sig)
            except (NotImplementedError, RuntimeError):
                pass
