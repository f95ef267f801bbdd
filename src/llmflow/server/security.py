"""Bearer-token auth, cross-site request refusal and request size limits, as plain ASGI
middleware so they cover HTTP and WebSocket alike (docs/security.md).

- ``LLMFLOW_API_TOKEN`` set: every request but ``GET /health`` needs
  ``Authorization: Bearer <token>``; WebSocket clients that cannot set headers (browsers)
  may pass ``?token=<token>`` instead. A missing or wrong token is 401 (WebSocket: closed
  with code 1008 before it is accepted). The token never reaches the access log
  (:class:`RedactTokens`).
- Cross-site requests (CSRF): a request that can change something (POST, PUT, PATCH,
  DELETE; ``GET /flow/...``, which runs a flow; every WebSocket handshake) coming from a
  web page is refused with 403 unless the page's origin is one of the CORS origins or the
  server's own. Browsers say where a request comes from (``Origin``, ``Sec-Fetch-Site``);
  scripts and CLIs send neither and pass. So a plain cross-site form post or image tag
  cannot create a project or a run on a server that has no token, while Agent Runner's
  console (``http://localhost:3001``, a default CORS origin) keeps posting
  ``/projects?name=..&local_path=..`` with ``fetch``.
- Bodies larger than ``LLMFLOW_MAX_BODY_BYTES`` are refused with 413 without reading them
  further.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
from collections.abc import Awaitable, Callable, Iterable
from typing import Any
from urllib.parse import parse_qs, urlsplit

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

OPEN_PATHS = frozenset({"/health"})


async def _json(
    send: Send, status: int, body: dict[str, Any], headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(data)).encode()),
                *(headers or []),
            ],
        }
    )
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
        await _json(
            send,
            401,
            {"detail": "missing or wrong bearer token: send 'Authorization: Bearer <LLMFLOW_API_TOKEN>'"},
            [(b"www-authenticate", b"Bearer")],
        )


UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
RUN_BY_GET = ("/flow/",)  # Buttermilk's GET /flow/{name}?prompt= runs a flow


def _header(scope: Scope, name: bytes) -> str | None:
    for k, v in scope.get("headers") or []:
        if k == name:
            return v.decode("latin-1")
    return None


class OriginGuard:
    """Refuses cross-site requests that could change something (see the module docstring)."""

    def __init__(self, app: ASGIApp, allowed_origins: Iterable[str], server_is_loopback: bool) -> None:
        self.app = app
        self.allowed = {o.rstrip("/").lower() for o in allowed_origins}
        self.any_origin = "*" in self.allowed
        self.server_is_loopback = server_is_loopback

    def _guarded(self, scope: Scope) -> bool:
        if scope["type"] == "websocket":
            return True
        if scope["type"] != "http":
            return False
        method = scope.get("method", "GET")
        return method in UNSAFE_METHODS or (
            method in ("GET", "HEAD") and str(scope.get("path", "")).startswith(RUN_BY_GET)
        )

    def refusal(self, scope: Scope) -> str | None:
        """Why this request is refused, or None."""
        origin = _header(scope, b"origin")
        site = (_header(scope, b"sec-fetch-site") or "").lower()
        if origin is None:
            if site in ("cross-site", "same-site"):
                return f"cross-site request refused (Sec-Fetch-Site: {site}, no Origin)"
            return None
        o = origin.strip().rstrip("/").lower()
        if self.any_origin or o in self.allowed:
            return None
        if o != "null" and self._same_origin(o, _header(scope, b"host")):
            return None
        return f"cross-site request refused: origin {origin[:100]!r} is not allowed to change anything here; if that page is yours, add it to LLMFLOW_CORS_ORIGINS"

    def _same_origin(self, origin: str, host: str | None) -> bool:
        try:
            parts = urlsplit(origin)
        except ValueError:
            return False
        if not host or parts.netloc != host.strip().lower():
            return False
        # a loopback server is only its own origin under a loopback name: a page whose name
        # was re-pointed at 127.0.0.1 (DNS rebinding) is not
        from llmflow.server.config import is_loopback

        return not self.server_is_loopback or is_loopback(parts.hostname or "")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        why = self.refusal(scope) if self._guarded(scope) else None
        if why is None:
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": 1008, "reason": why[:120]})
        else:
            await _json(send, 403, {"detail": why})


_TOKEN_IN_URL = re.compile(r"([?&](?:token|access_token|api_key)=)[^&\s\"']*", re.I)


class RedactTokens(logging.Filter):
    """Replaces ``?token=...`` in log records (Uvicorn's access and WebSocket lines) with
    ``?token=***``: the token of a browser's WebSocket must not end up in a log file."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and "=" in record.msg:
            record.msg = _TOKEN_IN_URL.sub(r"\1***", record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(
                _TOKEN_IN_URL.sub(r"\1***", a) if isinstance(a, str) and "=" in a else a for a in record.args
            )
        return True


# what the server's own layers log as errors with a traceback, although the client sent it
CLIENT_FAULTS = ("Invalid UTF-8 sequence received from client",)


class ClientFaultsAreWarnings(logging.Filter):
    """A malformed frame is the client's fault: Uvicorn logs it as an error with a traceback;
    keep the line, as a warning, without the traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if (
            record.levelno >= logging.ERROR
            and isinstance(record.msg, str)
            and record.msg.startswith(CLIENT_FAULTS)
        ):
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info, record.exc_text = None, None
        return True


def redact_tokens_in(*logger_names: str) -> None:
    """Install :class:`RedactTokens` (and :class:`ClientFaultsAreWarnings`) on these
    loggers, once."""
    for name in logger_names:
        lg = logging.getLogger(name)
        for cls in (RedactTokens, ClientFaultsAreWarnings):
            if not any(isinstance(f, cls) for f in lg.filters):
                lg.addFilter(cls())


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
                    await _json(
                        send,
                        413,
                        {
                            "detail": f"request body too large: {declared} bytes, at most {self.max_bytes} (LLMFLOW_MAX_BODY_BYTES)"
                        },
                    )
                    return
        if not any(k == b"content-length" for k, _ in scope.get("headers") or []) and scope.get("method") in (
            "POST",
            "PUT",
            "PATCH",
        ):
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
                    await _json(
                        send,
                        413,
                        {
                            "detail": f"request body too large: more than {self.max_bytes} bytes (LLMFLOW_MAX_BODY_BYTES)"
                        },
                    )
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
