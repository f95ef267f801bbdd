"""The async runner: executes the scheduler's commands and appends events.

One Runner drives one run. It owns the run's tasks (structured: every task it starts is
awaited or cancelled before ``run`` returns), batches event writes (one transaction per
turn of the loop, so streaming tokens do not cost a transaction each), polls the store's
control mailbox for cross-process cancel / pause / answers, and holds the run's lease.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmflow.engine.context import template_context
from llmflow.engine.events import INFORMATIONAL, Event, NewEvent
from llmflow.engine.events import EventType as E
from llmflow.engine.ports import Clock, EventLog, HumanQuestion, LlmGateway, StepContext, StepExecutor
from llmflow.engine.scheduler import Cancel, Execute, decide, plan
from llmflow.engine.state import RunState, apply
from llmflow.engine.states import StepStatus
from llmflow.errors import LlmflowError, RateLimitError, StepError, StepTimeoutError, TemplateError

log = logging.getLogger("llmflow.engine")


@dataclass
class RunnerConfig:
    workspace: Path
    artifacts_dir: Path
    owner: str | None = None
    lease_seconds: float = 30.0
    poll_interval: float = 0.1
    linger_when_paused: bool = False  # keep waiting for "resume" while paused (in-process handles)
    run_timeout: float | None = None
    allow_shell: bool = True
    run_models: dict[str, str] = field(default_factory=dict)
    env_models: dict[str, str] = field(default_factory=dict)
    functions: dict[str, Callable[..., Any]] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    cache_dir: Path | None = None  # steps with `cache: true` reuse outputs stored here


def _jsonable(v: Any) -> Any:
    try:
        json.dumps(v)
        return v
    except (TypeError, ValueError):
        return json.loads(json.dumps(v, default=str))


def _error_payload(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, StepError):
        p: dict[str, Any] = {"error": exc.message, "kind": exc.kind, "retryable": exc.retryable}
        if isinstance(exc, RateLimitError) and exc.retry_after is not None:
            p["retry_after"] = exc.retry_after
        if exc.hint:
            p["hint"] = exc.hint
        return p
    if isinstance(exc, TemplateError):
        return {"error": exc.message, "kind": "template", "retryable": False}
    if isinstance(exc, LlmflowError):
        return {"error": exc.message, "kind": "error", "retryable": False}
    return {"error": f"{type(exc).__name__}: {exc}", "kind": "error", "retryable": False}


class Runner:
    def __init__(
        self,
        *,
        log_: EventLog,
        clock: Clock,
        state: RunState,
        executors: Mapping[str, StepExecutor],
        config: RunnerConfig,
        llm: LlmGateway | None = None,
        run_child: Callable[[StepContext, str, dict[str, Any], list[str]], Awaitable[dict[str, Any]]] | None = None,
        subscribers: list[Callable[[Event], None]] | None = None,
    ) -> None:
        self.log = log_
        self.clock = clock
        self.st = state
        self.executors = executors
        self.cfg = config
        self.llm = llm
        self._run_child = run_child
        self.subscribers = list(subscribers or [])
        self.inbox: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
        self.tasks: dict[tuple[str, str], tuple[asyncio.Task[None], Execute]] = {}
        self.cancel_reasons: dict[tuple[str, str], str] = {}
        self.human_waiters: dict[str, asyncio.Future[Any]] = {}
        self.early_answers: list[Any] = []
        self.lease_lost = False
        self._last_poll = 0.0
        self._last_beat = 0.0

    # -- public -------------------------------------------------------------------------------
    def control(self, action: str, payload: dict[str, Any] | None = None) -> None:
        """In-process control (cancel | pause | resume | answer | directive)."""
        self.inbox.put_nowait(("control", action, payload or {}))

    async def run(self, initial: list[NewEvent]) -> RunState:
        batch: list[NewEvent] = []
        cmds: list[Execute | Cancel] = []
        for ev in initial:  # the scheduler decides once the whole preamble is applied
            apply(self.st, ev)
            batch.append(ev)
        for x in plan(self.st, self.clock.now()):
            if isinstance(x, NewEvent):
                batch.append(x)
            else:
                cmds.append(x)
        self._flush(batch)
        self._execute(cmds)
        start = self.clock.now()
        deadline = start + self.cfg.run_timeout if self.cfg.run_timeout else None
        ticker = asyncio.create_task(self._tick())
        try:
            while not self.st.finished:
                if self.lease_lost:
                    log.warning("run %s: lease lost; stopping without finishing", self.st.run_id)
                    break
                if self._idle_paused() and not self.cfg.linger_when_paused:
                    break
                try:
                    item = self.inbox.get_nowait()
                except asyncio.QueueEmpty:
                    item = await self.inbox.get()  # the ticker puts a "tick" at least every poll_interval
                batch, cmds = [], []
                if item is not None:
                    self._handle(item, batch, cmds)
                    while len(batch) < 1000:
                        try:
                            self._handle(self.inbox.get_nowait(), batch, cmds)
                        except asyncio.QueueEmpty:
                            break
                now = self.clock.now()
                if now - self._last_poll >= self.cfg.poll_interval:
                    self._last_poll = now
                    self._poll_controls(batch, cmds)
                    self._heartbeat(now)
                if deadline is not None and now > deadline and not self.st.finished:
                    self._flush(batch)
                    await self._time_out(now - start)
                    break
                self._flush(batch)
                self._execute(cmds)
        finally:
            ticker.cancel()
            await self._shutdown()
        return self.st

    # -- internals ----------------------------------------------------------------------------
    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.poll_interval)
            self.inbox.put_nowait(("tick",))
    def _idle_paused(self) -> bool:
        return str(self.st.status) == "PAUSED" and not self.tasks and self.inbox.empty()

    def _decide(self, ev: NewEvent, batch: list[NewEvent], cmds: list[Execute | Cancel]) -> None:
        batch.append(ev)
        if ev.type in INFORMATIONAL and ev.type != E.LLM_DONE:
            apply(self.st, ev)
            return
        _, out = decide(self.st, ev, self.clock.now())
        for x in out:
            if isinstance(x, NewEvent):
                batch.append(x)
            else:
                cmds.append(x)

    def _handle(self, item: tuple[Any, ...], batch: list[NewEvent], cmds: list[Execute | Cancel]) -> None:
        kind = item[0]
        if kind == "event":
            self._decide(item[1], batch, cmds)
        elif kind == "done":
            cmd, output = item[1], item[2]
            self.tasks.pop((cmd.node_id, cmd.unit), None)
            n = self.st.nodes[cmd.node_id]
            label = f"{n.short_id}[{cmd.unit}]" if cmd.unit else n.short_id
            self._decide(NewEvent(E.ATTEMPT_COMPLETED, f"Attempt {cmd.attempt} of {label} completed", cmd.node_id, cmd.unit or None, cmd.attempt, {"output": output}), batch, cmds)
        elif kind == "failed":
            cmd, payload = item[1], item[2]
            self.tasks.pop((cmd.node_id, cmd.unit), None)
            n = self.st.nodes[cmd.node_id]
            label = f"{n.short_id}[{cmd.unit}]" if cmd.unit else n.short_id
            self._decide(NewEvent(E.ATTEMPT_FAILED, f"Attempt {cmd.attempt} of {label} failed: {payload['error']}", cmd.node_id, cmd.unit or None, cmd.attempt, payload), batch, cmds)
        elif kind == "canceled":
            cmd, reason = item[1], item[2]
            self.tasks.pop((cmd.node_id, cmd.unit), None)
            self._decide(NewEvent(E.ATTEMPT_CANCELED, f"Attempt {cmd.attempt} of {cmd.node_id} canceled: {reason}", cmd.node_id, cmd.unit or None, cmd.attempt, {"error": reason}), batch, cmds)
        elif kind == "control":
            self._control(item[1], item[2], batch, cmds)
        # "tick": nothing to do; the loop polls controls and the lease after each turn

    def _control(self, action: str, payload: dict[str, Any], batch: list[NewEvent], cmds: list[Execute | Cancel]) -> None:
        st = self.st
        if action == "cancel":
            if not st.cancel_requested and not st.finished:
                self._decide(NewEvent(E.RUN_CANCEL_REQUESTED, "Cancel requested" + (f": {payload['reason']}" if payload.get("reason") else ""), payload=payload), batch, cmds)
        elif action == "pause":
            if str(st.status) == "RUNNING":
                self._decide(NewEvent(E.RUN_PAUSED, "Run paused: running steps finish, no new step starts", payload=payload), batch, cmds)
        elif action == "resume":
            if str(st.status) == "PAUSED":
                self._decide(NewEvent(E.RUN_RESUMED, "Run resumed", payload=payload), batch, cmds)
        elif action == "answer":
            self._deliver_answer(payload.get("request_id"), payload.get("answer"), batch, cmds)
        elif action == "decline":  # nobody can answer (the CLI's stdin is at end of file): the step fails
            fut = self.human_waiters.pop(payload.get("request_id") or "", None)
            if fut is not None and not fut.done():
                fut.set_exception(StepError(str(payload.get("reason") or "no human answer"), retryable=False, hint=payload.get("hint")))
        elif action == "directive":
            self._decide(NewEvent(E.DIRECTIVE, str(payload.get("text", "")), payload=payload), batch, cmds)

    def _deliver_answer(self, rid: str | None, answer: Any, batch: list[NewEvent], cmds: list[Execute | Cancel]) -> None:
        if rid is None or rid not in self.human_waiters:
            waiting = [k for k, f in self.human_waiters.items() if not f.done()]
            if rid is None and waiting:
                rid = waiting[0]
            elif rid is None or rid not in self.st.human_requests:
                # an answer that arrives before its question is kept, not lost
                self.early_answers.append((rid, answer))
                return
        fut = self.human_waiters.pop(rid, None)
        self._decide(NewEvent(E.HUMAN_INPUT_RECEIVED, f"Human input received: {str(answer)[:80]}", payload={"request_id": rid, "answer": answer}), batch, cmds)
        if fut is not None and not fut.done():
            fut.set_result(answer)

    def _poll_controls(self, batch: list[NewEvent], cmds: list[Execute | Cancel]) -> None:
        try:
            controls = self.log.take_controls(self.st.run_id)
        except Exception:  # noqa: BLE001 - a failed poll is retried next tick
            log.exception("polling controls failed")
            return
        for c in controls:
            self._control(c.action, dict(c.payload), batch, cmds)

    def _heartbeat(self, now: float) -> None:
        if not self.cfg.owner or now - self._last_beat < self.cfg.lease_seconds / 3:
            return
        self._last_beat = now
        if not self.log.heartbeat(self.st.run_id, self.cfg.owner, now, self.cfg.lease_seconds):
            self.lease_lost = True

    def _flush(self, batch: list[NewEvent]) -> None:
        if not batch:
            return
        stored = self.log.append(self.st.run_id, batch, self.clock.now())
        for e in stored:
            for sub in self.subscribers:
                try:
                    sub(e)
                except Exception:  # noqa: BLE001 - observers never break a run
                    log.exception("event subscriber failed")

    def _execute(self, cmds: list[Execute | Cancel]) -> None:
        for c in cmds:
            key = (c.node_id, c.unit)
            if isinstance(c, Execute):
                task = asyncio.create_task(self._run_unit(c), name=f"llmflow:{c.node_id}[{c.unit}]#{c.attempt}")
                self.tasks[key] = (task, c)
            else:
                entry = self.tasks.get(key)
                if entry is not None and key not in self.cancel_reasons:
                    self.cancel_reasons[key] = c.reason
                    entry[0].cancel()

    def _context(self, cmd: Execute) -> StepContext:
        st = self.st
        n = st.nodes[cmd.node_id]
        vars_ = dict(cmd.vars)
        agent_name = vars_.get("agent") or getattr(n.spec, "agent", None)
        agent = st.flow.agents.get(agent_name) if agent_name else None
        if agent is not None:
            vars_["agent_spec"] = {"name": agent_name, **agent.model_dump(exclude_defaults=True)}
        tmpl = template_context(st, cmd.node_id, vars_)

        async def ask(q: HumanQuestion) -> Any:
            return await self._ask_human(cmd, q)

        async def child(flow_ref: str, inputs: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
            if self._run_child is None:
                raise StepError("sub-flows are not available in this runtime")
            return await self._run_child(ctx, flow_ref, inputs, overrides)

        ctx = StepContext(
            run_id=st.run_id,
            flow=st.flow,
            node_id=cmd.node_id,
            step=n.spec,
            unit=cmd.unit,
            attempt=cmd.attempt,
            vars=vars_,
            template=tmpl,
            workspace=self.cfg.workspace,
            artifacts_dir=self.cfg.artifacts_dir,
            emit=lambda ev: self.inbox.put_nowait(("event", ev)),
            ask_human=ask,
            run_child=child,
            llm=self.llm,
            run_models=self.cfg.run_models,
            env_models=self.cfg.env_models,
            allow_shell=self.cfg.allow_shell,
            functions=self.cfg.functions,
            settings=self.cfg.settings,
            prior=lambda: self._prior_events(cmd),
        )
        return ctx

    def _prior_events(self, cmd: Execute) -> list[Event]:
        """Events of this step+unit's attempts since its last re-run that ended interrupted."""
        read = getattr(self.log, "events", None)
        if read is None:
            return []
        unit = cmd.unit or None
        mine = [e for e in read(self.st.run_id) if e.step_id == cmd.node_id and ((e.unit or None) == unit or (e.type == E.STEP_RERUN and e.unit is None))]
        start = max((i for i, e in enumerate(mine) if e.type == E.STEP_RERUN), default=-1) + 1
        mine = mine[start:]
        interrupted = {e.attempt for e in mine if e.type == E.ATTEMPT_INTERRUPTED and e.attempt is not None and e.attempt < cmd.attempt}
        return [e for e in mine if e.attempt in interrupted]

    async def _run_unit(self, cmd: Execute) -> None:
        key = (cmd.node_id, cmd.unit)
        try:
            if cmd.delay > 0:
                await asyncio.sleep(cmd.delay)
            ctx = self._context(cmd)
            cache_file = self._cache_file(cmd, ctx) if ctx.step.cache and self.cfg.cache_dir else None
            if cache_file is not None and cache_file.exists():
                cached = json.loads(cache_file.read_text(encoding="utf-8"))["output"]
                ctx.event("STEP_CACHE_HIT", f"Reusing the cached output of {ctx.node_id}", cache_key=cache_file.stem)
                self.inbox.put_nowait(("done", cmd, cached))
                return
            executor = self.executors.get(ctx.step.kind)
            if executor is None:
                raise StepError(f"no executor for step kind {ctx.step.kind!r}")
            if cmd.timeout:
                try:
                    async with asyncio.timeout(cmd.timeout):
                        out = await executor(ctx)
                except TimeoutError:
                    raise StepTimeoutError(f"step timed out after {cmd.timeout:g}s", retryable=False) from None
            else:
                out = await executor(ctx)
            out = _jsonable(out)
            if cache_file is not None:
                cache_file.parent.mkdir(parents=True, exist_ok=True)
                tmp = cache_file.with_suffix(".tmp")
                tmp.write_text(json.dumps({"output": out}), encoding="utf-8")
                tmp.replace(cache_file)
            self.inbox.put_nowait(("done", cmd, out))
        except asyncio.CancelledError:
            self.inbox.put_nowait(("canceled", cmd, self.cancel_reasons.pop(key, "canceled")))
        except Exception as exc:  # noqa: BLE001 - every failure becomes an ATTEMPT_FAILED event
            if not isinstance(exc, LlmflowError):
                log.warning("step %s raised", cmd.node_id, exc_info=True)
            self.inbox.put_nowait(("failed", cmd, _error_payload(exc)))

    def _cache_file(self, cmd: Execute, ctx: StepContext) -> Path:
        """Same step definition, same inputs, same upstream outputs, same unit and model
        choices -> same cache key."""
        import hashlib

        n = self.st.nodes[cmd.node_id]
        basis = {
            "step": n.spec.to_dict(),
            "vars": cmd.vars,
            "inputs": self.st.inputs,
            "needs": {d: self.st.nodes[d].output for d in n.needs if d in self.st.nodes},
            "models": [self.cfg.run_models, self.cfg.env_models],
            "agents": self.st.flow.model_dump(mode="json", include={"agents", "model", "parameters"}),
        }
        key = hashlib.sha256(json.dumps(basis, sort_keys=True, default=str).encode()).hexdigest()[:32]
        assert self.cfg.cache_dir is not None
        return self.cfg.cache_dir / f"{key}.json"

    async def _ask_human(self, cmd: Execute, q: HumanQuestion) -> Any:
        rid = cmd.node_id + (f"[{cmd.unit}]" if cmd.unit else "") + (f":{q.key}" if q.key else "")
        if rid in self.st.human_answers:
            return self.st.human_answers[rid]
        if not self.st.flow.options.human_in_loop:
            answer = q.default if q.default is not None else ""
            self.inbox.put_nowait(("event", NewEvent(E.HUMAN_INPUT_RECEIVED, f"human_in_loop is off; answering {q.prompt[:60]!r} with the default", cmd.node_id, cmd.unit or None, cmd.attempt, {"request_id": rid, "answer": answer, "source": "human_in_loop: false"})))
            return answer
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self.human_waiters[rid] = fut
        payload = {"request_id": rid, "prompt": q.prompt, "input": q.input, "options": q.options, "default": q.default}
        self.inbox.put_nowait(("event", NewEvent(E.HUMAN_INPUT_REQUESTED, f"Waiting for human input: {q.prompt[:100]}", cmd.node_id, cmd.unit or None, cmd.attempt, payload)))
        early = next((x for x in self.early_answers if x[0] in (None, rid)), None)
        if early is not None:
            self.early_answers.remove(early)
            self.inbox.put_nowait(("control", "answer", {"request_id": rid, "answer": early[1]}))
        try:
            if q.timeout:
                return await asyncio.wait_for(asyncio.shield(fut), timeout=q.timeout)
            return await fut
        except TimeoutError:
            self.human_waiters.pop(rid, None)
            if q.default is not None:
                self.inbox.put_nowait(("event", NewEvent(E.HUMAN_INPUT_RECEIVED, f"No answer within {q.timeout:g}s; using the default", cmd.node_id, cmd.unit or None, cmd.attempt, {"request_id": rid, "answer": q.default, "source": "default"})))
                return q.default
            raise StepError(f"no human answer within {q.timeout:g}s", retryable=False) from None

    async def _time_out(self, elapsed: float) -> None:
        for task, _ in list(self.tasks.values()):
            task.cancel()
        await self._drain_tasks()
        batch: list[NewEvent] = []
        for n in self.st.nodes.values():
            for u in n.units.values():
                if u.status == "RUNNING" and u.attempts:
                    batch.append(NewEvent(E.ATTEMPT_CANCELED, "Attempt canceled: run timed out", n.id, u.key or None, u.attempts[-1].n, {"error": "run timed out"}))
            if n.status in (StepStatus.PENDING, StepStatus.RUNNING):
                batch.append(NewEvent(E.STEP_CANCELED, f"Step {n.short_id} canceled: run timed out", n.id, payload={"reason": "run timed out"}))
        err = f"run timed out after {elapsed:.1f}s (timeout {self.cfg.run_timeout:g}s)"
        batch.append(NewEvent(E.WORKFLOW_FAILED, f"Workflow failed: {err}", payload={"error": err}))
        batch.append(NewEvent(E.RUN_FAILED, f"Run failed: {err}", payload={"error": err}))
        for ev in batch:
            apply(self.st, ev)
        self._flush(batch)

    async def _drain_tasks(self) -> None:
        tasks = [t for t, _ in self.tasks.values()]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self.tasks.clear()
        while not self.inbox.empty():
            self.inbox.get_nowait()

    async def _shutdown(self) -> None:
        for task, _ in list(self.tasks.values()):
            if not task.done():
                task.cancel()
        await self._drain_tasks()
        for fut in self.human_waiters.values():
            if not fut.done():
                fut.cancel()
