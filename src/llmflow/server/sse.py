"""Server-Sent Events: one run's events as ``id:``/``event:``/``data:`` frames.

A stream replays the events after the client's cursor (``Last-Event-ID`` header, else the
``after`` / ``after_id`` query parameter), then follows the run live; ``: keepalive``
comments keep proxies from closing an idle stream. The stream ends once the run has
finished and its last event was sent; an EventSource that reconnects with its
Last-Event-ID gets nothing twice.

``sse-starlette`` writes the frames, sends the keep-alives, notices a client that went away
and ends open streams when Uvicorn shuts down (it patches ``uvicorn.Server.handle_exit``
when imported, which is why the server imports this module only when it builds the app).
Hand-written still, because no library knows them: reading ``Last-Event-ID`` into a
sequence number, and the replay-then-follow loop over the store's follower (``hub.py``:
the store is the only source of events).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import Request
from sse_starlette import EventSourceResponse, ServerSentEvent

from llmflow.engine.events import Event

SEP = "\n"  # sse-starlette's default is CRLF; LF is what our clients (and the tests) read
HEADERS = {"Cache-Control": "no-cache"}  # the library adds Connection and X-Accel-Buffering

# (event) -> (id, event name, data object)
Formatter = Callable[[Event], tuple[int | None, str, Any]]


def frame(data: Any, *, id: int | None = None, event: str | None = None) -> ServerSentEvent:
    """One event; ``data`` goes out as JSON unless it is text already."""
    text = data if isinstance(data, str) else json.dumps(data, default=str, ensure_ascii=False)
    return ServerSentEvent(text, id=None if id is None else str(id), event=event or None, sep=SEP)


def id_only(id: int) -> ServerSentEvent:
    """A frame with only an id: moves the client's Last-Event-ID on, dispatches nothing."""
    return ServerSentEvent(id=str(id), sep=SEP)


def comment(text: str) -> ServerSentEvent:
    return ServerSentEvent(comment=text, sep=SEP)


def last_event_id(request: Request) -> int | None:
    raw = request.headers.get("last-event-id")
    if raw is None:
        return None
    try:
        value = int(raw.strip())
    except ValueError:
        return None
    return value if 0 <= value <= 2**62 else None


async def event_frames(
    services: Any, run_id: str, after_seq: int, fmt: Formatter
) -> AsyncIterator[ServerSentEvent]:
    """The run's events after ``after_seq``, then live ones, until the finished run's last."""
    follower = services.follower(run_id, after_seq)
    yield comment("connected")
    while True:
        events = await follower.next(services.config.sse_keepalive)
        for e in events:
            id_, name, data = fmt(e)
            yield frame(data, id=id_, event=name)
        if follower.finished():
            return


def sse_response(frames: AsyncIterator[ServerSentEvent], keepalive: float) -> EventSourceResponse:
    """``frames`` as ``text/event-stream``, a ``: keepalive`` comment every ``keepalive`` s."""
    return EventSourceResponse(
        frames, headers=HEADERS, ping=keepalive, sep=SEP, ping_message_factory=lambda: comment("keepalive")
    )
