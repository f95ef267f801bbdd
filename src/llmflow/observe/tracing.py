"""Every run is an OpenTelemetry trace, built from its events as they become durable:

    run {flow}                      openinference CHAIN
      step {id}                     CHAIN
        attempt {id}[unit]#n        CHAIN
          chat {model}              LLM   gen_ai.* (operation, model, provider, usage)
          execute_tool {name}       TOOL  gen_ai.tool.*
          shell                     TOOL
          human input               CHAIN

A span is made when it ends, with the start and end times of its events (so a span covers
what the log says happened, not when the exporter saw it). Its ids come from the run
(:mod:`llmflow.observe.ids`): a run resumed in another process, a child run or a worker
names the same spans, so they join one trace; a run started with a ``traceparent`` (kept
in its metadata) continues the caller's trace. A process that sees a run's events for the
first time mid-run reads the run's earlier events once to know which spans are open.

Prompts, outputs, tool arguments and results, shell commands go on spans only with
``capture_content`` (``LLMFLOW_OTEL_CAPTURE_CONTENT=1``); secret values never (see
:mod:`llmflow.observe.redact`). An observer's failure is logged, never raised into a run.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace as trace_api
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags

from llmflow.engine.events import Event
from llmflow.engine.events import EventType as E
from llmflow.observe.context import child_parent_span, trace_of
from llmflow.observe.ids import span_id
from llmflow.observe.redact import Redactor

if TYPE_CHECKING:
    from llmflow.store.base import Store

log = logging.getLogger("llmflow.observe")

MAX_OPEN_RUNS = 10_000  # runs whose end this process has not seen (parked ones): bounded
RUN_END: dict[str, str | None] = {E.RUN_COMPLETED: None, E.RUN_FAILED: "error", E.RUN_CANCELED: "canceled"}
STEP_END: dict[str, str | None] = {
    E.STEP_COMPLETED: None,
    E.STEP_FAILED: "error",
    E.STEP_CANCELED: "canceled",
    E.STEP_SKIPPED: None,
}
ATTEMPT_END: dict[str, str | None] = {
    E.ATTEMPT_COMPLETED: None,
    E.ATTEMPT_FAILED: "error",
    E.ATTEMPT_INTERRUPTED: "interrupted",
    E.ATTEMPT_CANCELED: "canceled",
}
RUN_START = (E.RUN_STARTED, E.RUN_RESUMED, E.RUN_RECOVERED)


class PresetIds(IdGenerator):
    """Ids chosen by the observer for the span it is about to start (thread-local), random
    ones otherwise (any other tracer sharing the provider)."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._random = RandomIdGenerator()

    def preset(self, trace_id: int, span: int) -> None:
        self._local.ids = (trace_id, span)

    def clear(self) -> None:
        self._local.ids = None

    def generate_span_id(self) -> int:
        ids = getattr(self._local, "ids", None)
        return ids[1] if ids else self._random.generate_span_id()

    def generate_trace_id(self) -> int:
        ids = getattr(self._local, "ids", None)
        return ids[0] if ids else self._random.generate_trace_id()


@dataclass
class _Open:
    seq: int
    ts: float
    span: int
    parent: int
    attrs: dict[str, Any] = field(default_factory=dict)
    text: list[str] = field(default_factory=list)


@dataclass
class _Run:
    run_id: str
    trace_id: int
    sampled: bool = True
    parent: int | None = None  # the span the run span hangs from (incoming traceparent)
    parent_run_id: str | None = None
    flow: str = ""
    start: float | None = None
    inputs: Any = None
    steps: dict[str, _Open] = field(default_factory=dict)
    attempts: dict[str, _Open] = field(default_factory=dict)
    llm: dict[str, _Open] = field(default_factory=dict)  # attempt id -> the open model call
    shells: dict[str, _Open] = field(default_factory=dict)
    humans: dict[str, _Open] = field(default_factory=dict)
    span: int = 0  # the run span; a run re-opened by a re-run gets a new one under the first
    ended: bool = False
    reopened: bool = False

    def __post_init__(self) -> None:
        self.span = span_id(self.run_id)


