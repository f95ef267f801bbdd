"""The app factory: ``create_app(settings_or_runtime, config)`` -> a FastAPI app serving
the native API (``/api/v1``), Agent Runner's and Buttermilk's APIs, SSE and WebSockets.

Nothing happens at import. The runtime (store, providers), the flow catalog, the event hub,
the worker and the session manager open in the app's lifespan and close with it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from llmflow.runtime import Runtime
from llmflow.server.config import ServerConfig
from llmflow.settings import Settings

log = logging.getLogger("llmflow.server")

DESCRIPTION = """\
Run llmflow flows as a service.

* **native** - `/api/v1`: flows, runs, events (JSON, SSE, WebSocket), control, artifacts,
  projects, stats. Run ids are opaque strings; event cursors are per-run sequence numbers.
* **agent-runner** - Agent Runner's routes and JSON shapes (`/projects`, `/runs`, `/worker`).
* **buttermilk** - Buttermilk's routes (`/flow/{name}`, `/api/flows`, `/api/session`) and
  WebSocket (`/ws/{session_id}`).

With `LLMFLOW_API_TOKEN` set, every route but `/health` needs `Authorization: Bearer <token>`.
Requests from other web origins may change nothing unless the origin is one of the CORS
origins (see docs/security.md).
"""


def create_app(target: Settings | Runtime | None = None, config: ServerConfig | None = None) -> FastAPI:
    """A FastAPI app for ``target``: a Runtime (the caller keeps owning it), or Settings from
    which the lifespan builds (and closes) one; None reads the environment now."""
    from llmflow import __version__
    from llmflow.server import agent_runner, buttermilk, errors, native, ws
    from llmflow.server.security import BodyLimit, OriginGuard, TokenAuth, redact_tokens_in

    settings = target.settings if isinstance(target, Runtime) else (target or Settings.from_env())
    config = config or ServerConfig.from_settings(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        redact_tokens_in("uvicorn.access", "uvicorn.error")  # after Uvicorn configured its logging
        services = open_services(target if isinstance(target, Runtime) else settings, config)
        app.state.services = services
        from llmflow.server import metrics

        metrics.attach(app, services)
        from llmflow.server import mcp

        await start_services(services)
        try:
            async with mcp.running(app):  # /mcp sessions (when the mcp extra is installed)
                yield
        finally:
            metrics.detach(app)
            await stop_services(services, close_runtime=not isinstance(target, Runtime))

    from llmflow.server.openapi_ids import operation_id

    app = FastAPI(
        title="llmflow",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        default_response_class=errors.SafeJSONResponse,
        generate_unique_id_function=operation_id,
        docs_url=None,
        redoc_url=None,
    )
    errors.install(app)
    from llmflow.server import docs

    docs.install(app)  # Swagger UI and ReDoc from the package, no CDN

    @app.get("/health", tags=["service"], summary='Liveness: exactly {"status": "ok"} (no token needed)')
    async def health() -> dict[str, str]:
        # open to anyone: it says nothing about runs, paths or processes (details: /api/v1/health)
        return {"status": "ok"}

    @app.get("/api/v1/health", tags=["service"], summary="Health in detail: version, store, worker, uptime")
    async def health_details() -> dict[str, Any]:
        services = getattr(app.state, "services", None)
        if services is None:
            return {"status": "starting", "version": __version__}
        return services.health()

    app.include_router(native.router)
    from llmflow.server import batches, threads

    app.include_router(batches.router)
    app.include_router(threads.router)
    from llmflow.server import evals as evals_routes

    app.include_router(evals_routes.router)
    app.include_router(agent_runner.router)
    app.include_router(buttermilk.router)
    app.include_router(ws.router)
    try:
        from llmflow.server import mcp

        mcp.install(app, config)  # /mcp: llmflow as an MCP server (docs/observability.md)
    except ImportError:
        log.debug("no /mcp: the mcp package is not installed (pip install 'llmflow[mcp]')")
    # outermost last: CORS answers preflights, then cross-site refusal, auth, the body limit
    app.add_middleware(BodyLimit, max_bytes=config.max_body_bytes)
    app.add_middleware(agent_runner.IntegerRunIds)  # /api/v1/runs/<Agent Runner's integer id>
    if config.api_token:
        app.add_middleware(TokenAuth, token=config.api_token)
    from llmflow.server.config import is_loopback

    app.add_middleware(
        OriginGuard, allowed_origins=config.cors_origins, server_is_loopback=is_loopback(config.host)
    )
    redact_tokens_in("uvicorn.access", "uvicorn.error")
    if config.cors_origins:
        star = config.cors_origins == ["*"]
        app.add_middleware(
            CORSMiddleware,
            allow_origins=config.cors_origins,
            allow_credentials=not star,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["*"],
        )
    app.state.config = config
    from llmflow.server import metrics

    metrics.install(app, public=settings.metrics_public)  # outside the token check: LLMFLOW_METRICS_PUBLIC=1
    from llmflow.server import live
    from llmflow.web.mount import mount_console

    mount_console(app, live.router)  # the web console at / (outermost: its assets need no token)
    return app


def open_services(target: Settings | Runtime, config: ServerConfig) -> Any:
    """Build the runtime (unless given), catalog, hub, worker and session manager."""
    from llmflow.runtime import Worker
    from llmflow.runtime.follow import EventHub
    from llmflow.server.catalog import FlowCatalog
    from llmflow.server.services import Services
    from llmflow.server.sessions import SessionManager

    if isinstance(target, Runtime):
        runtime = target
    else:
        from llmflow.runtime import build_runtime

        runtime = build_runtime(target)
    try:
        catalog = FlowCatalog(
            config.resolved_config_dir(runtime.settings), config.flows, only=config.flows_only
        )
        runtime.trust = runtime.trust.with_config_dirs(*catalog.source_dirs())  # read-only to runs
        # sub-flows are found by name where the server serves flows from (--config-dir wins)
        runtime.settings.config_dir = catalog.config_dir
        hub = EventHub()
        worker = Worker(
            runtime,
            concurrency=max(1, config.workers),
            check_interval=config.check_interval,
            subscribers=[hub.publish],
        )
        services = Services(runtime, config, catalog, hub, worker)
        services.sessions = SessionManager(services)
    except BaseException:
        if not isinstance(target, Runtime):
            runtime.close()
        raise
    return services


async def start_services(services: Any) -> None:
    cfg = services.config
    services.sessions.start()
    if cfg.worker_enabled:
        services.worker.start()
    log.info(
        "serving %d flows from %s; worker %s; store %s",
        len(services.catalog.names()),
        cfg.resolved_config_dir(services.runtime.settings),
        f"on ({cfg.workers} at once, every {cfg.check_interval:g}s)" if cfg.worker_enabled else "off",
        services.store.url,
    )


async def stop_services(services: Any, *, close_runtime: bool) -> None:
    """Stop the worker first: its runs release their leases and stay RUNNING in the log, so
    the next server (or any worker) recovers them."""
    if getattr(services, "background_batches", None) is not None:  # batches resumed over the API
        await services.background_batches.stop()
    await services.worker.stop()
    await services.sessions.close()
    if close_runtime:
        services.runtime.close()
