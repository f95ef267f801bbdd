"""The async runner: receive -> decide -> append (durable) -> execute. One RunDriver drives one
run; it decides nothing itself (every input goes through
:func:`llmflow.engine.scheduler.decide`).

- Inputs arrive in one inbox: step results (a done-callback on every unit task reports
  success, failure or cancellation - also for a task cancelled before it ever ran), events
  executors emit, fired timers, controls (in-process, or polled from the store's mailbox
  for other processes), human answers.
- Each turn drains the inbox, decides each input, appends the events of the whole turn in
  one call and awaits it: the commands those events decided run only once the events are
  durable (write-ahead). Observers see each event after it is durable.
- Informational events (token chunks, heartbeats, tool calls) skip the reducer: they are
  appended, never folded.
- Timers are ``StartTimer(at)`` commands with absolute times from the log; the runner only
  schedules the wake-up (``loop.call_later``) and reports ``TimerFired``. It never computes a
  deadline of its own.
- Structured: every task it starts is awaited or cancelled before ``run`` returns.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import json
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Generator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast

from llmflow.engine.context import template_context
from llmflow.engine.events import NOT_FOLDED, Event, NewEvent
from llmflow.engine.events import EventType as E
from llmflow.engine.inputs import (
    AnswerHuman,
    AskHuman,
    Cancel,
    CancelRequested,
    Command,
    Emitted,
    Execute,
    HumanAnswered,
    HumanAsked,
    HumanDeclined,
    PauseRequested,
    ResumeRequested,
    StartTimer,
    StepCanceled,
    StepFailed,
    StepSucceeded,
    Stop,
    TimerFired,
)
from llmflow.engine.ports import Clock, EventLog, HumanQuestion, LlmGateway, StepContext, StepExecutor
from llmflow.engine.scheduler import decide
from llmflow.engine.state import RunState
from llmflow.engine.states import RunStatus
from llmflow.errors import HumanTimeoutError, LlmflowError, RateLimitError, StepError, TemplateError

log = logging.getLogger("llmflow.engine")

HOT_TURNS = 32  # turns a run may take without a loop turn before it yields one


def _no_prior() -> list[Event]:  # a first attempt: no earlier attempt of its generation to replay
    return []


class EventWriter(Protocol):
    """Where a runner appends (group commit lives behind it, see llmflow.store.writer)."""

    async def append(
        self, run_id: str, events: list[NewEvent], now: float, create: Any = None
    ) -> list[Event]: ...
    async def call(self, fn: Callable[..., Any], *args: Any) -> Any: ...


class DirectWriter:
    """Appends straight to the store, on the caller's thread (memory store, tests)."""

    def __init__(self, store: EventLog) -> None:
        self.store = store

    async def append(
        self, run_id: str, events: list[NewEvent], now: float, create: Any = None
    ) -> list[Event]:
        if create is not None:
            return self.store.create_run(create, events, now)  # type: ignore[attr-defined, no-any-return]
        return self.store.append(run_id, events, now)

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return fn(*args)


@dataclass
class RunnerConfig:
    workspace: Path
    artifacts_dir: Path
    owner: str | None = None
    lease_seconds: float = 30.0
    poll_interval: float = 0.1
    linger_when_paused: bool = False  # keep waiting for "resume" while paused (in-process handles)
    allow_shell: bool = True
    run_models: dict[str, str] = field(default_factory=dict)
    env_models: dict[str, str] = field(default_factory=dict)
    functions: dict[str, Callable[..., Any]] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    cache_dir: Path | None = None  # steps with `cache: true` reuse outputs stored here
    park_after: float | None = None  # park the run when it waits this long for a person
    poll_controls: bool = True  # read the store's control mailbox (other processes' controls)


def _jsonable(v: Any) -> Any:
    """``v`` if it is plain JSON data (checked without encoding it), else its JSON image
    with ``str`` for what JSON cannot hold."""
    if _plain(v, 0):
        return v
    try:
        json.dumps(v)
        return v
    except (TypeError, ValueError):
        return json.loads(json.dumps(v, default=str))


_SCALARS = (str, int, bool, type(None))


