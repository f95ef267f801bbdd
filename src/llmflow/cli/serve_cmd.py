"""`llmflow serve`: the REST + SSE + WebSocket service (FastAPI on Uvicorn)."""

from __future__ import annotations

from typing import Annotated

import typer

SERVER_HINT = "pip install 'llmflow[server]'"


def register(app: typer.Typer) -> None:
    if any(c.name == "serve" for c in app.registered_commands):
        return

    @app.command("serve")
    def serve(
        host: Annotated[
            str,
            typer.Option(
                "--host", metavar="ADDRESS", help="Address to bind (non-loopback needs LLMFLOW_API_TOKEN)"
            ),
        ] = "127.0.0.1",
        port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port")] = 8000,
        flows: Annotated[
            str | None,
            typer.Option(
                "--flows",
                metavar="A,B",
                help="Serve only these flows: names (config dir or built-in) or paths, comma-separated (default: every flow of the config dir and the built-in ones)",
            ),
        ] = None,
        workers: Annotated[
            int | None,
            typer.Option(
                "--workers",
                metavar="N",
                min=0,
                help="Runs the in-process worker executes at once (0: no in-process worker)",
            ),
        ] = None,
        allow_shell: Annotated[
            bool,
            typer.Option(
                "--allow-shell",
                help="Let flow documents posted over the API run shell, python and sub-flow steps",
            ),
        ] = False,
        config_dir: Annotated[
            str | None,
            typer.Option(
                "--config-dir",
                "-C",
                metavar="DIR",
                help="Flows by name from DIR/flows (default: $LLMFLOW_CONFIG_DIR or ./conf)",
            ),
        ] = None,
        log_level: Annotated[
            str, typer.Option("--log-level", metavar="LEVEL", help="Uvicorn log level")
        ] = "info",
    ) -> int:
        """Serve flows over HTTP: the native API (/api/v1), Agent Runner's and Buttermilk's
        APIs, SSE and WebSockets; OpenAPI docs at /docs. Runs an in-process queue worker
        unless DISABLE_WORKER=1."""
        from pathlib import Path

        from llmflow.cli.errors import eprint
        from llmflow.cli.logs import setup_logging
        from llmflow.server.config import ServerConfig
        from llmflow.settings import Settings

        try:
            import uvicorn

            from llmflow.server.app import create_app
        except ImportError as exc:
            eprint(
                f"error: the server needs FastAPI and Uvicorn ({exc.name} is missing); install them with: {SERVER_HINT}"
            )
            return 1
        settings = Settings.from_env()
        try:
            cfg = ServerConfig.from_settings(
                settings,
                host=host,
                port=port,
                flows=[f.strip() for f in (flows or "").split(",") if f.strip()],
                flows_only=bool(flows and flows.strip()),
                workers=workers,
                allow_shell=allow_shell or None,
                config_dir=Path(config_dir) if config_dir else None,
            )
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None
        problem = cfg.security_problem()
        if problem:
            eprint(f"error: {problem}")
            return 2
        # fail fast on a bad --flows entry, before binding the port
        from llmflow.server.catalog import FlowCatalog

        FlowCatalog(cfg.resolved_config_dir(settings), cfg.flows, only=cfg.flows_only)
        # and on a store that cannot be opened (a wrong URL, a missing schema): its error, not
        # the traceback Uvicorn prints when the application's startup fails
        from llmflow.runtime.plugins import open_store

        open_store(settings.database_url, settings.home).close()
        setup_logging(settings.state_dir, settings.log_level)
        app = create_app(settings, cfg)
        from llmflow.store.factory import _redact

        store = (
            _redact(settings.database_url)
            if settings.database_url
            else str(settings.state_dir / "llmflow.db")
        )
        eprint(f"llmflow serving on http://{host}:{port} (docs at /docs); store {store}")
        uvicorn.run(
            app,
            host=host,
            port=port,
            ws="websockets-sansio",
            log_level=log_level,
            timeout_graceful_shutdown=3,
            ws_max_size=cfg.max_frame_bytes,
        )
        return 0
