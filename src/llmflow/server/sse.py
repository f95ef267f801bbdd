"""Server-Sent Events: one run's events as ``id:``/``event:``/``data:`` frames.

A stream replays the events after the client's cursor (``Last-Event-ID`` header, else the
``after`` / ``after_id`` query parameter), then follows the run live; ``: keepalive``
comments keep proxies from closing an idle stream. The stream ends once the run has
finished and its last event was sent; an EventSource that reconnects with its
Last-Event-ID gets nothing twice.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import Request
from fastapi.responses import StreamingResponse

from llmflow.engine.events import Event

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "Connection": "keep-alive"}

# (event) -> (id, event name, data object)
Formatter = Callable[[Event], tuple[int | None, str, Any]]


def frame(data: Any, *, id: int | None = None, event: str | None = None) -> bytes:
    out = ""
    if id is not None:
        out += f"id: {id}\n"
    if event:
        out += f"event: {event}\n"
    text = data if isinstance(data, str) else json.dumps(data, default=str, ensure_ascii=False)
    for line in text.splitlines() or [""]:
        out += f"data: {line}\n"
    return (out + "\n").encode()


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
    services: Any, run_id: str, after_seq: int, fmt: Formatter, *, keepalive: float | None = None
) -> AsyncIterator[bytes]:
    follower = services.follower(run_id, after_seq)
    keepalive = keepalive or services.config.sse_keepalive
    yield b": connected\n\n"
    while True:
        events = await follower.next(keepalive)
        if not events:
            if follower.finished():
                return
            yield b": keepalive\n\n"
            continue
        for e in events:
            id_, name, data = fmt(e)
            yield frame(data, id=id_, event=name)
        if follower.finished():
            return


def sse_response(frames: AsyncIterator[bytes]) -> StreamingResponse:
    return StreamingResponse(frames, media_type="text/event-stream", headers=SSE_HEADERS)
