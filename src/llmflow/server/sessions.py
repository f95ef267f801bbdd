"""Buttermilk sessions: a session runs flows and keeps every frame it sent to its
WebSocket clients, numbered, so a client that reconnects gets what it missed.

Frames are shaped like Buttermilk's ``ChatMessage`` envelope (``type``, ``message_id``,
``preview``, ``outputs``, ``timestamp``, ``agent_info``) plus ``seq`` (the frame's number in
the session), ``content``, ``run_id`` and ``session_id``. How run events become frames:

=============================================  ==================================================
event                                          frame
=============================================  ==================================================
HUMAN_INPUT_REQUESTED                          ``ui_message`` (``content`` = the question,
                                               ``options`` = the choices, or true for a yes/no)
LLM_DONE (text from the LLM_TOKENS before it)  ``chat_message`` with ``agent_info`` (step, unit,
                                               model); an llm step that streamed nothing gets
                                               its chat message from STEP_COMPLETED
HUMAN_INPUT_RECEIVED                           ``user_message``
ATTEMPT_FAILED, STEP_FAILED, RUN_FAILED        ``system_error``
RUN_COMPLETED / RUN_FAILED / RUN_CANCELED      ``system_message`` with content ``flow_completed``
                                               (and ``status``): the end of the flow
DIRECTIVE                                      ``system_message``
TOOL_CALL_COMPLETED, TOOL_CALL_FAILED          ``tool_output`` (``content`` = the result or the
                                               error; ``outputs``: call_id, name, arguments,
                                               status, duration)
TOOL_CALL_STARTED                              ``system_update``
every other event (steps, shell, artifacts)    ``system_update``
LLM_TOKENS, LLM_LOADING_MODEL, ...             no frame
=============================================  ==================================================
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
import time
from datetime import UTC, datetime
from typing import Any

from llmflow.engine.events import RUN_END_EVENTS, Event
from llmflow.engine.events import EventType as E
from llmflow.engine.states import RUN_TERMINAL, RunStatus

log = logging.getLogger("llmflow.server.sessions")

SESSION_ID = re.compile(r"^[A-Za-z0-9_\-]{1,128}$")
PREVIEW = 200
SILENT = frozenset(
    {
        E.LLM_LOADING_MODEL,
        E.LLM_GENERATING,
        E.LLM_HEARTBEAT,
        E.LLM_ERROR,
        E.WORKFLOW_FAILED,
        E.WORKFLOW_COMPLETED,
        E.ATTEMPT_STARTED,
        E.ATTEMPT_COMPLETED,
        E.ATTEMPT_CANCELED,
        E.ATTEMPT_INTERRUPTED,
    }
)
ERRORS = frozenset({E.ATTEMPT_FAILED, E.STEP_FAILED, E.RUN_FAILED})
ENDS = RUN_END_EVENTS
_END_STATUS: dict[str, RunStatus] = {
    E.RUN_COMPLETED: RunStatus.COMPLETED,
    E.RUN_FAILED: RunStatus.FAILED,
    E.RUN_CANCELED: RunStatus.CANCELED,
}
# a finished run's session status, in Buttermilk's words
_SESSION_END: dict[str, str] = {
    RunStatus.COMPLETED: "completed",
    RunStatus.FAILED: "failed",
    RunStatus.CANCELED: "terminated",
}


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def envelope(
    type_: str,
    content: Any,
    *,
    ts: float | None = None,
    message_id: str | None = None,
    agent_info: dict[str, Any] | None = None,
    outputs: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    text = content if isinstance(content, str) else ("" if content is None else str(content))
    frame = {
        "type": type_,
        "message_id": message_id or secrets.token_hex(8),
        "timestamp": iso(ts or time.time()),
        "preview": text.splitlines()[0][:PREVIEW] if text else "",
        "content": content,
        "outputs": {"content": content, **(outputs or {})},
        "agent_info": agent_info,
        **extra,
    }
    return {k: v for k, v in frame.items() if v is not None}


class FrameMapper:
    """Turns one run's events, in order, into frames."""

    def __init__(self, run_id: str, flow: str, spec: Any = None) -> None:
        self.run_id = run_id
        self.flow = flow
        self.spec = spec  # the Flow: agents' configured roles and descriptions
        self.announced: set[str] = set()
        self.unit_matrix: dict[tuple[str, str], dict[str, Any]] = {}  # (step, unit) -> its matrix values
        self.kinds: dict[str, str] = {}
        self.models: dict[str, str] = {}
        self.tokens: dict[tuple[str | None, str | None, int | None], list[str]] = {}
        self.chatted: set[str] = set()

    def _agent_name(self, e: Event) -> str | None:
        """The agent behind the event: a broadcast unit / conductor participant, or the
        step's own agent."""
        spec = self.spec
        if spec is None:
            return None
        if e.type == E.CONDUCTOR_TURN:
            who = e.payload.get("participant")
            return str(who) if who and who != "END" else None
        if e.unit and e.unit in spec.agents:
            return e.unit
        step = next((st for st in spec.all_steps() if st.id == e.step_id), None)
        name = getattr(step, "agent", None)
        return name if isinstance(name, str) else None

    def _agent(self, e: Event) -> dict[str, Any]:
        sid = e.step_id or ""
        name = self._agent_name(e)
        agent = self.spec.agents.get(name) if (self.spec is not None and name) else None
        label = name or e.unit or sid
        if agent is not None and e.unit and agent.name_components:
            import hashlib

            from llmflow.model.variants import unit_name

            unique = hashlib.sha1(e.unit.encode()).hexdigest()[:6]  # Buttermilk's unique_identifier: short
            label = unit_name(agent, self.unit_matrix.get((sid, e.unit)), unique) or label
        role = (agent.role if agent is not None and agent.role else None) or label
        model = self.models.get(sid) or (agent.model if agent is not None else None)
        return {
            "agent_id": f"{sid}/{e.unit}" if e.unit else sid,
            "agent_name": label,
            "name": label,
            "role": role,
            "description": agent.description if agent is not None else None,
            "step_id": sid,
            "unit": e.unit,
            "model": model,
            "parameters": {"model": model},
        }

    def _announce(self, e: Event, base: dict[str, Any]) -> list[dict[str, Any]]:
        """Buttermilk's agent_announcement, once per agent (FlowTestClient waits for them)."""
        info = self._agent(e)
        key = info["agent_name"]
        if key in self.announced:
            return []
        self.announced.add(key)
        data = {
            "agent_config": {
                "role": info["role"],
                "agent_id": info["agent_id"],
                "name": info["agent_name"],
                "description": info["description"],
            },
            "status": "joining",
            "announcement_type": "initial",
        }
        return [
            envelope(
                "agent_announcement",
                f"{info['role']} joined",
                agent_info=info,
                outputs={"source": info["role"]},
                data=data,
                **{**base, "message_id": f"{base['message_id']}:hello"},
            )
        ]

    def waiting_on(self, e: Event) -> dict[str, Any]:
        """Buttermilk's FlowProgressUpdate.waiting_on: what the flow waits for now."""
        if e.type == E.HUMAN_INPUT_REQUESTED or e.type == E.RUN_PARKED:
            return {"MANAGER": 1}
        if e.type == E.STEP_STARTED and e.step_id:
            return {self._agent(e)["role"]: 1}
        return {}

    def frames(self, e: Event) -> list[dict[str, Any]]:
        t = e.type
        base: dict[str, Any] = {  # the envelope fields every frame of this event shares
            "ts": e.ts,
            "message_id": f"{e.run_id}:{e.seq}",
            "run_id": e.run_id,
            "event_seq": e.seq,
            "event_type": t,
        }
        if t == E.STEP_STARTED and e.step_id:
            self.kinds[e.step_id] = str(e.payload.get("kind", ""))
            for u in e.payload.get("units") or []:
                if isinstance(u, dict) and isinstance((u.get("vars") or {}).get("matrix"), dict):
                    self.unit_matrix[(e.step_id, str(u.get("key")))] = u["vars"]["matrix"]
        if t in (E.LLM_LOADING_MODEL, E.LLM_GENERATING, E.LLM_DONE) and e.step_id and e.payload.get("model"):
            self.models[e.step_id] = str(e.payload["model"])
        if t == E.LLM_TOKENS:
            self.tokens.setdefault((e.step_id, e.unit, e.attempt), []).append(str(e.payload.get("text", "")))
            return []
        if t == E.LLM_DONE:
            text = "".join(self.tokens.pop((e.step_id, e.unit, e.attempt), []))
            if not text:
                return []
            if e.step_id:
                self.chatted.add(e.step_id)
            info = self._agent(e)
            trace = envelope(
                "agent_trace",
                text,
                agent_info=info,
                data={"agent_info": info, "outputs": text},
                **{**base, "message_id": f"{base['message_id']}:trace"},
            )
            return [
                *self._announce(e, base),
                envelope(
                    "chat_message",
                    text,
                    agent_info=info,
                    outputs={"model": self.models.get(e.step_id or "")},
                    **base,
                ),
                trace,
            ]
        if t in SILENT:
            return []
        if t == E.HUMAN_INPUT_REQUESTED:
            p = e.payload
            options = p.get("options") or (["confirm", "reject"] if p.get("input") == "confirm" else [])
            return [
                envelope(
                    "ui_message",
                    p.get("prompt", e.message),
                    agent_info=self._agent(e) if e.step_id else None,
                    outputs={"options": options, "request_id": p.get("request_id"), "input": p.get("input")},
                    options=options,
                    request_id=p.get("request_id"),
                    **base,
                )
            ]
        if t == E.HUMAN_INPUT_RECEIVED:
            return []  # Buttermilk does not echo the user's answer back
        if t in (E.TOOL_CALL_COMPLETED, E.TOOL_CALL_FAILED):
            p = e.payload
            ok = t == E.TOOL_CALL_COMPLETED
            content = p.get("result") if ok else f"Error: {p.get('error')}"
            status = "COMPLETED" if ok else ("RETRYING" if p.get("retrying") else "FAILED")
            return [
                envelope(
                    "tool_output",
                    content
                    if isinstance(content, str)
                    else json.dumps(content, ensure_ascii=False, default=str),
                    agent_info=self._agent(e),
                    outputs={
                        "call_id": p.get("call_id"),
                        "name": p.get("name"),
                        "arguments": p.get("arguments"),
                        "status": status,
                        "duration": p.get("duration"),
                        "result": p.get("result") if ok else None,
                        "error": None if ok else p.get("error"),
                    },
                    call_id=p.get("call_id"),
                    name=p.get("name"),
                    **base,
                )
            ]
        out: list[dict[str, Any]] = []
        if t in ERRORS:
            out.append(
                envelope(
                    "system_error",
                    e.payload.get("error") or e.message,
                    agent_info=self._agent(e) if e.step_id else None,
                    **base,
                )
            )
        elif t == E.DIRECTIVE:
            out.append(envelope("system_message", e.message, **base))
        elif t not in ENDS:
            status = t.split("_", 1)[1] if "_" in t else t
            source = self._agent(e)["role"] if e.step_id else self.flow
            waiting = self.waiting_on(e)
            if t == E.WORKFLOW_STARTED:
                out.append(
                    envelope(
                        "flow_event",
                        "orchestrator_ready",
                        outputs={"source": self.flow},
                        **{**base, "message_id": f"{base['message_id']}:ready"},
                    )
                )
            out.append(
                envelope(
                    "system_update",
                    e.message,
                    outputs={
                        "source": source,
                        "step_name": e.step_id,
                        "status": status,
                        "message": e.message,
                        "waiting_on": waiting,
                    },
                    **base,
                )
            )
        if t == E.STEP_STARTED and e.step_id and self._agent_name(e):
            out.extend(self._announce(e, base))
        if (
            t == E.STEP_COMPLETED
            and e.step_id
            and self.kinds.get(e.step_id) == "llm"
            and e.step_id not in self.chatted
        ):
            self.chatted.add(e.step_id)
            info = self._agent(e)
            out.extend(self._announce(e, base))
            out.append(
                envelope(
                    "chat_message",
                    e.payload.get("output"),
                    agent_info=info,
                    **{**base, "message_id": f"{e.run_id}:{e.seq}:chat"},
                )
            )
            out.append(
                envelope(
                    "agent_trace",
                    e.payload.get("output"),
                    agent_info=info,
                    data={"agent_info": info, "outputs": e.payload.get("output")},
                    **{**base, "message_id": f"{e.run_id}:{e.seq}:trace"},
                )
            )
        if t in ENDS:
            status = _END_STATUS[t]
            out.append(
                envelope(
                    "system_message",
                    "flow_completed",
                    outputs={
                        "status": status,
                        "flow": self.flow,
                        "outputs": e.payload.get("outputs"),
                        "error": e.payload.get("error"),
                    },
                    status=status,
                    **{**base, "message_id": f"{e.run_id}:{e.seq}:end"},
                )
            )
            # the signals Buttermilk's FlowTestClient.wait_for_completion looks for
            out.append(
                envelope(
                    "flow_event",
                    "flow_completed",
                    outputs={"source": self.flow, "status": status},
                    **{**base, "message_id": f"{e.run_id}:{e.seq}:event"},
                )
            )
            out.append(
                envelope(
                    "flow_complete",
                    "flow_completed",
                    outputs={"status": status, "flow": self.flow},
                    status=status,
                    **{**base, "message_id": f"{e.run_id}:{e.seq}:complete"},
                )
            )
        return out


