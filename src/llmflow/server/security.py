"""Bearer-token auth and request size limits, as plain ASGI middleware so they cover
HTTP and WebSocket alike.

- ``LLMFLOW_API_TOKEN`` set: every request but ``GET /health`` needs
  ``Authorization: Bearer <token>``; WebSocket clients that cannot set headers (browsers)
  may pass ``?token=<token>`` instead. A missing or wrong token is 401 (WebSocket: closed
  with code 1008 before it is accepted).
- Bodies larger than ``LLMFLOW_MAX_BODY_BYTES`` are refused with 413 without reading them
  further.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

OPEN_PATHS = frozenset({"/health"})


async def _json(send: Send, status: int, body: dict[str, Any], headers: list[tuple[bytes, bytes]] | None = None) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()), *(headers or [])]})
    await send({"type": "http.response.body", "body": data})


class TokenAuth:
    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token.encode()

    def _ok(self, scope: Scope) -> bool:
        for k, v in scope.get("headers") or []:
            if k == b"authorization":
                scheme, _, given = v.partition(b" ")
                if scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), self.token):
                    return True
        if scope["type"] == "websocket":
            qs = parse_qs((scope.get("query_string") or b"").decode("latin-1"))
            for given in qs.get("token", []):
                if hmac.compare_digest(given.encode("latin-1", "replace"), self.token):
                    return True
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope.get("path") in OPEN_PATHS or self._ok(scope):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": 1008, "reason": "missing or wrong token"})
            return
        if scope.get("method") == "OPTIONS":  # CORS preflight carries no credentials
            await self.app(scope, receive, send)
            return
        await _json(send, 401, {"detail": "missing or wrong bearer token: send 'Authorization: Bearer <LLMFLOW_API_TOKEN>'"}, [(b"www-authenticate", b"Bearer")])


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for k, v in scope.get("headers") or []:
            if k == b"content-length":
                try:
                    declared = int(v)
                except ValueError:
                    await _json(send, 400, {"detail": "invalid Content-Length header"})
                    return
                if declared > self.max_bytes:
                    await _json(send, 413, {"detail": f"request body too large: {declared} bytes, at most {self.max_bytes} (LLMFLOW_MAX_BODY_BYTES)"})
                    return
        if not any(k == b"content-length" for k, _ in scope.get("headers") or []) and scope.get("method") in ("POST", "PUT", "PATCH"):
            # a body of unknown length (chunked): read it here, up to the limit, then replay it
            parts: list[bytes] = []
            size = 0
            while True:
                msg = await receive()
                if msg["type"] != "http.request":
                    return  # the client went away
                parts.append(msg.get("body", b""))
                size += len(parts[-1])
                if size > self.max_bytes:
                    await _json(send, 413, {"detail": f"request body too large: more than {self.max_bytes} bytes (LLMFLOW_MAX_BODY_BYTES)"})
                    return
                if not msg.get("more_body"):
                    break
            body, sent = b"".join(parts), False

            async def replay() -> dict[str, Any]:
                nonlocal sent
                if not sent:
                    sent = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await receive()

            await self.app(scope, replay, send)
            return
        await self.app(scope, receive, send)
