"""Serve the web console: ``mount_console(app)``.

The console is static files (``assets/``: HTML, CSS, ES modules; no build step) that talk to
the public API only. They are served by a small ASGI middleware placed outermost:

- ``GET /`` with ``Accept: text/html`` (a browser) -> the console page. Other clients get
  whatever the app answers (404 JSON: ``/`` is not an API route).
- ``GET /ui/<build>/<file>`` -> an asset. ``<build>`` is a hash of every asset, so the page
  references URLs that change whenever any file does: those are cached for a year
  (``immutable``); an old ``<build>`` gets the current file, uncached. The page itself is
  ``no-cache`` (revalidated with its ETag).
- everything else passes through untouched. Client routes are hash routes (``/#/runs/ID``),
  so no server path is shadowed: ``/runs`` and ``/projects`` stay Agent Runner's API,
  ``/flows`` Buttermilk's.

The assets are public (they hold no data), so they are answered before the token check:
the page must load to ask for the token. Every data request goes through the app, and so
through its authentication.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ASSETS = Path(__file__).parent / "assets"
PREFIX = "/ui/"
BUILD_MARK = "__BUILD__"

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".json": "application/json",
}

# The page loads only its own files; images from the API come in as blob: URLs.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
COMMON = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer")]
IMMUTABLE = b"public, max-age=31536000, immutable"
REVALIDATE = b"no-cache"


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str
    etag: str


def load_assets(root: Path = ASSETS) -> tuple[str, dict[str, Asset]]:
    """(build id, relative path -> asset). The page's ``__BUILD__`` marks become the id."""
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in TYPES)
    digest = hashlib.sha256()
    raw: dict[str, bytes] = {}
    for p in files:
        rel = p.relative_to(root).as_posix()
        raw[rel] = p.read_bytes()
        digest.update(rel.encode() + b"\0" + raw[rel] + b"\0")
    build = digest.hexdigest()[:12]
    assets: dict[str, Asset] = {}
    for rel, body in raw.items():
        if rel == "index.html":
            body = body.replace(BUILD_MARK.encode(), build.encode())
        etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
        assets[rel] = Asset(body, TYPES[Path(rel).suffix], etag)
    return build, assets


def _header(scope: Scope, name: bytes) -> str:
    for k, v in scope.get("headers") or []:
        if k == name:
            return v.decode("latin-1")
    return ""


def wants_html(scope: Scope) -> bool:
    return "text/html" in _header(scope, b"accept").lower()


class ConsoleAssets:
    """ASGI middleware answering the console's own GETs; the rest goes to ``app``."""

    def __init__(self, app: ASGIApp, build: str, assets: dict[str, Asset]) -> None:
        self.app = app
        self.build = build
        self.assets = assets

    def lookup(self, scope: Scope) -> tuple[Asset, bytes, list[tuple[bytes, bytes]]] | None:
        path: str = scope.get("path") or ""
        if path in ("/", "/ui", PREFIX):
            if not wants_html(scope):
                return None
            page = self.assets.get("index.html")
            if page is None:
                return None
            extra = [
                (b"content-security-policy", CSP.encode()),
                (b"x-frame-options", b"DENY"),
                (b"vary", b"Accept"),
            ]
            return page, REVALIDATE, extra
        if not path.startswith(PREFIX):
            return None
        build, _, rel = path[len(PREFIX) :].partition("/")
        asset = self.assets.get(rel) if rel != "index.html" else None
        if asset is None:
            return None
        return asset, IMMUTABLE if build == self.build else REVALIDATE, []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        found = self.lookup(scope)
        if found is None:
            if (scope.get("path") or "").startswith(PREFIX):
                await _plain(send, 404, b"no such console file")
                return
            await self.app(scope, receive, send)
            return
        asset, cache, extra = found
        headers = [
            (b"content-type", asset.content_type.encode()),
            (b"cache-control", cache),
            (b"etag", asset.etag.encode()),
            *COMMON,
            *extra,
        ]
        if asset.etag in _header(scope, b"if-none-match"):
            await send({"type": "http.response.start", "status": 304, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return
        headers.append((b"content-length", str(len(asset.body)).encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else asset.body})


async def _plain(send: Send, status: int, text: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(text)).encode()),
                *COMMON,
            ],
        }
    )
    await send({"type": "http.response.body", "body": text})


def mount_console(app: Any, *routers: Any) -> None:
    """Serve the console from ``app`` (a FastAPI app): include ``routers`` (API routes the
    console uses, e.g. the all-runs event stream), then add the asset middleware. Call it
    last in the app factory, so the middleware is outermost."""
    for r in routers:
        app.include_router(r)
    build, assets = load_assets()
    app.add_middleware(ConsoleAssets, build=build, assets=assets)
    app.state.console_build = build
