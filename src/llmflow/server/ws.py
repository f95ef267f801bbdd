"""WebSockets: Buttermilk's session socket (``/ws``, ``/ws/{session_id}``) and the native
run socket (``/api/v1/runs/{id}/ws``).

Session socket. Client messages: ``{"type": "run_flow", "flow": ..., "prompt": ...}``,
``{"type": "manager_response", "confirm"|"content"|"selection"|"halt"|"interrupt": ...}``,
``{"type": "ui_message", "content": ...}``; anything else is ignored with a
``system_error`` frame. Frames are numbered (``seq``); on connect the server sends every
frame of the session after ``?since=N`` (all of them by default), then live ones, so a
client that reconnects gets what it missed. ``/ws`` without an id starts a new session and
says so in its first frame (``system_message`` with content ``session_started``).

Run socket. ``?after=N`` (default 0): the run's events with ``seq > N`` as
``{"type": "event", "event": {...}}``, in order, replay then live, with no gap and no
duplicate, and ``{"type": "end", "status": ...}`` when the run has finished (the socket
stays open: a re-run continues the stream). Client messages: ``{"type": "answer",
"answer": ..., "request_id"?}``, ``{"type": "cancel" | "pause" | "resume"}``,
``{"type": "rerun", "step": ..., "unit"?, "downstream"?}``, ``{"type": "directive",
"text": ...}``; each is acknowledged with ``{"type": "ack", ...}`` or
``{"type": "error", "detail": ...}``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any, NoReturn

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from llmflow.errors import LlmflowError
from llmflow.isotime import iso_event
from llmflow.server.schemas import check_json
from llmflow.server.sessions import SESSION_ID, TooManySessions, envelope

log = logging.getLogger("llmflow.server.ws")
router = APIRouter()

# close codes (RFC 6455): the client sent a kind of data we do not take / a message too big
UNSUPPORTED_DATA = 1003
MESSAGE_TOO_BIG = 1009


class _Closed(Exception):
    """The socket was closed by us (bad frame), by the client, or by the server's protocol
    layer (a frame that is not valid UTF-8: 1007)."""


async def _close(ws: WebSocket, code: int, reason: str) -> NoReturn:
    """Close with ``code``, unless the protocol layer closed the socket first; then _Closed."""
    try:
        await ws.close(code=code, reason=reason)
    except RuntimeError as exc:
        if "close" not in str(exc).lower():
            raise
    raise _Closed


async def _send_json(ws: WebSocket, obj: Any) -> None:
    """Send, or raise _Closed when the socket is already closed (the protocol layer can
    close it between two of our sends)."""
    try:
        await ws.send_json(obj)
    except WebSocketDisconnect:
        raise _Closed from None
    except RuntimeError as exc:  # Starlette / Uvicorn: a send after the close
        if "close" in str(exc).lower():
            raise _Closed from None
        raise


async def _receive_json(ws: WebSocket) -> tuple[bool, Any]:
    """(ok, message); ok is False for text that is not JSON. A binary frame or a message
    over LLMFLOW_MAX_FRAME_BYTES closes the socket with 1003 / 1009 (the server's
    WebSocket layer refuses bigger frames before they are read) and raises _Closed."""
    msg = await ws.receive()
    if msg["type"] == "websocket.disconnect":
        raise _Closed
    text = msg.get("text")
    if text is None:
        await _close(ws, UNSUPPORTED_DATA, "send JSON as text frames; binary frames are not accepted")
    limit = getattr(ws.app.state.config, "max_frame_bytes", 1_048_576)
    if len(text) > limit:
        await _close(ws, MESSAGE_TOO_BIG, f"messages are at most {limit} bytes (LLMFLOW_MAX_FRAME_BYTES)")
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return False, "not JSON"
    try:  # what no store can hold (a lone surrogate "\\ud800", NaN, ...) is refused here
        check_json(value, "message")
    except ValueError as exc:
        reason = str(exc).encode("utf-8", "replace").decode("utf-8")  # a bad key is in it
        return False, f"not storable JSON ({reason})"
    return True, value


def _int_param(ws: WebSocket, name: str) -> int | None:
    raw = ws.query_params.get(name)
    if raw is None:
        return None
    try:
        v = int(raw)
    except ValueError:
        return None
    return v if 0 <= v <= 2**62 else None


# -- Buttermilk sessions ---------------------------------------------------------------------------
@router.websocket("/ws")
async def ws_new_session(ws: WebSocket) -> None:
    await _session_socket(ws, None)


@router.websocket("/ws/{session_id}")
async def ws_session(ws: WebSocket, session_id: str) -> None:
    await _session_socket(ws, session_id)


async def _session_socket(ws: WebSocket, session_id: str | None) -> None:
    svc = ws.app.state.services
    mgr = svc.sessions
    if session_id is not None and not SESSION_ID.match(session_id):
        await ws.close(code=1008, reason="session ids are 1-128 letters, digits, '-' or '_'")
        return
    try:
        session = mgr.get(session_id) if session_id else None
        fresh = session is None
        session = session or mgr.create(session_id)
    except TooManySessions as exc:
        await ws.close(code=1013, reason=str(exc)[:120])
        return
    await ws.accept()
    session.sockets += 1
    session.had_socket = True
    if fresh and session_id is None:
        session.add(envelope("system_message", "session_started", outputs={"session_id": session.id}))
    # a reconnect gets only what no client of the session has been sent: ?since=N (the last
    # seq the client saw) wins, else the session's delivered cursor
    since = _int_param(ws, "since")
    lock = asyncio.Lock()

    async def sender() -> None:
        cursor = since if since is not None else session.delivered
        while True:
            frames = session.after(cursor)
            for fr in frames:
                async with lock:
                    await _send_json(ws, fr)
                cursor = fr["seq"]
                session.delivered = max(session.delivered, cursor)
            if not frames:
                await session.wait(30.0)

    task = asyncio.create_task(sender())
    try:
        while True:
            ok, msg = await _receive_json(ws)
            if not ok:
                log.info("session %s: ignored a message that is %s", session.id, msg)
                continue
            await mgr.handle(session, msg)
    except (WebSocketDisconnect, _Closed):
        pass
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        session.sockets -= 1
        session.last_activity = time.time()


# -- native run socket -----------------------------------------------------------------------------
@router.websocket("/api/v1/runs/{run_id}/ws")
async def run_socket(ws: WebSocket, run_id: str) -> None:
    svc = ws.app.state.services
    rec = svc.store.get_run(run_id) if "\x00" not in run_id and len(run_id) <= 300 else None
    await ws.accept()
    if rec is None:
        await ws.send_json({"type": "error", "detail": f"no run {run_id!r}"})
        await ws.close(code=4404)
        return
    lock = asyncio.Lock()

    async def send(obj: dict[str, Any]) -> None:
        async with lock:
            await _send_json(ws, obj)

    async def sender() -> None:
        follower = svc.follower(run_id, _int_param(ws, "after") or 0)
        ended = False
        while True:
            events = await follower.next(15.0 if not ended else 60.0)
            for e in events:
                await send({"type": "event", "event": iso_event(e.to_dict())})
            if events:
                ended = False
            if not ended and follower.finished():
                ended = True
                cur = svc.store.get_run(run_id)
                await send({"type": "end", "status": cur.status if cur else None, "last_seq": follower.seq})

    task = asyncio.create_task(sender())
    try:
        while True:
            ok, msg = await _receive_json(ws)
            if not ok or not isinstance(msg, dict):
                why = f"ignored a message that is {msg}; " if not ok else ""
                await send({"type": "error", "detail": why + "messages are JSON objects with a 'type'"})
                continue
            await send(_run_command(svc, run_id, msg))
    except (WebSocketDisconnect, _Closed):
        pass
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def _run_command(svc: Any, run_id: str, msg: dict[str, Any]) -> dict[str, Any]:
    kind = msg.get("type")
    try:
        if kind == "answer":
            rid = msg.get("request_id")
            result = svc.control(
                run_id,
                "answer",
                {"request_id": rid if isinstance(rid, str) else None, "answer": msg.get("answer")},
            )
        elif kind in ("cancel", "pause", "resume"):
            result = svc.control(run_id, kind)
        elif kind == "directive":
            svc.directive(run_id, str(msg.get("text", "")))
            result = "recorded"
        elif kind == "rerun":
            step = msg.get("step")
            if not isinstance(step, str) or not step:
                return {"type": "error", "action": kind, "detail": "rerun needs 'step'"}
            unit = msg.get("unit")
            stale = svc.rerun(
                run_id, step, unit if isinstance(unit, str) else None, bool(msg.get("downstream"))
            )
            result = f"re-run of {step} queued; stale: {', '.join(stale) or 'none'}"
        else:
            return {
                "type": "error",
                "action": kind,
                "detail": f"unknown message type {kind!r} (known: answer, cancel, pause, resume, rerun, directive)",
            }
    except LlmflowError as exc:
        return {
            "type": "error",
            "action": kind,
            "detail": exc.message + (f" (hint: {exc.hint})" if exc.hint else ""),
        }
    return {"type": "ack", "action": kind, "result": result}