class Session:
    def __init__(self, sid: str, max_frames: int) -> None:
        self.id = sid
        self.created_at = time.time()
        self.last_activity = self.created_at
        self.flow_name: str | None = None
        self.run_id: str | None = None
        self.run_status: str | None = None
        self.frames: list[dict[str, Any]] = []
        self.first_seq = 1  # seq of frames[0]
        self.next_seq = 1
        self.max_frames = max_frames
        self.sockets = 0
        self.delivered = 0  # the last frame seq sent to a client of this session
        self.had_socket = False
        self.pending_answers: list[Any] = []
        self.follower: asyncio.Task[None] | None = None
        self._waiters: set[asyncio.Future[None]] = set()

    def add(self, frame: dict[str, Any]) -> dict[str, Any]:
        frame = {**frame, "seq": self.next_seq, "session_id": self.id}
        self.next_seq += 1
        self.frames.append(frame)
        if len(self.frames) > self.max_frames:
            drop = len(self.frames) - self.max_frames
            del self.frames[:drop]
            self.first_seq += drop
        self.last_activity = time.time()
        for fut in self._waiters:
            if not fut.done():
                fut.set_result(None)
        self._waiters.clear()
        return frame

    def after(self, seq: int) -> list[dict[str, Any]]:
        start = max(0, seq + 1 - self.first_seq)
        return self.frames[start:]

    async def wait(self, timeout: float) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.add(fut)
        try:
            await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            pass
        finally:
            self._waiters.discard(fut)

    @property
    def live(self) -> bool:
        return self.run_id is not None and self.run_status not in RUN_TERMINAL

    def status(self, timeout: float) -> str:
        if self.expired(timeout):
            return "expired"
        if self.run_status == RunStatus.PAUSED:
            return "paused"
        if self.live:
            return "active" if self.sockets or not self.had_socket else "reconnecting"
        if self.run_status is not None:
            return _SESSION_END.get(self.run_status, "active")
        return "active" if self.sockets else "initializing"

    def expired(self, timeout: float) -> bool:
        return not self.sockets and not self.live and time.time() - self.last_activity > timeout

    def info(self, timeout: float) -> dict[str, Any]:
        return {
            "session_id": self.id,
            "status": self.status(timeout),
            "flow_name": self.flow_name,
            "run_id": self.run_id,
            "created_at": iso(self.created_at),
            "last_activity": iso(self.last_activity),
            "is_expired": self.expired(timeout),
            "connections": self.sockets,
            "frames": self.next_seq - 1,
        }