def _plain(v: Any, depth: int) -> bool:
    t = type(v)
    if t in _SCALARS:
        return True
    if t is float:
        return v == v and v not in (float("inf"), float("-inf"))
    if depth > 50:
        return False
    if t is list or t is tuple:
        return all(_plain(x, depth + 1) for x in v)
    if t is dict:
        return all(type(k) is str and _plain(x, depth + 1) for k, x in v.items())
    return False


def error_payload(exc: BaseException) -> dict[str, Any]:
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


_CONTROLS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "cancel": lambda p: CancelRequested(p.get("reason"), {k: v for k, v in p.items() if k != "reason"}),
    "pause": lambda p: PauseRequested(dict(p)),
    "resume": lambda p: ResumeRequested(dict(p)),
    "answer": lambda p: HumanAnswered(p.get("request_id"), p.get("answer")),
    # nobody can answer (the console's stdin is at end of file): the step fails, no answer recorded
    "decline": lambda p: HumanDeclined(
        str(p.get("request_id") or ""), str(p.get("reason") or "no human answer"), p.get("hint")
    ),
    "directive": lambda p: Emitted(NewEvent(E.DIRECTIVE, str(p.get("text", "")), payload=dict(p))),
}


def _runs_inline(executor: Any, ctx: StepContext) -> bool:
    """Whether ``executor`` declared that this call may start inline (its ``inline(ctx)``)."""
    test = getattr(executor, "inline", None)
    if test is None:
        return False
    try:
        return test(ctx) is True
    except Exception:  # noqa: BLE001 - when in doubt, a task of its own
        return False


_HAS_AGENT: dict[type, bool] = {}  # step spec class -> it has an ``agent`` field


class _Inbox:
    """The runner's inbox: ``asyncio.Queue``'s calls the runner makes (``put_nowait``,
    ``get_nowait``, ``empty``, ``get``) for its one consumer, without the queue's size
    bound, task counting and waiter lists (several Python calls per item each way).
    Like the queue, it belongs to the event loop's thread."""

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: deque[Any] = deque()
        self._waiter: asyncio.Future[None] | None = None

    def put_nowait(self, item: Any) -> None:
        self._items.append(item)
        w = self._waiter
        if w is not None:
            self._waiter = None
            if not w.done():
                w.set_result(None)

    def get_nowait(self) -> Any:
        if not self._items:
            raise asyncio.QueueEmpty
        return self._items.popleft()

    def empty(self) -> bool:
        return not self._items

    def qsize(self) -> int:
        return len(self._items)

    async def get(self) -> Any:
        while not self._items:
            w = self._waiter = asyncio.get_running_loop().create_future()
            try:
                await w
            finally:
                if self._waiter is w:
                    self._waiter = None
        return self._items.popleft()


class _Continue:
    """Continues, inside a task, a unit's coroutine that first ran inline until it waited:
    hands the task the future it waits on, then relays every result, exception and
    cancellation to it, as if the task had run it from the start."""

    __slots__ = ("coro", "first")

    def __init__(self, coro: Coroutine[Any, Any, Any], first: Any) -> None:
        self.coro = coro
        self.first = first

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, value = self.coro, self.first
        self.first = None
        while True:
            try:
                sent = yield value
            except BaseException as exc:  # noqa: BLE001 - cancellation included: the unit's to handle
                try:
                    value = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    value = coro.send(sent)
                except StopIteration as stop:
                    return stop.value

    async def run(self) -> Any:
        return await self


