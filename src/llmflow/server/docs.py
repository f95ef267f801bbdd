"""Swagger UI (``/docs``) and ReDoc (``/redoc``) served from the package: their scripts and
styles come from the ``fastapi-offline`` distribution's bundled swagger-ui-dist and ReDoc
standalone files (a well-kept package that vendors them, rather than copies of our own),
so the API docs work offline and load nothing from a CDN."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

STATIC_URL = "/docs-assets"
# the pages may load nothing from elsewhere (ReDoc's footer would fetch a logo from a CDN);
# inline scripts and styles are the pages' own initialisation (FastAPI's templates)
CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "font-src 'self' data:; worker-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
HIDE_BRANDING = (
    b"<style>a[href*='redocly.com'], a[href*='redoc.ly'] { display: none !important; }</style></head>"
)
REDOC_LOGO = b"https://cdn.redoc.ly/redoc/logo-mini.svg"  # ReDoc's footer image: pointed at our favicon


def _offline(page: HTMLResponse, extra_head: bytes = b"") -> HTMLResponse:
    body = bytes(page.body).replace(b"</head>", extra_head, 1) if extra_head else bytes(page.body)
    return HTMLResponse(body, headers={"content-security-policy": CSP})


def static_dir() -> Path:
    import fastapi_offline

    return Path(fastapi_offline.__file__).parent / "static"


def install(app: FastAPI, docs_url: str = "/docs", redoc_url: str = "/redoc") -> None:
    """The app must be built with ``docs_url=None, redoc_url=None``."""
    redoc_js: list[bytes] = []

    @app.get(f"{STATIC_URL}/redoc.standalone.js", include_in_schema=False)
    async def redoc_script() -> Response:
        if not redoc_js:
            redoc_js.append(
                (static_dir() / "redoc.standalone.js")
                .read_bytes()
                .replace(REDOC_LOGO, f"{STATIC_URL}/favicon.png".encode())
            )
        return Response(
            redoc_js[0], media_type="text/javascript", headers={"cache-control": "public, max-age=86400"}
        )

    app.mount(STATIC_URL, StaticFiles(directory=static_dir()), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"
    oauth_redirect = app.swagger_ui_oauth2_redirect_url or "/docs/oauth2-redirect"

    @app.get(docs_url, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return _offline(
            get_swagger_ui_html(
                openapi_url=f"{root}{openapi_url}",
                title=f"{app.title} - API docs",
                oauth2_redirect_url=f"{root}{oauth_redirect}",
                swagger_js_url=f"{root}{STATIC_URL}/swagger-ui-bundle.js",
                swagger_css_url=f"{root}{STATIC_URL}/swagger-ui.css",
                swagger_favicon_url=f"{root}{STATIC_URL}/favicon.png",
                swagger_ui_parameters=app.swagger_ui_parameters,
            )
        )

    @app.get(oauth_redirect, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get(redoc_url, include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return _offline(
            get_redoc_html(
                openapi_url=f"{root}{openapi_url}",
                title=f"{app.title} - API reference",
                redoc_js_url=f"{root}{STATIC_URL}/redoc.standalone.js",
                redoc_favicon_url=f"{root}{STATIC_URL}/favicon.png",
                with_google_fonts=False,
            ),
            HIDE_BRANDING,
        )
