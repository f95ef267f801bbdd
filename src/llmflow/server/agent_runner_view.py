"""Agent Runner's timeline: a view over a run's events with Agent Runner's names and
messages (``johnboyce/agent-runner`` ``app/agent.py``, ``workflows.py``, ``providers.py``),
so its console, dashboards and grep scripts read the same lines. The log itself keeps
llmflow's vocabulary (the native API shows it); this is computed on read.

==================================  =========================================================
stored event                        on the Agent Runner surface
==================================  =========================================================
RUN_CREATED                         RUN_CREATED, payload = the goal
RUN_STARTED                         RUN_STARTED "Agent execution started"
WORKFLOW_STARTED                    WORKFLOW_LOOKUP "Looking up workflow: X", WORKFLOW_START
                                    "Starting workflow: X vV", WORKFLOW_STARTED "Starting X vV"
                                    (run_type agent: AGENT_THINKING "Analyzing goal: ...")
STEP_STARTED                        "Step N: name - description" (``using <model>`` names the
                                    model the step really uses; agent runs: EXECUTING)
LLM_LOADING_MODEL .. LLM_DONE       "Loading model: gemma3:27b" (a bare Ollama name), ...
STEP_COMPLETED                      "Step N completed: name" (agent runs' first step:
                                    PLAN_GENERATED with the plan)
ARTIFACT_CREATED                    "Artifact: /abs/path"
WORKFLOW_COMPLETED                  WORKFLOW_COMPLETED, WORKFLOW_SUMMARY "Workflow completed:
                                    N steps, M artifacts"
WORKFLOW_FAILED                     WORKFLOW_FAILED, WORKFLOW_ERROR "Workflow execution failed:
                                    <cause>" (an unknown workflow: WORKFLOW_LOOKUP,
                                    WORKFLOW_NOT_FOUND "Workflow not found: X")
RUN_PAUSED / RUN_RESUMED            RUN_PAUSE / RUN_RESUME
RUN_CANCELED                        RUN_STOP "Run STOPPED"
ATTEMPT_*, LLM_TOKENS, RUN_QUEUED,  not shown (llmflow's own bookkeeping); a write_file step
RUN_PARKED, SHELL_OUTPUT, STEP_*    is shown as its file's ARTIFACT_CREATED (Agent Runner's
of write_file steps                 LLM steps write their own output file)
anything else (HUMAN_INPUT_*, ...)  as stored
==================================  =========================================================

Event ids on this surface: one stored event can become several lines, so a line's id is
``stored id * 8 + its index`` - integers, increasing, unique; ``after_id`` and
``Last-Event-ID`` take them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from llmflow.engine.events import Event
from llmflow.engine.events import EventType as E

SCALE = 8  # view ids per stored event
HIDDEN = frozenset(
    {
        E.ATTEMPT_STARTED,
        E.ATTEMPT_COMPLETED,
        E.ATTEMPT_FAILED,
        E.ATTEMPT_INTERRUPTED,
        E.ATTEMPT_CANCELED,
        E.LLM_TOKENS,
        E.RUN_QUEUED,
        E.RUN_PARKED,
        E.RUN_CANCEL_REQUESTED,
        E.SHELL_OUTPUT,
        E.STEP_FAILED,  # WORKFLOW_FAILED carries the cause
        E.STEP_RETRYING,
        E.STEP_CACHE_HIT,
        E.STEP_CANCELED,  # Agent Runner shows the failure, not the steps it never ran
        E.STEP_SKIPPED,
    }
)
FOLDED_KINDS = frozenset({"write_file"})
ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


def bare_model(spec: str | None) -> str:
    """``ollama:gemma3:27b`` -> ``gemma3:27b`` (Agent Runner names Ollama models bare)."""
    s = str(spec or "")
    return s[len("ollama:") :] if s.startswith("ollama:") else s


def strip_ansi(text: str) -> str:
    return ANSI.sub("", text)


@dataclass
class Line:
    id: int
    type: str
    payload: str
    ts: float
    run_id: str

    def to_dict(self, run_ref: Any, iso: Any) -> dict[str, Any]:
        return {
            "id": self.id,
            "run_id": run_ref,
            "type": self.type,
            "payload": self.payload,
            "created_at": iso(self.ts),
        }


@dataclass
class TimelineView:
    """Feed a run's stored events in order; get Agent Runner's lines."""

    goal: str | None
    run_type: str
    models: dict[str, str] = field(default_factory=dict)  # step id -> model it resolves to
    step_no: dict[str, int] = field(default_factory=dict)
    kinds: dict[str, str] = field(default_factory=dict)
    flow: str = ""
    version: str = ""
    artifacts: int = 0
    chars: dict[str, int] = field(default_factory=dict)  # step id -> characters streamed

    @property
    def agent(self) -> bool:
        return self.run_type != "workflow"

    def feed(self, e: Event) -> list[Line]:
        out: list[tuple[str, str]] = self._lines(e)
        base = (e.id or 0) * SCALE
        return [Line(base + i, t, p, e.ts, e.run_id) for i, (t, p) in enumerate(out[:SCALE])]

    def _step_line(self, e: Event) -> str:
        sid = e.step_id or ""
        msg = e.message or ""
        desc = msg.split(" - ", 1)[1] if " - " in msg else ""
        model = self.models.get(sid)
        if model and desc:
            desc = re.sub(r"using [\w.:-]+( [A-Z][\w-]*)?", f"using {bare_model(model)}", desc, count=1)
        n = self.step_no[sid]
        return f"Step {n}: {sid} - {desc}" if desc else f"Step {n}: {sid}"

    def _lines(self, e: Event) -> list[tuple[str, str]]:
        t, p = e.type, e.payload
        if t == E.LLM_TOKENS:  # counted for LLM_DONE's "N chars"
            self.chars[e.step_id or ""] = self.chars.get(e.step_id or "", 0) + len(str(p.get("text") or ""))
        if t in HIDDEN:
            return []
        if t == E.RUN_CREATED:
            return [("RUN_CREATED", self.goal if self.goal is not None else e.message)]
        if t == E.RUN_STARTED:
            return [("RUN_STARTED", "Agent execution started")]
        if t in (E.RUN_RECOVERED, E.RUN_RESUMED):
            return [("RUN_RESUME", "Run resumed")]
        if t == E.RUN_PAUSED:
            return [("RUN_PAUSE", "Run paused")]
        if t == E.RUN_CANCELED:
            return [("RUN_STOP", "Run STOPPED" + (f": {p['reason']}" if p.get("reason") else ""))]
        if t == E.WORKFLOW_STARTED:
            self.flow, self.version = str(p.get("flow") or ""), str(p.get("version") or "")
            if self.agent:
                return [("AGENT_THINKING", f"Analyzing goal: {self.goal or ''}")]
            return [
                ("WORKFLOW_LOOKUP", f"Looking up workflow: {self.flow}"),
                ("WORKFLOW_START", f"Starting workflow: {self.flow} v{self.version}"),
                ("WORKFLOW_STARTED", f"Starting {self.flow} v{self.version}"),
            ]
        sid = e.step_id or ""
        if t == E.STEP_STARTED and sid:
            kind = str(p.get("kind") or "")
            self.kinds.setdefault(sid, kind)
            if kind in FOLDED_KINDS:
                return []
            if sid not in self.step_no:
                self.step_no[sid] = len(self.step_no) + 1
            if self.agent:
                return [("EXECUTING", self._step_line(e))] if self.step_no[sid] > 1 else []
            return [("STEP_STARTED", self._step_line(e))]
        if t == E.STEP_COMPLETED and sid:
            if self.kinds.get(sid) in FOLDED_KINDS or sid not in self.step_no:
                return []
            if self.agent:
                if self.step_no[sid] == 1:
                    out = p.get("output")
                    return [("PLAN_GENERATED", out if isinstance(out, str) else str(out))]
                return []
            return [("STEP_COMPLETED", f"Step {self.step_no[sid]} completed: {sid}")]
        if (
            t in (E.STEP_SKIPPED, E.STEP_CANCELED, E.STEP_STALE, E.STEP_RERUN)
            and self.kinds.get(sid) in FOLDED_KINDS
        ):
            return []
        if t.startswith("LLM_"):
            if self.agent:
                return []
            model = bare_model(p.get("model") or self.models.get(sid))
            if t == E.LLM_LOADING_MODEL:
                return [("LLM_LOADING_MODEL", f"Loading model: {model}")]
            if t == E.LLM_GENERATING:
                self.chars[sid] = 0
                return [("LLM_GENERATING", f"Generating response with {model}...")]
            if t == E.LLM_HEARTBEAT:
                elapsed = p.get("elapsed")
                return [
                    (
                        "LLM_HEARTBEAT",
                        f"Still waiting on {model}... {int(elapsed)}s elapsed"
                        if isinstance(elapsed, int | float)
                        else e.message,
                    )
                ]
            if t == E.LLM_DONE:
                chars, secs = self.chars.get(sid), p.get("duration")
                if chars and isinstance(secs, int | float):
                    return [("LLM_DONE", f"Generation complete ({chars} chars, {int(secs)}s)")]
                return [("LLM_DONE", e.message)]
            return [(t, strip_ansi(e.message))]
        if t == E.ARTIFACT_CREATED:
            self.artifacts += 1
            path = p.get("abs_path") or p.get("path") or e.message
            return [("ARTIFACT_CREATED", f"Artifact: {path}")] if not self.agent else []
        if t == E.SHELL_EXECUTING:
            return [] if self.agent else [("SHELL_EXECUTING", e.message)]
        if t == E.WORKFLOW_COMPLETED:
            if self.agent:
                return []
            steps = len(self.step_no)
            return [
                ("WORKFLOW_COMPLETED", f"Workflow completed successfully with {self.artifacts} artifacts"),
                ("WORKFLOW_SUMMARY", f"Workflow completed: {steps} steps, {self.artifacts} artifacts"),
            ]
        if t == E.WORKFLOW_FAILED:
            missing = p.get("not_found")
            if missing:
                return [
                    ("WORKFLOW_LOOKUP", f"Looking up workflow: {missing}"),
                    ("WORKFLOW_NOT_FOUND", f"Workflow not found: {missing}"),
                ]
            msg = f"Workflow execution failed: {strip_ansi(str(p.get('error') or e.message))}"
            return [("WORKFLOW_FAILED", msg), ("WORKFLOW_ERROR", msg)]
        if t == E.RUN_COMPLETED:
            return [("RUN_COMPLETED", "Agent execution completed successfully")]
        if t == E.RUN_FAILED:
            err = p.get("error")
            return [
                (
                    "RUN_FAILED",
                    f"Agent execution failed: {strip_ansi(str(err))}" if err else "Agent execution failed",
                )
            ]
        if t == E.DIRECTIVE:
            return [("DIRECTIVE", str(p.get("text", e.message)))]
        if self.agent and t in (E.SHELL_EXECUTING, E.WORKFLOW_COMPLETED):
            return []
        return [(str(t), e.message)]


def step_models(options: dict[str, Any]) -> dict[str, str]:
    """step id -> the model it resolved to when the run was created (the run's choices)."""
    models = ((options or {}).get("choices") or {}).get("models") or {}
    return {sid: str(c["model"]) for sid, c in models.items() if isinstance(c, dict) and c.get("model")}


def timeline(
    events: list[Event],
    goal: str | None,
    run_type: str,
    after_id: int = 0,
    models: dict[str, str] | None = None,
) -> list[Line]:
    """The view of ``events`` (a run's, from its first) with ids above ``after_id``."""
    view = TimelineView(goal, run_type, dict(models or {}))
    out: list[Line] = []
    for e in events:
        out.extend(line for line in view.feed(e) if line.id > after_id)
    return out