def split_model(model: str) -> tuple[str, str]:
    """``provider:name?options`` -> (provider, name)."""
    provider, sep, name = model.partition(":")
    if not sep:
        provider, name = "", model
    return provider, name.split("?", 1)[0]


class TraceObserver:
    """An event observer (``runtime.observers``) that turns runs into traces."""

    def __init__(
        self,
        provider: TracerProvider,
        ids: PresetIds,
        *,
        store: Store | None = None,
        env: dict[str, str] | None = None,
        capture_content: bool = False,
    ) -> None:
        from llmflow import __version__

        self.provider = provider
        self._tracer = provider.get_tracer("llmflow", __version__)
        self._ids = ids
        self._store = store
        self._redact = Redactor(env or {})
        self.capture = capture_content
        self._runs: OrderedDict[str, _Run] = OrderedDict()
        self._children: dict[str, int] = {}  # child run id -> the parent attempt's span
        self._lock = threading.Lock()

    def __call__(self, e: Event) -> None:
        try:
            with self._lock:
                run = self._runs.get(e.run_id)
                if run is None:
                    run = self._begin(e)
                self._handle(run, e, emit=True)
                if run.ended:
                    self._runs.pop(e.run_id, None)
        except Exception:  # noqa: BLE001 - tracing never breaks a run
            log.warning("tracing event %s of run %s failed", e.type, e.run_id, exc_info=True)

    def flush(self, timeout_millis: int = 30_000) -> bool:
        """Wait until the spans made so far were exported (or the export gave up)."""
        return bool(self.provider.force_flush(timeout_millis))

    def trace_id(self, run_id: str) -> int:
        """The trace id of ``run_id`` (from its traceparent, its parent run, or its id)."""
        run = self._runs.get(run_id)
        return run.trace_id if run is not None else trace_of(self._store, run_id)[0]

    # -- run state ---------------------------------------------------------------------------
    def _begin(self, e: Event) -> _Run:
        trace_id, parent, sampled, rec = trace_of(self._store, e.run_id)
        run = _Run(
            e.run_id,
            trace_id,
            sampled,
            parent,
            getattr(rec, "parent_run_id", None),
            getattr(rec, "flow_name", "") or "",
        )
        if rec is not None:
            run.inputs = rec.inputs
        self._runs[e.run_id] = run
        while len(self._runs) > MAX_OPEN_RUNS:
            self._runs.popitem(last=False)
        if e.seq > 1 and self._store is not None:  # seen first mid-run: which spans are open
            for old in self._store.events(e.run_id, 0, e.seq - 1):
                if old.seq < e.seq:
                    self._handle(run, old, emit=False)
            if run.start is None and rec is not None:
                run.start = rec.started_at or rec.created_at
        return run

    def _handle(self, run: _Run, e: Event, *, emit: bool) -> None:
        t, p = e.type, e.payload or {}
        if run.ended and t not in RUN_END:  # a re-run in place re-opened the run
            run.ended, run.reopened = False, True
            run.span, run.start = span_id(run.run_id, "reopen", e.seq), e.ts
        if t == E.RUN_CREATED:
            run.flow = p.get("flow") or run.flow
            run.inputs = p.get("inputs", run.inputs)
        elif t in RUN_START:
            if run.start is None:
                run.start = e.ts
        elif t in RUN_END:
            self._end_run(run, e, emit)
        elif t == E.STEP_STARTED:
            attrs: dict[str, Any] = {"llmflow.step_id": e.step_id, "llmflow.step_kind": p.get("kind", "")}
            run.steps[e.step_id or ""] = _Open(
                e.seq, e.ts, span_id(run.run_id, "step", e.seq), run.span, attrs
            )
        elif t == E.STEP_CACHE_HIT and e.step_id in run.steps:
            run.steps[e.step_id].attrs["llmflow.cache_hit"] = True
        elif t in STEP_END:
            o = run.steps.pop(e.step_id or "", None)
            if o is not None and emit:
                out = {"output.value": p.get("output")} if t == E.STEP_COMPLETED and "output" in p else {}
                self._span(
                    run,
                    f"step {e.step_id}",
                    o,
                    e.ts,
                    "CHAIN",
                    o.attrs,
                    content=out,
                    error=STEP_END[t] and (p.get("error") or p.get("reason") or STEP_END[t]),
                )
        elif t == E.ATTEMPT_STARTED:
            step = run.steps.get(e.step_id or "")
            aid = e.attempt_id or f"{e.step_id}#{e.attempt}"
            attrs = {
                "llmflow.step_id": e.step_id,
                "llmflow.attempt": e.attempt,
                "llmflow.step_kind": p.get("kind", ""),
            }
            if e.unit:
                attrs["llmflow.unit"] = e.unit
            run.attempts[aid] = _Open(
                e.seq, e.ts, span_id(run.run_id, "attempt", aid), step.span if step else run.span, attrs
            )
        elif t in ATTEMPT_END:
            aid = e.attempt_id or ""
            for table in (run.llm, run.shells):
                o = table.pop(aid, None)
                if o is not None and emit:
                    self._end_child(run, o, e.ts, ATTEMPT_END[t] and (p.get("error") or ATTEMPT_END[t]))
            o = run.attempts.pop(aid, None)
            if o is not None and emit:
                out = {"output.value": p.get("output")} if "output" in p else {}
                self._span(
                    run,
                    f"attempt {aid}",
                    o,
                    e.ts,
                    "CHAIN",
                    o.attrs,
                    content=out,
                    error=ATTEMPT_END[t] and (p.get("error") or ATTEMPT_END[t]),
                )
        elif t == E.LLM_GENERATING:
            model = str(p.get("model") or "")
            prov, name = split_model(model)
            attrs = {
                "gen_ai.operation.name": "chat",
                "gen_ai.request.model": name,
                "gen_ai.provider.name": prov,
                "gen_ai.system": prov,
                "llm.model_name": name,
                "llm.provider": prov,
                "llmflow.model": model,
                "llmflow.model_source": p.get("model_source", ""),
            }
            if p.get("tools"):
                attrs["gen_ai.request.tools"] = [str(x) for x in p["tools"]]
            o = _Open(e.seq, e.ts, span_id(run.run_id, "llm", e.seq), self._parent(run, e), attrs)
            o.attrs["_messages"] = p.get("messages")
            run.llm[e.attempt_id or ""] = o
        elif t == E.LLM_TOKENS:
            o = run.llm.get(e.attempt_id or "")
            if o is not None and self.capture and emit:
                o.text.append(str(p.get("text", "")))
        elif t in (E.LLM_DONE, E.LLM_ERROR):
            o = run.llm.pop(e.attempt_id or "", None)
            if o is not None and emit:
                self._end_llm(run, o, e)
        elif t in (E.TOOL_CALL_COMPLETED, E.TOOL_CALL_FAILED) and emit:
            self._tool(run, e)
        elif t == E.SHELL_EXECUTING:
            o = _Open(
                e.seq,
                e.ts,
                span_id(run.run_id, "shell", e.seq),
                self._parent(run, e),
                {"llmflow.span": "shell"},
            )
            o.attrs["_command"] = p.get("command")
            prev = run.shells.pop(e.attempt_id or "", None)
            if prev is not None and emit:
                self._end_child(run, prev, e.ts, None)
            run.shells[e.attempt_id or ""] = o
        elif t == E.SHELL_OUTPUT:
            o = run.shells.get(e.attempt_id or "")
            if o is not None and self.capture and emit:
                o.text.append(str(p.get("text", "")))
        elif t == E.HUMAN_INPUT_REQUESTED:
            key = str(p.get("request_id") or e.seq)
            o = _Open(
                e.seq,
                e.ts,
                span_id(run.run_id, "human", e.seq),
                self._parent(run, e),
                {"llmflow.request_id": key},
            )
            o.attrs["_prompt"] = p.get("prompt")
            run.humans[key] = o
        elif t == E.HUMAN_INPUT_RECEIVED:
            key = str(p.get("request_id") or "")
            o = (
                run.humans.pop(key, None)
                if key in run.humans
                else (run.humans.popitem()[1] if len(run.humans) == 1 else None)
            )
            if o is not None and emit:
                content = {"input.value": o.attrs.pop("_prompt", None), "output.value": p.get("answer")}
                self._span(
                    run,
                    "human input",
                    o,
                    e.ts,
                    "CHAIN",
                    {**o.attrs, "llmflow.answer_source": p.get("source", "")},
                    content=content,
                )
        elif t == E.CHILD_RUN_STARTED and p.get("child_run_id"):
            self._children[str(p["child_run_id"])] = self._parent(run, e)

    def _parent(self, run: _Run, e: Event) -> int:
        a = run.attempts.get(e.attempt_id or "")
        if a is not None:
            return a.span
        s = run.steps.get(e.step_id or "")
        return s.span if s is not None else run.span

    # -- spans ---------------------------------------------------------------------------------
    def _end_run(self, run: _Run, e: Event, emit: bool) -> None:
        run.ended = True
        tables = (run.llm, run.shells, run.humans, run.attempts, run.steps)  # innermost first
        if emit:
            self._emit_run(run, e)
        for table in tables:
            table.clear()
        run.start = None

    def _emit_run(self, run: _Run, e: Event) -> None:
        p = e.payload or {}
        for table in (run.llm, run.shells, run.humans, run.attempts, run.steps):
            for o in table.values():
                self._end_child(run, o, e.ts, None)
        parent = run.parent
        if run.reopened:
            parent = span_id(run.run_id)
        elif parent is None and run.parent_run_id:
            parent = self._children.pop(run.run_id, None) or child_parent_span(
                self._store, run.parent_run_id, run.run_id
            )
        start = run.start if run.start is not None else e.ts
        attrs = {
            "llmflow.run_id": run.run_id,
            "llmflow.flow": run.flow,
            "llmflow.status": e.type.removeprefix("RUN_"),
        }
        if run.parent_run_id:
            attrs["llmflow.parent_run_id"] = run.parent_run_id
        content = {"input.value": run.inputs, "output.value": p.get("outputs")}
        o = _Open(0, start, run.span, parent or 0, attrs)
        name = f"run {run.flow or run.run_id}" + (" (re-run)" if run.reopened else "")
        self._span(
            run,
            name,
            o,
            e.ts,
            "CHAIN",
            attrs,
            content=content,
            error=RUN_END[e.type] and (p.get("error") or p.get("reason") or RUN_END[e.type]),
            root=parent is None,
        )

    def _end_child(self, run: _Run, o: _Open, end: float, error: str | None) -> None:
        if "_messages" in o.attrs:
            self._span(
                run, f"chat {o.attrs.get('gen_ai.request.model', '')}", o, end, "LLM", o.attrs, error=error
            )
        elif "_command" in o.attrs:
            self._span(
                run,
                "shell",
                o,
                end,
                "TOOL",
                {**o.attrs, "tool.name": "shell"},
                content={"input.value": o.attrs.get("_command"), "output.value": "".join(o.text) or None},
            )
        elif "_prompt" in o.attrs:
            self._span(
                run, "human input", o, end, "CHAIN", o.attrs, content={"input.value": o.attrs.get("_prompt")}
            )
        else:  # a step or attempt still open when its run ended
            name = (
                f"attempt {o.attrs.get('llmflow.step_id')}#{o.attrs['llmflow.attempt']}"
                if "llmflow.attempt" in o.attrs
                else f"step {o.attrs.get('llmflow.step_id')}"
            )
            self._span(run, name, o, end, "CHAIN", o.attrs, error=error)

    def _end_llm(self, run: _Run, o: _Open, e: Event) -> None:
        p = e.payload or {}
        attrs = dict(o.attrs)
        content: dict[str, Any] = {}
        error = None
        if e.type == E.LLM_DONE:
            usage = p.get("usage") or {}
            tin, tout = int(usage.get("input_tokens") or 0), int(usage.get("output_tokens") or 0)
            attrs.update(
                {
                    "gen_ai.response.model": attrs["gen_ai.request.model"],
                    "gen_ai.usage.input_tokens": tin,
                    "gen_ai.usage.output_tokens": tout,
                    "llm.token_count.prompt": tin,
                    "llm.token_count.completion": tout,
                    "llm.token_count.total": tin + tout,
                    "llmflow.cost": float(p.get("cost") or 0.0),
                }
            )
            if p.get("tool_calls"):
                attrs["llmflow.tool_calls"] = [str(x) for x in p["tool_calls"]]
        else:
            error = str(p.get("kind") or "error")
            attrs["error.type"] = error
        msgs = attrs.get("_messages")
        if self.capture and isinstance(msgs, list):
            content["input.value"] = msgs
            for i, m in enumerate(msgs):
                if isinstance(m, dict):
                    attrs[f"llm.input_messages.{i}.message.role"] = str(m.get("role", ""))
                    attrs[f"llm.input_messages.{i}.message.content"] = self._redact.text(m.get("content", ""))
            if o.text:
                text = "".join(o.text)
                content["output.value"] = text
                attrs["llm.output_messages.0.message.role"] = "assistant"
                attrs["llm.output_messages.0.message.content"] = self._redact.text(text)
        self._span(
            run,
            f"chat {attrs['gen_ai.request.model']}",
            o,
            e.ts,
            "LLM",
            attrs,
            content=content,
            error=error and (e.message or error),
            kind=SpanKind.CLIENT,
        )

    def _tool(self, run: _Run, e: Event) -> None:
        p = e.payload or {}
        name = str(p.get("name") or "tool")
        dur = float(p.get("duration") or 0.0)
        o = _Open(e.seq, e.ts - max(dur, 0.0), span_id(run.run_id, "tool", e.seq), self._parent(run, e))
        attrs = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": name,
            "gen_ai.tool.call.id": str(p.get("call_id") or ""),
            "tool.name": name,
        }
        if "try" in p:
            attrs["llmflow.try"] = p["try"]
        content = {
            "input.value": p.get("arguments"),
            "output.value": p.get("result") if e.type == E.TOOL_CALL_COMPLETED else None,
        }
        error = None if e.type == E.TOOL_CALL_COMPLETED else str(p.get("error") or "failed")
        self._span(run, f"execute_tool {name}", o, e.ts, "TOOL", attrs, content=content, error=error)

    def _span(
        self,
        run: _Run,
        name: str,
        o: _Open,
        end: float,
        oi_kind: str,
        attrs: dict[str, Any],
        *,
        content: dict[str, Any] | None = None,
        error: Any = None,
        kind: SpanKind = SpanKind.INTERNAL,
        root: bool = False,
    ) -> None:
        out: dict[str, Any] = {"openinference.span.kind": oi_kind, "llmflow.run_id": run.run_id}
        for k, v in attrs.items():
            if k.startswith("_") or v is None:
                continue
            out[k] = (
                v
                if isinstance(v, str | bool | int | float)
                or (isinstance(v, list) and all(isinstance(x, str) for x in v))
                else self._redact.text(v)
            )
        if self.capture:
            for k, v in (content or {}).items():
                if v is not None:
                    out[k] = self._redact.text(v)
                    out[k.replace(".value", ".mime_type")] = (
                        "text/plain" if isinstance(v, str) else "application/json"
                    )
        flags = TraceFlags(TraceFlags.SAMPLED if run.sampled else TraceFlags.DEFAULT)
        if root:
            ctx = otel_context.Context()
        else:
            parent = SpanContext(run.trace_id, o.parent or run.span, is_remote=True, trace_flags=flags)
            ctx = trace_api.set_span_in_context(NonRecordingSpan(parent))
        self._ids.preset(run.trace_id, o.span)
        try:
            span = self._tracer.start_span(name, context=ctx, kind=kind, attributes=out, start_time=_ns(o.ts))
        finally:
            self._ids.clear()
        if error:
            span.set_status(Status(StatusCode.ERROR, self._redact.text(error, 2000)))
        span.end(end_time=max(_ns(end), _ns(o.ts)))


def _ns(ts: float) -> int:
    return int(ts * 1_000_000_000)