class TooManySessions(Exception):
    pass


class SessionManager:
    """The Buttermilk sessions of one server (in memory: a session lives in the process
    that created it; its runs, like every run, are in the store)."""

    def __init__(self, services: Any) -> None:
        self.svc = services
        self.cfg = services.config
        self.sessions: dict[str, Session] = {}
        self._cleanup: asyncio.Task[None] | None = None

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        self._cleanup = asyncio.create_task(self._cleanup_loop(), name="llmflow-sessions-cleanup")

    async def close(self) -> None:
        tasks = [s.follower for s in self.sessions.values() if s.follower is not None]
        if self._cleanup is not None:
            tasks.append(self._cleanup)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _cleanup_loop(self) -> None:
        while True:
            await asyncio.sleep(min(60.0, max(1.0, self.cfg.session_timeout / 4)))
            self.expire()

    def expire(self) -> None:
        for sid in [sid for sid, s in self.sessions.items() if s.expired(self.cfg.session_timeout)]:
            s = self.sessions.pop(sid)
            if s.follower is not None:
                s.follower.cancel()

    def create(self, sid: str | None = None) -> Session:
        self.expire()
        if sid is not None and sid in self.sessions:
            return self.sessions[sid]
        if len(self.sessions) >= self.cfg.max_sessions:
            raise TooManySessions(
                f"too many sessions ({self.cfg.max_sessions}); delete some with DELETE /api/session/ID"
            )
        sid = sid or secrets.token_hex(8)
        s = self.sessions[sid] = Session(sid, self.cfg.max_frames)
        return s

    def get(self, sid: str) -> Session | None:
        s = self.sessions.get(sid)
        if s is not None and s.expired(self.cfg.session_timeout):
            self.sessions.pop(sid, None)
            return None
        return s

    def delete(self, sid: str) -> bool:
        s = self.sessions.pop(sid, None)
        if s is None:
            return False
        if s.live and s.run_id is not None:
            try:
                self.svc.control(s.run_id, "cancel", {"reason": f"session {sid} deleted"})
            except Exception:  # noqa: BLE001 - the run may have just finished
                log.debug("cancel on session delete failed", exc_info=True)
        if s.follower is not None:
            s.follower.cancel()
        return True

    # -- client messages ------------------------------------------------------------------------
    def error(self, session: Session, message: str) -> None:
        session.add(envelope("system_error", message))

    async def handle(self, session: Session, msg: Any) -> None:
        """One message from a WebSocket client."""
        session.last_activity = time.time()
        if not isinstance(msg, dict):
            log.info("session %s: ignored a message that is not a JSON object", session.id)
            return
        kind = msg.get("type")
        if kind is None and "flow" in msg:
            kind = "run_flow"
        from llmflow.errors import LlmflowError

        try:
            if kind == "run_flow":
                await self.run_flow(session, msg)
            elif kind == "manager_response":
                self.manager_response(session, msg)
            elif kind in ("ui_message", "user_message", "user_response"):
                content = msg.get("content", msg.get("text"))
                if content is None:
                    self.error(session, f"{kind} needs 'content'; ignored")
                else:
                    self.answer(session, content)
            else:  # logged and ignored, as Buttermilk does (pull_task, TaskProcessing*, ...)
                log.info(
                    "session %s: ignored a message of type %r (known: run_flow, manager_response, ui_message)",
                    session.id,
                    kind,
                )
        except LlmflowError as exc:
            self.error(session, exc.message + (f" (hint: {exc.hint})" if exc.hint else ""))

    async def run_flow(self, session: Session, req: dict[str, Any]) -> str | None:
        from llmflow.errors import FlowNotFoundError, FlowValidationError
        from llmflow.server.schemas import FlowRequestIn

        if session.live:
            self.error(
                session,
                f"a flow is already running in this session (run {session.run_id}); wait for flow_completed or send manager_response with halt",
            )
            return None
        body = {k: v for k, v in req.items() if k != "type"}
        try:
            rr = FlowRequestIn.model_validate(body)
        except Exception as exc:  # noqa: BLE001 - pydantic's ValidationError, reported to the client
            self.error(session, f"invalid run_flow message: {exc}")
            return None
        if not rr.flow:
            self.error(
                session,
                "run_flow needs 'flow' (the flow name); flows: " + ", ".join(self.svc.catalog.names()),
            )
            return None
        try:
            return await self.start_run(session, rr)
        except FlowNotFoundError as exc:
            self.error(session, f"{exc.message}" + (f" ({exc.hint})" if exc.hint else ""))
        except FlowValidationError as exc:
            self.error(session, "; ".join(d.format() for d in exc.diagnostics))
        return None

    async def start_run(self, session: Session, rr: Any, flow: str | None = None) -> str:
        name = flow or rr.flow
        loaded = await self.svc.load(name)
        params = {**rr.extra_parameters(), **rr.parameters}
        inputs = self.svc.request_inputs(
            loaded.flow, prompt=rr.prompt, text=rr.text, uri=rr.uri, record_id=rr.record_id, parameters=params
        )
        meta = {
            k: v
            for k, v in (("session_id", session.id), ("record_id", rr.record_id), ("uri", rr.uri))
            if v is not None
        }
        opts = self.svc.options(metadata=meta, run_type="flow", name=f"{name} {rr.record_id or ''}".strip())
        rec = self.svc.submit(loaded, inputs, opts)
        self.attach(session, rec.id, loaded.flow.name, loaded.flow)
        return rec.id

    def attach(self, session: Session, run_id: str, flow: str, spec: Any = None) -> None:
        session.run_id, session.flow_name, session.run_status = run_id, flow, RunStatus.QUEUED
        for value in session.pending_answers:
            self.svc.control(run_id, "answer", {"request_id": None, "answer": value})
        session.pending_answers.clear()
        session.follower = asyncio.create_task(
            self._follow(session, run_id, flow, spec), name=f"llmflow-session:{session.id}"
        )

    async def _follow(self, session: Session, run_id: str, flow: str, spec: Any = None) -> None:
        mapper = FrameMapper(run_id, flow, spec)
        follower = self.svc.follower(run_id, 0)
        try:
            while True:
                events = await follower.next(5.0)
                for e in events:
                    for fr in mapper.frames(e):
                        session.add(fr)
                rec = self.svc.store.get_run(run_id)
                session.run_status = rec.status if rec is not None else RunStatus.FAILED
                if follower.finished():
                    return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a broken follower must not hang the session
            log.exception("session %s: following run %s failed", session.id, run_id)
            self.error(session, f"internal error while following run {run_id}: {type(exc).__name__}")

    def manager_response(self, session: Session, msg: dict[str, Any]) -> None:
        if session.run_id is not None and session.live and (msg.get("halt") or msg.get("interrupt")):
            action = "cancel" if msg.get("halt") else "pause"
            try:
                self.svc.control(session.run_id, action, {"reason": "manager_response"})
            except Exception as exc:  # noqa: BLE001 - e.g. already paused
                self.error(session, f"{action} failed: {exc}")
            return
        answer = {k: msg[k] for k in ("confirm", "content", "selection") if msg.get(k) is not None}
        if not answer:
            answer = {"confirm": True}  # an empty response confirms, as ENTER does in the console
        if set(answer) == {"content"} or set(answer) == {"selection"}:
            self.answer(session, next(iter(answer.values())))
        else:
            self.answer(session, answer)

    def answer(self, session: Session, value: Any) -> None:
        """Deliver an answer to the session's run; one that arrives before its question is
        kept by the run (or by the session, before the run exists)."""
        if session.run_id is None:
            session.pending_answers.append(value)
        elif not session.live:
            self.error(
                session,
                f"no flow is running in this session (run {session.run_id} is {session.run_status}); answer ignored",
            )
        else:
            self.svc.control(session.run_id, "answer", {"request_id": None, "answer": value})
