"""Console rendering of a run: a Rich live view in a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any

from llmflow.engine.events import Event
from llmflow.engine.events import EventType as E

ICONS = {
    "PENDING": "·",
    "RUNNING": "▶",
    "COMPLETED": "✔",
    "FAILED": "✘",
    "SKIPPED": "↷",
    "CANCELED": "■",
    "STALE": "~",
}
STYLES = {
    "RUNNING": "cyan",
    "COMPLETED": "green",
    "FAILED": "red",
    "SKIPPED": "dim",
    "CANCELED": "yellow",
    "STALE": "yellow",
}


@dataclass
class StepLine:
    id: str
    kind: str = ""
    status: str = "PENDING"
    started: float | None = None
    ended: float | None = None
    model: str | None = None
    tokens: int = 0
    text: str = ""
    detail: str = ""
    attempts: int = 0
    units: dict[str, str] = field(default_factory=dict)
    tools: dict[str, str] = field(default_factory=dict)  # call id -> "name: status"


class ConsoleView:
    def __init__(self, *, live: bool, quiet: bool = False, stream=None) -> None:  # noqa: ANN001
        self.out = stream or sys.stdout
        self.live_enabled = live and not quiet
        self.quiet = quiet
        self.steps: dict[str, StepLine] = {}
        self.order: list[str] = []
        self.messages: list[str] = []
        self._live: Any = None
        self._console: Any = None
        self._streaming: str | None = None  # plain mode: step whose text is being written
        self.run_id: str | None = None

    # -- lifecycle ----------------------------------------------------------------------------
    def __enter__(self) -> ConsoleView:
        if self.live_enabled:
            from rich.console import Console
            from rich.live import Live

            self._console = Console(file=self.out)
            self._live = Live(self._render(), console=self._console, refresh_per_second=8, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._live is not None:
            self._live.update(self._render())
            self._live.__exit__(*exc)
            self._live = None
        elif self._streaming:
            self._write("\n")

    def _write(self, s: str) -> None:
        self.out.write(s)
        self.out.flush()

    # -- events -------------------------------------------------------------------------------
    def on_event(self, e: Event) -> None:
        self.run_id = e.run_id
        sid = e.step_id
        line = None
        if sid is not None:
            if sid not in self.steps:
                self.steps[sid] = StepLine(sid)
                self.order.append(sid)
            line = self.steps[sid]
        t = e.type
        if t == E.STEP_STARTED and line:
            line.kind = e.payload.get("kind", line.kind)
            line.status, line.started, line.ended, line.text = "RUNNING", e.ts, None, ""
        elif t in (E.STEP_COMPLETED, E.STEP_FAILED, E.STEP_SKIPPED, E.STEP_CANCELED, E.STEP_STALE) and line:
            line.status = t.split("_", 1)[1]
            line.ended = e.ts
            if t == E.STEP_FAILED:
                line.detail = str(e.payload.get("error", ""))
            if t == E.STEP_SKIPPED:
                line.detail = str(e.payload.get("reason", ""))
        elif t == E.ATTEMPT_STARTED and line:
            line.attempts += 1
            if e.unit:
                line.units[e.unit] = "RUNNING"
        elif t in (E.ATTEMPT_COMPLETED, E.ATTEMPT_FAILED, E.ATTEMPT_CANCELED) and line and e.unit:
            line.units[e.unit] = t.split("_", 1)[1]
        elif t == E.LLM_GENERATING and line:
            line.model = e.payload.get("model")
        elif t == E.LLM_TOKENS and line:
            chunk = e.payload.get("text", "")
            line.text += chunk
            if not self.live_enabled and not self.quiet:
                key = f"{sid}/{e.unit}" if e.unit else sid
                if self._streaming != key:
                    self._write(("\n" if self._streaming else "") + f"[{key}] ")
                    self._streaming = key
                self._write(chunk)
        elif t in (E.TOOL_CALL_STARTED, E.TOOL_CALL_COMPLETED, E.TOOL_CALL_FAILED) and line:
            p = e.payload
            states: dict[str, str] = {E.TOOL_CALL_STARTED: "running", E.TOOL_CALL_COMPLETED: "done"}
            state = states.get(t, "retrying" if p.get("retrying") else "failed")
            line.tools[str(p.get("call_id"))] = f"{p.get('name')}: {state}"
        elif t == E.LLM_DONE and line:
            u = e.payload.get("usage") or {}
            line.tokens += int(u.get("input_tokens", 0)) + int(u.get("output_tokens", 0))
        if not self.live_enabled and not self.quiet:
            self._plain(e, line)
        elif self._live is not None:
            self._live.update(self._render())

    def _plain(self, e: Event, line: StepLine | None) -> None:
        t = e.type
        interesting = {
            E.RUN_STARTED,
            E.RUN_RECOVERED,
            E.RUN_RESUMED,
            E.RUN_PAUSED,
            E.STEP_STARTED,
            E.STEP_COMPLETED,
            E.STEP_FAILED,
            E.STEP_SKIPPED,
            E.STEP_CANCELED,
            E.STEP_RETRYING,
            E.SHELL_EXECUTING,
            E.ARTIFACT_CREATED,
            E.LLM_HEARTBEAT,
            E.HUMAN_INPUT_REQUESTED,
            E.CONDUCTOR_TURN,
            E.RUN_COMPLETED,
            E.RUN_FAILED,
            E.RUN_CANCELED,
            E.TOOL_CALL_STARTED,
            E.TOOL_CALL_COMPLETED,
            E.TOOL_CALL_FAILED,
        }
        if t not in interesting:
            return
        if self._streaming:
            self._write("\n")
            self._streaming = None
        when = time.strftime("%H:%M:%S", time.localtime(e.ts))
        msg = e.message
        if t in (E.STEP_COMPLETED, E.STEP_FAILED) and line and line.started:
            msg += f" ({e.ts - line.started:.2f}s)"
        self._write(f"{when} {t:<22} {msg}\n")

    # -- rich ---------------------------------------------------------------------------------
    def _render(self) -> Any:
        from rich.console import Group
        from rich.panel import Panel
        from rich.table import Table
        from rich.text import Text

        table = Table(show_header=True, header_style="bold", box=None, expand=False)
        for col in ("", "step", "kind", "status", "time", "model", "tokens", ""):
            table.add_column(col)
        now = time.time()
        for sid in self.order:
            s = self.steps[sid]
            dur = ""
            if s.started:
                dur = f"{(s.ended or now) - s.started:.1f}s"
            units = ""
            if s.units:
                done = sum(1 for v in s.units.values() if v == "COMPLETED")
                units = f"{done}/{len(s.units)}"
            if s.tools:
                running = [v.split(":")[0] for v in s.tools.values() if v.endswith("running")]
                units = (
                    (units + " " if units else "")
                    + f"tools {len(s.tools)}"
                    + (f" ({', '.join(running[:3])} running)" if running else "")
                )
            style = STYLES.get(s.status, "")
            table.add_row(
                Text(ICONS.get(s.status, "?"), style=style),
                sid,
                s.kind,
                Text(s.status, style=style),
                dur,
                s.model or "",
                str(s.tokens or ""),
                units or (s.detail[:60] if s.detail else ""),
            )
        parts: list[Any] = [table]
        for sid in self.order:
            s = self.steps[sid]
            if s.status == "RUNNING" and s.text:
                tail = "\n".join(s.text.splitlines()[-12:])
                parts.append(Panel(Text(tail), title=f"{sid} ({s.model or ''})", border_style="cyan"))
        return Group(*parts)

    # -- human input --------------------------------------------------------------------------
    def ask(self, payload: dict[str, Any]) -> str | None:
        """Ask on stderr, read one line of stdin; None when stdin is at end of file (nobody
        is there to answer: the caller decides what that means)."""
        prompt = str(payload.get("prompt", "?")).rstrip()
        mode = payload.get("input", "text")
        options = payload.get("options")
        default = payload.get("default")
        if mode == "confirm":
            hint = " [Enter confirms, n rejects]"
        elif options:
            hint = " [" + ", ".join(f"{i}: {o}" for i, o in enumerate(options, 1)) + "]"
        else:
            hint = f" [Enter: {default}]" if default not in (None, "") else ""
        if self._live is not None:
            self._live.stop()
        try:
            sys.stderr.write(f"\n?? {prompt}{hint}\n> ")
            sys.stderr.flush()
            line = sys.stdin.readline()
            if not line:
                sys.stderr.write("\n")
                return None
            text = line.rstrip("\n")
            return default if text == "" and default is not None and mode != "confirm" else text
        finally:
            if self._live is not None:
                self._live.start()
