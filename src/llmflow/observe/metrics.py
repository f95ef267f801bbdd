"""Prometheus metrics of a service, from its runtime's events and its store.

Counted from the events this process makes durable (an observer of the runtime): runs
started / completed / failed / canceled by flow, run and step durations, model calls,
tokens, cost and call durations by model, event-append latency (from the moment an event
is stamped to the moment it is durable and handed to observers). Read from the store at
each scrape, so they hold for every process sharing it: queued, running and waiting runs,
live worker leases. Connected SSE and WebSocket clients are counted by the server.

Each service has its own :class:`CollectorRegistry` (no process-global state).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.core import GaugeMetricFamily

from llmflow.engine.events import Event
from llmflow.engine.events import EventType as E
from llmflow.engine.states import RunStatus, StepStatus

if TYPE_CHECKING:
    from llmflow.runtime.ports import RunService

log = logging.getLogger("llmflow.observe")

DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
RUN_ENDS: dict[str, RunStatus] = {
    E.RUN_COMPLETED: RunStatus.COMPLETED,
    E.RUN_FAILED: RunStatus.FAILED,
    E.RUN_CANCELED: RunStatus.CANCELED,
}
STEP_ENDS: dict[str, StepStatus] = {
    E.STEP_COMPLETED: StepStatus.COMPLETED,
    E.STEP_FAILED: StepStatus.FAILED,
    E.STEP_CANCELED: StepStatus.CANCELED,
}
MAX_TRACKED = 20_000  # runs / steps whose start this process remembers (bounded)


class StoreCollector:
    """Gauges read from the store at scrape time."""

    def __init__(self, runtime: RunService, clock: Any = time.time) -> None:
        self.runtime = runtime
        self.clock = clock

    def collect(self) -> Any:
        store = self.runtime.store
        runs = GaugeMetricFamily(
            "llmflow_runs", "Runs in the store by status (every process sharing it)", labels=["status"]
        )
        try:
            for status in (RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.PAUSED, RunStatus.WAITING):
                runs.add_metric([status], store.count_runs(status=status))
            running = store.list_runs(status=RunStatus.RUNNING, limit=10_000)
        except Exception:  # noqa: BLE001 - a scrape never fails on a busy store
            log.warning("reading run counts for /metrics failed", exc_info=True)
            return
        yield runs
        queue = GaugeMetricFamily("llmflow_queue_depth", "Runs waiting for a worker (QUEUED)")
        queue.add_metric([], next(s.value for s in runs.samples if s.labels["status"] == RunStatus.QUEUED))
        yield queue
        now = self.clock()
        leases = GaugeMetricFamily(
            "llmflow_worker_leases", "Runs held by a live worker lease, by owner host", labels=["host"]
        )
        by_host: dict[str, int] = {}
        for r in running:
            if r.owner and (r.lease_expires_at or 0) > now:
                host = r.owner.split(":", 1)[0]
                by_host[host] = by_host.get(host, 0) + 1
        for host, n in sorted(by_host.items()):
            leases.add_metric([host], n)
        yield leases
        active = GaugeMetricFamily("llmflow_active_runs", "Runs this service's process is executing now")
        active.add_metric([], len(getattr(self.runtime, "active", {}) or {}))
        yield active


class RunMetrics:
    """The metrics of one service; ``observe(event)`` is its runtime observer."""

    def __init__(self, registry: CollectorRegistry | None = None, clock: Any = time.time) -> None:
        self.registry = registry or CollectorRegistry()
        self.clock = clock
        r = self.registry
        self.runs_started = Counter("llmflow_runs_started", "Runs started", ["flow"], registry=r)
        self.runs_completed = Counter("llmflow_runs_completed", "Runs completed", ["flow"], registry=r)
        self.runs_failed = Counter("llmflow_runs_failed", "Runs failed", ["flow"], registry=r)
        self.runs_canceled = Counter("llmflow_runs_canceled", "Runs canceled", ["flow"], registry=r)
        self.run_duration = Histogram(
            "llmflow_run_duration_seconds",
            "Run duration, first start to end",
            ["flow", "status"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.step_duration = Histogram(
            "llmflow_step_duration_seconds",
            "Step duration",
            ["flow", "kind", "status"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.model_calls = Counter("llmflow_model_calls", "Model calls", ["model", "status"], registry=r)
        self.model_duration = Histogram(
            "llmflow_model_call_duration_seconds",
            "Model call duration",
            ["model"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "llmflow_tokens", "Tokens used by model calls", ["model", "direction"], registry=r
        )
        self.cost = Counter(
            "llmflow_cost_usd", "Cost of model calls (USD, from the price table)", ["model"], registry=r
        )
        self.tool_calls = Counter("llmflow_tool_calls", "Tool calls", ["tool", "status"], registry=r)
        self.append_latency = Histogram(
            "llmflow_event_append_latency_seconds",
            "From an event's timestamp to it being durable and observed",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.sse_clients = Gauge("llmflow_sse_clients", "Connected Server-Sent Events streams", registry=r)
        self.websocket_clients = Gauge("llmflow_websocket_clients", "Connected WebSocket clients", registry=r)
        ProcessCollector(registry=r)
        self._flows: OrderedDict[str, tuple[str, float | None]] = OrderedDict()  # run -> (flow, first start)
        self._steps: OrderedDict[tuple[str, str], tuple[float, str]] = OrderedDict()
        self._lock = threading.Lock()
        self.runtime: RunService | None = None

    def attach(self, runtime: RunService) -> None:
        """Count ``runtime``'s events and read its store at scrape time."""
        self.runtime = runtime
        self.registry.register(StoreCollector(runtime, self.clock))
        runtime.observers.append(self.observe)

    def detach(self) -> None:
        if self.runtime is not None and self.observe in self.runtime.observers:
            self.runtime.observers.remove(self.observe)

    def _flow(self, run_id: str, hint: str | None = None) -> str:
        hit = self._flows.get(run_id)
        if hit is not None:
            return hit[0]
        flow = hint
        if flow is None and self.runtime is not None:
            rec = self.runtime.store.get_run(run_id)
            flow = rec.flow_name if rec is not None else "?"
        self._remember(run_id, flow or "?", None)
        return flow or "?"

    def _remember(self, run_id: str, flow: str, start: float | None) -> None:
        self._flows[run_id] = (flow, start)
        self._flows.move_to_end(run_id)
        while len(self._flows) > MAX_TRACKED:
            self._flows.popitem(last=False)

    def observe(self, e: Event) -> None:
        try:
            with self._lock:
                self._observe(e)
        except Exception:  # noqa: BLE001 - metrics never break a run
            log.warning("metrics for event %s failed", e.type, exc_info=True)

    def _observe(self, e: Event) -> None:
        self.append_latency.observe(max(0.0, self.clock() - e.ts))
        t, p = e.type, e.payload or {}
        if t == E.RUN_CREATED:
            self._remember(e.run_id, str(p.get("flow") or "?"), None)
        elif t == E.RUN_STARTED:
            flow = self._flow(e.run_id)
            self._remember(e.run_id, flow, e.ts)
            self.runs_started.labels(flow).inc()
        elif t in RUN_ENDS:
            flow = self._flow(e.run_id)
            start = self._flows.get(e.run_id, (flow, None))[1]
            if start is None and self.runtime is not None:
                rec = self.runtime.store.get_run(e.run_id)
                start = rec.started_at if rec is not None else None
            ends: dict[str, Any] = {
                E.RUN_COMPLETED: self.runs_completed,
                E.RUN_FAILED: self.runs_failed,
                E.RUN_CANCELED: self.runs_canceled,
            }
            ends[t].labels(flow).inc()
            if start is not None:
                self.run_duration.labels(flow, RUN_ENDS[t]).observe(max(0.0, e.ts - start))
            self._flows.pop(e.run_id, None)
        elif t == E.STEP_STARTED and e.step_id:
            self._steps[(e.run_id, e.step_id)] = (e.ts, str(p.get("kind") or ""))
            while len(self._steps) > MAX_TRACKED:
                self._steps.popitem(last=False)
        elif t in STEP_ENDS and e.step_id:
            hit = self._steps.pop((e.run_id, e.step_id), None)
            if hit is not None:
                self.step_duration.labels(self._flow(e.run_id), hit[1], STEP_ENDS[t]).observe(
                    max(0.0, e.ts - hit[0])
                )
        elif t == E.LLM_DONE:
            model = _model(p)
            usage = p.get("usage") or {}
            self.model_calls.labels(model, "ok").inc()
            self.tokens.labels(model, "input").inc(int(usage.get("input_tokens") or 0))
            self.tokens.labels(model, "output").inc(int(usage.get("output_tokens") or 0))
            self.cost.labels(model).inc(float(p.get("cost") or 0.0))
            if p.get("duration") is not None:
                self.model_duration.labels(model).observe(float(p["duration"]))
        elif t == E.LLM_ERROR:
            self.model_calls.labels(_model(p), "error").inc()
        elif t in (E.TOOL_CALL_COMPLETED, E.TOOL_CALL_FAILED):
            self.tool_calls.labels(
                str(p.get("name") or "?"), "ok" if t == E.TOOL_CALL_COMPLETED else "error"
            ).inc()


def _model(p: dict[str, Any]) -> str:
    return str(p.get("model") or "?").split("?", 1)[0]
