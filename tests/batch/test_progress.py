"""Progress: counters, rate and ETA; plain lines when not in a terminal."""

from __future__ import annotations

import io

from llmflow.batch.progress import Counters, ProgressView, fmt_duration


def test_counters_rate_eta_and_the_plain_line() -> None:
    c = Counters(total=10, started=100.0)
    c.completed = 2  # finished before this driver started: no part of the rate
    c.add("COMPLETED", 5, 0.25)
    c.add("FAILED", 1, 0.0)
    c.running = 3
    assert (c.finished, c.remaining, c.tokens, c.cost) == (4, 6, 6, 0.25)
    assert c.rate(now=104.0) == 0.5 and c.eta(now=104.0) == 12.0
    assert (
        c.line(now=104.0)
        == "4/10 done (3 completed, 1 failed), 3 running, 0.5 jobs/s, ETA 12s, tokens 6, cost $0.2500"
    )
    assert Counters(total=None).eta() is None and Counters(total=0).eta() == 0.0


def test_durations_read_well() -> None:
    assert [fmt_duration(x) for x in (None, 5, 65, 3725, float("inf"))] == ["-", "5s", "1m05s", "1h02m", "-"]


def test_plain_progress_prints_at_most_every_interval_and_at_the_end() -> None:
    out = io.StringIO()
    c = Counters(total=3)
    with ProgressView(c, "b1", live=False, interval=3600, stream=out) as view:
        for _ in range(3):
            c.add("COMPLETED", 1, 0.0)
            view.refresh()
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and lines[0].startswith("b1: 0/3 done") and lines[1].startswith("b1: 3/3 done")
    assert "\x1b[" not in out.getvalue()


def test_the_live_bar_renders_into_a_terminal_width() -> None:
    out = io.StringIO()
    c = Counters(total=5)
    with ProgressView(c, "b1", live=True, stream=out) as view:
        c.add("FAILED", 1, 0.0)
        view.refresh()
    assert "1 failed" in out.getvalue()
