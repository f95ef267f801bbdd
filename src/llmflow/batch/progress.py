"""Batch progress: counters, rate and ETA, shown as a live Rich bar in a terminal or as a
plain line every few seconds otherwise (logs, CI, pipes)."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any, TextIO


def fmt_duration(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return "-"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


@dataclass
class Counters:
    """Jobs of one batch as this driver sees them; ``prior_*`` finished before it started."""

    total: int | None = None
    completed: int = 0
    failed: int = 0  # FAILED or CANCELED
    running: int = 0
    tokens: int = 0
    cost: float = 0.0
    finished_here: int = 0  # by this driver, for the rate
    started: float = field(default_factory=time.monotonic)

    @property
    def finished(self) -> int:
        return self.completed + self.failed

    @property
    def remaining(self) -> int | None:
        return None if self.total is None else max(self.total - self.finished, 0)

    def rate(self, now: float | None = None) -> float:
        elapsed = (now or time.monotonic()) - self.started
        return self.finished_here / elapsed if elapsed > 0 else 0.0

    def eta(self, now: float | None = None) -> float | None:
        r, rem = self.rate(now), self.remaining
        if rem is None:
            return None
        if rem == 0:
            return 0.0
        return rem / r if r > 0 else None

    def add(self, status: str, tokens: int, cost: float) -> None:
        if status == "COMPLETED":
            self.completed += 1
        else:
            self.failed += 1
        self.finished_here += 1
        self.tokens += tokens
        self.cost += cost

    def line(self, now: float | None = None) -> str:
        total = "?" if self.total is None else str(self.total)
        return (
            f"{self.finished}/{total} done ({self.completed} completed, {self.failed} failed), "
            f"{self.running} running, {self.rate(now):.1f} jobs/s, ETA {fmt_duration(self.eta(now))}, "
            f"tokens {self.tokens}, cost ${self.cost:.4f}"
        )


class ProgressView:
    """``with ProgressView(counters, live=...) as p: ... p.refresh()``; refresh is cheap to
    call after every job (the plain mode prints at most every ``interval`` seconds)."""

    def __init__(
        self,
        counters: Counters,
        label: str,
        *,
        live: bool,
        interval: float = 5.0,
        stream: TextIO | None = None,
    ) -> None:
        self.c = counters
        self.label = label
        self.live = live
        self.interval = interval
        self.out = stream or sys.stderr
        self._progress: Any = None
        self._task: Any = None
        self._last = 0.0

    def __enter__(self) -> ProgressView:
        if self.live:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            console = Console(file=self.out)
            self._width = console.width
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(bar_width=None if self._width >= 140 else 20),
                MofNCompleteColumn(),
                TextColumn("{task.fields[summary]}"),
                console=console,
                refresh_per_second=4,
            )
            self._progress.__enter__()
            # the id was printed above the bar; the bar keeps its width for the numbers
            self._task = self._progress.add_task("batch", total=self.c.total, summary=self._summary())
        else:
            print(f"{self.label}: {self.c.line()}", file=self.out, flush=True)
            self._last = time.monotonic()
        return self

    def _summary(self) -> str:
        """The fields after the bar, the most useful first, as many as the terminal fits."""
        c = self.c
        parts = [
            f"[red]{c.failed} failed[/red]" if c.failed else "0 failed",
            f"ETA {fmt_duration(c.eta())}",
            f"{c.rate():.1f}/s",
            f"{c.running} running",
            f"{c.tokens} tok",
            f"${c.cost:.4f}",
        ]
        room = getattr(self, "_width", 120) - len("batch") - 22 - 2 * len(str(c.total or 0)) - 4
        out: list[str] = []
        for p in parts:
            plain = p.replace("[red]", "").replace("[/red]", "")
            if sum(len(x) + 3 for x in out) + len(plain) > room and out:
                break
            out.append(p)
        return " · ".join(out)

    def refresh(self, force: bool = False) -> None:
        if self._progress is not None:
            self._progress.update(
                self._task, completed=self.c.finished, total=self.c.total, summary=self._summary()
            )
            return
        now = time.monotonic()
        if force or now - self._last >= self.interval:
            self._last = now
            print(f"{self.label}: {self.c.line(now)}", file=self.out, flush=True)

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self.refresh()
            self._progress.__exit__(*exc)
            self._progress = None
        else:
            self.refresh(force=True)