class RunDriver:
    def __init__(
        self,
        *,
        log_: EventLog,
        clock: Clock,
        state: RunState,
        executors: Mapping[str, StepExecutor],
        config: RunnerConfig,
        llm: LlmGateway | None = None,
        run_child: Callable[[StepContext, str, dict[str, Any], list[str]], Awaitable[dict[str, Any]]]
        | None = None,
        subscribers: list[Callable[[Event], None]] | None = None,
        writer: EventWriter | None = None,
        create: tuple[Any, list[NewEvent]] | None = None,
        controls: Callable[[str], Awaitable[list[Any]]] | None = None,
    ) -> None:
        self.log = log_
        self.clock = clock
        self.st = state
        self.executors = executors
        self._executors: dict[str, StepExecutor | None] = {}
        self.cfg = config
        self.llm = llm
        self._run_child = run_child
        self.subscribers = list(subscribers or [])
        self.writer: EventWriter = writer or DirectWriter(log_)
        # (run record, its creation events): the run is not stored yet; the first commit
        # writes it with the first events it decided, in one transaction
        self._create = create
        self._controls = controls  # the process's mailbox (one look for all its runs), or None
        self.inbox = _Inbox()
        self.tasks: dict[tuple[str, str], tuple[asyncio.Task[Any], Execute]] = {}
        self.cancels: dict[tuple[str, str], Cancel] = {}
        self.human_waiters: dict[str, asyncio.Future[Any]] = {}
        self.ask_hooks: list[Callable[[AskHuman], None]] = []
        self.timers: dict[str, float] = {}
        self.lease_lost = False
        self.stopped: str | None = None
        self._inputs: list[Any] = []  # taken, not yet decided (in arrival order)
        self._events: list[NewEvent] = []
        self._commands: list[Command] = []
        self._timer_handle: asyncio.TimerHandle | None = None
        self._tick_handle: asyncio.TimerHandle | None = None
        self._last_beat = 0.0
        self._tick_due = False
        inbox = self.inbox

        def emit(ev: NewEvent) -> None:  # every unit's ctx.emit: events executors send
            inbox.put_nowait(Emitted(ev))

        self._emit = emit

    # -- public -------------------------------------------------------------------------------
    def control(self, action: str, payload: dict[str, Any] | None = None) -> None:
        """In-process control (cancel | pause | resume | answer | directive)."""
        self.inbox.put_nowait(("control", action, payload or {}))

    async def run(self, first: Any) -> RunState:
        """Execute from ``first`` (Start or Resume) until the run finishes, pauses (unless it
        lingers), is parked, or the lease is lost."""
        self._take(first)
        await self._commit()
        self._last_beat = self.clock.now()
        loop = asyncio.get_running_loop()
        if self.cfg.poll_controls or self.cfg.owner:
            self._tick_handle = loop.call_later(self.cfg.poll_interval, self._tick)
        try:
            hot = 0  # turns in a row that found their input waiting (inline units)
            while not self._finished():
                if self.inbox.empty():
                    hot = 0
                    item = await self.inbox.get()
                else:
                    hot += 1
                    if hot >= HOT_TURNS:
                        # units that finish inline, on a store that never waits, would hold
                        # the loop for the whole run: give other runs and timers a turn
                        hot = 0
                        await asyncio.sleep(0)
                    item = self.inbox.get_nowait()
                self._take(item)
                n = self._drain(0)
                if n < 1000 and self.tasks:
                    # one more turn of the loop: units still running that finish in it (a
                    # burst of quick units) join this commit instead of the next; with no unit
                    # running nothing would join, so the turn is not spent
                    await asyncio.sleep(0)
                    self._drain(n)
                await self._commit()
        finally:
            await self._shutdown()
        return self.st

    # -- the loop -------------------------------------------------------------------------------
    def _drain(self, n: int) -> int:
        while n < 1000 and not self.inbox.empty():
            self._take(self.inbox.get_nowait())
            n += 1
        return n

    def _finished(self) -> bool:
        st = self.st
        if st.finished or self.stopped is not None:
            return True
        if self.lease_lost:
            log.warning("run %s: lease lost; stopping without finishing", st.run_id)
            return True
        return (
            st.status is RunStatus.PAUSED
            and not self.tasks
            and self.inbox.empty()
            and not self.cfg.linger_when_paused
        )

    def _take(self, item: Any) -> None:
        if type(item) is tuple:
            kind = item[0]
            if kind == "tick":
                self._tick_due = True  # handled in _commit: it awaits the store
                return
            if kind == "control":
                make = _CONTROLS.get(item[1])
                if make is None:
                    return
                item = make(item[2])
        self._inputs.append(item)

    def _decide(self) -> None:
        """Decide every input taken since the last turn, in order."""
        inputs, self._inputs = self._inputs, []
        st, now = self.st, self.clock.now()
        for item in inputs:
            if type(item) is Emitted and item.event.type in NOT_FOLDED:
                self._events.append(item.event)  # informational: appended, never folded
                continue
            d = decide(st, item, now)
            self._events.extend(d.events)
            self._commands.extend(d.commands)

    async def _commit(self) -> None:
        if self._tick_due:
            self._tick_due = False
            await self._poll()
        if self._inputs:
            if self.st.evaluates:
                # the flow's conditions / for_each / outputs are templates: a slow one holds
                # a worker thread (until its time cap), never the event loop. Nothing else
                # reads the state meanwhile: units got their context when they started.
                await asyncio.to_thread(self._decide)
            else:
                self._decide()
        events, self._events = self._events, []
        if self._create is not None:
            run, first = self._create
            self._create = None
            stored = await self.writer.append(self.st.run_id, [*first, *events], self.clock.now(), create=run)
        elif events:
            stored = await self.writer.append(self.st.run_id, events, self.clock.now())
        else:
            stored = []
        if stored:
            for e in stored:
                for sub in self.subscribers:
                    try:
                        sub(e)
                    except Exception:  # noqa: BLE001 - observers never break a run
                        log.exception("event observer failed")
        commands, self._commands = self._commands, []
        for c in commands:
            self._execute(c)

    def _tick(self) -> None:
        self.inbox.put_nowait(("tick",))
        self._tick_handle = asyncio.get_running_loop().call_later(self.cfg.poll_interval, self._tick)

    async def _poll(self) -> None:
        now = self.clock.now()
        if self.cfg.poll_controls:
            try:
                if self._controls is not None:
                    controls = await self._controls(self.st.run_id)
                else:
                    controls = await self.writer.call(self.log.take_controls, self.st.run_id)
            except Exception:  # noqa: BLE001 - a failed poll is retried next tick
                log.exception("polling controls failed")
                controls = []
            for c in controls:
                self._take(("control", c.action, dict(c.payload)))
        if self.cfg.owner and now - self._last_beat >= self.cfg.lease_seconds / 3:
            self._last_beat = now
            try:
                ok = await self.writer.call(
                    self.log.heartbeat, self.st.run_id, self.cfg.owner, now, self.cfg.lease_seconds
                )
            except Exception:  # noqa: BLE001
                log.exception("lease heartbeat failed")
                ok = True
            if not ok:
                self.lease_lost = True

    # -- commands -------------------------------------------------------------------------------
    def _execute(self, c: Command) -> None:
        t = type(c)
        if t is Execute:
            assert isinstance(c, Execute)
            ctx = self._context(c)  # now, between decisions: the task never reads the state
            cache_file = self._cache_file(c) if ctx.step.cache and self.cfg.cache_dir else None
            coro = self._unit(c, ctx, cache_file)
            context = None
            first: Any = None
            if cache_file is None and _runs_inline(self._executor(ctx.step.kind), ctx):
                # the executor declared this call safe to start in the runner's own task: run
                # it here until it finishes (it reported itself: no task, no loop turn) or
                # first waits (a task continues it, in the same context)
                context = contextvars.copy_context()
                try:
                    first = context.run(coro.send, None)
                except StopIteration:
                    return
                except asyncio.CancelledError as exc:  # raised by the step itself, inline
                    self.inbox.put_nowait(StepCanceled(c.node_id, c.unit, c.attempt, str(exc) or "canceled"))
                    return
                coro = _Continue(coro, first).run()
            task = asyncio.get_running_loop().create_task(
                coro, name=f"llmflow:{c.node_id}[{c.unit}]#{c.attempt}", context=context
            )
            key = (c.node_id, c.unit)
            self.tasks[key] = (task, c)
            task.add_done_callback(functools.partial(self._unit_done, c))
        elif t is Cancel:
            assert isinstance(c, Cancel)
            key = (c.node_id, c.unit)
            entry = self.tasks.get(key)
            if entry is not None and not entry[0].done() and key not in self.cancels:
                self.cancels[key] = c
                # the reason travels with the cancellation: a model call cut short by the
                # step's timeout tells it apart from a cancel (see step_timeout_of)
                entry[0].cancel(c.reason)
        elif t is StartTimer:
            assert isinstance(c, StartTimer)
            self.timers[c.timer] = c.at
            self._arm_timer()
        elif t is AnswerHuman:
            assert isinstance(c, AnswerHuman)
            fut = self.human_waiters.pop(c.request_id, None)
            if fut is not None and not fut.done():
                if c.error is not None:
                    fut.set_exception(HumanTimeoutError(c.error, hint=c.hint))
                else:
                    fut.set_result(c.answer)
        elif t is AskHuman:
            for hook in self.ask_hooks:
                try:
                    hook(c)  # type: ignore[arg-type]
                except Exception:  # noqa: BLE001
                    log.exception("human-input hook failed")
        elif t is Stop:
            assert isinstance(c, Stop)
            self.stopped = c.reason

    async def _unit(self, cmd: Execute, ctx: StepContext, cache_file: Path | None) -> Any:
        """One unit's task: it reports its own result or error as it ends (the runner wakes
        in the next turn of the loop, not one later through a done-callback); a cancellation
        is reported by the done-callback, which knows why (and sees a task cancelled before
        it ever ran)."""
        try:
            out = await self._run_unit(ctx, cache_file)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the step's failure, reported as its result
            self._report(cmd, None, exc)
            return None
        self._report(cmd, out, None)
        return out

    def _report(self, cmd: Execute, out: Any, exc: BaseException | None) -> None:
        key = (cmd.node_id, cmd.unit)
        entry = self.tasks.get(key)
        if entry is not None and entry[1] is cmd:
            del self.tasks[key]
        self.cancels.pop(key, None)
        self.inbox.put_nowait(self._result(cmd, out, exc))

    def _result(self, cmd: Execute, out: Any, exc: BaseException | None) -> Any:
        if exc is None:
            return StepSucceeded(cmd.node_id, cmd.unit, cmd.attempt, out)
        if not isinstance(exc, LlmflowError):
            log.warning("step %s raised", cmd.node_id, exc_info=exc)
        p = error_payload(exc)
        return StepFailed(
            cmd.node_id,
            cmd.unit,
            cmd.attempt,
            p["error"],
            p["kind"],
            p["retryable"],
            p.get("retry_after"),
            p.get("hint"),
        )

    def _unit_done(self, cmd: Execute, task: asyncio.Task[Any]) -> None:
        """A unit's task ended: report it unless it reported itself (it ended with a result
        or an error, not cancelled)."""
        if not task.cancelled() and task.exception() is None:
            return
        key = (cmd.node_id, cmd.unit)
        entry = self.tasks.get(key)
        if entry is not None and entry[0] is task:
            del self.tasks[key]
        cancel = self.cancels.pop(key, None)
        if task.cancelled():
            if cancel is not None and cancel.silent:
                return
            if cancel is not None and cancel.fail_kind:
                inp: Any = StepFailed(
                    cmd.node_id, cmd.unit, cmd.attempt, cancel.reason, cancel.fail_kind, False
                )
            else:
                inp = StepCanceled(
                    cmd.node_id, cmd.unit, cmd.attempt, cancel.reason if cancel else "canceled"
                )
        else:
            exc = task.exception()
            inp = self._result(cmd, task.result() if exc is None else None, exc)
        self.inbox.put_nowait(inp)

    def _arm_timer(self) -> None:
        if self._timer_handle is not None:
            self._timer_handle.cancel()
            self._timer_handle = None
        if not self.timers:
            return
        delay = min(self.timers.values()) - self.clock.now()
        # at most a second: a clock that jumps (tests, a suspended machine) is noticed
        self._timer_handle = asyncio.get_running_loop().call_later(min(max(delay, 0.0), 1.0), self._on_timer)

    def _on_timer(self) -> None:
        self._timer_handle = None
        now = self.clock.now()
        for tid, at in list(self.timers.items()):
            if at <= now:
                del self.timers[tid]
                self.inbox.put_nowait(TimerFired(tid))
        self._arm_timer()

    # -- one unit -------------------------------------------------------------------------------
    def _context(self, cmd: Execute) -> StepContext:
        st = self.st
        n = st.nodes[cmd.node_id]
        vars_ = dict(cmd.vars)
        spec = n.spec
        # not getattr(spec, "agent", None): on a spec without the field, pydantic's failed
        # look-up raises and catches an AttributeError on every unit
        has = _HAS_AGENT.get(type(spec))
        if has is None:
            has = _HAS_AGENT[type(spec)] = "agent" in type(spec).model_fields
        agent_name = vars_.get("agent") or (cast(Any, spec).agent if has else None)
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
            emit=self._emit,
            ask_human=ask,
            run_child=child,
            llm=self.llm,
            run_models=self.cfg.run_models,
            env_models=self.cfg.env_models,
            allow_shell=self.cfg.allow_shell,
            functions=self.cfg.functions,
            settings=self.cfg.settings,
            # the first attempt of a generation has no earlier attempts to replay; a later one
            # reads them in _run_unit, off the event loop, before the step starts
            prior=_no_prior,
        )
        return ctx

    async def prior_events(self, node_id: str, unit_key: str, attempt: int) -> list[Event]:
        """Events recorded for this step and unit by its attempts since the step's last re-run
        that ended interrupted (their process stopped), in order; the store is read through
        the writer (off the event loop where the store is shared with other processes)."""
        if attempt <= 1:
            return []
        unit = unit_key or None
        logged: list[Event] = await self.writer.call(self.log.events, self.st.run_id)
        mine = [
            e
            for e in logged
            if e.step_id == node_id
            and ((e.unit or None) == unit or (e.type == E.STEP_RERUN and e.unit is None))
        ]
        start = max((i for i, e in enumerate(mine) if e.type == E.STEP_RERUN), default=-1) + 1
        mine = mine[start:]
        interrupted = {
            e.attempt
            for e in mine
            if e.type == E.ATTEMPT_INTERRUPTED and e.attempt is not None and e.attempt < attempt
        }
        return [e for e in mine if e.attempt in interrupted]

    async def _run_unit(self, ctx: StepContext, cache_file: Path | None) -> Any:
        if ctx.attempt > 1:
            prior = await self.prior_events(ctx.node_id, ctx.unit, ctx.attempt)
            ctx.prior = lambda: prior
        if cache_file is not None and cache_file.exists():
            cached = json.loads(cache_file.read_text(encoding="utf-8"))["output"]
            ctx.event(
                E.STEP_CACHE_HIT, f"Reusing the cached output of {ctx.node_id}", cache_key=cache_file.stem
            )
            return cached
        executor = self._executor(ctx.step.kind)
        if executor is None:
            raise StepError(f"no executor for step kind {ctx.step.kind!r}")
        out = _jsonable(await executor(ctx))
        if cache_file is not None:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache_file.with_suffix(".tmp")
            tmp.write_text(json.dumps({"output": out}), encoding="utf-8")
            tmp.replace(cache_file)
        return out

    def _executor(self, kind: str) -> StepExecutor | None:
        """The executor of a step kind, looked up once per run (the registry's mapping
        resolves and may import on every look-up)."""
        if kind in self._executors:
            return self._executors[kind]
        found = self._executors[kind] = self.executors.get(kind)
        return found

    def _cache_file(self, cmd: Execute) -> Path:
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
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.human_waiters[rid] = fut
        self.inbox.put_nowait(
            HumanAsked(
                cmd.node_id,
                cmd.unit,
                cmd.attempt,
                rid,
                q.prompt,
                q.input,
                q.options,
                q.default,
                q.timeout,
                self.cfg.park_after,
            )
        )
        try:
            return await fut
        finally:
            if self.human_waiters.get(rid) is fut:
                del self.human_waiters[rid]

    # -- the end --------------------------------------------------------------------------------
    async def _shutdown(self) -> None:
        for h in (self._timer_handle, self._tick_handle):
            if h is not None:
                h.cancel()
        tasks = [t for t, _ in self.tasks.values()]
        for t in tasks:
            if not t.done():
                t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self.tasks.clear()
        for fut in self.human_waiters.values():
            if not fut.done():
                fut.cancel()
