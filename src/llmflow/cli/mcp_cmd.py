"""`llmflow mcp`: llmflow as an MCP server over stdio (for Claude Desktop, VS Code, ...)."""

from __future__ import annotations

from typing import Annotated

import typer

MCP_HINT = "pip install 'llmflow[mcp,server]'"


def register(app: typer.Typer) -> None:
    if any(c.name == "mcp" for c in app.registered_commands):
        return

    @app.command("mcp")
    def mcp_command(
        config_dir: Annotated[
            str | None,
            typer.Option(
                "--config-dir",
                "-C",
                metavar="DIR",
                help="Flows by name from DIR/flows (default: $LLMFLOW_CONFIG_DIR or ./conf)",
            ),
        ] = None,
        flows: Annotated[
            str | None,
            typer.Option(
                "--flows", metavar="A,B", help="More flows to offer: names or paths, comma-separated"
            ),
        ] = None,
        workers: Annotated[
            int,
            typer.Option(
                "--workers",
                metavar="N",
                min=0,
                help="Runs executed at once by this process (0: leave them to `llmflow worker`)",
            ),
        ] = 2,
        verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logs on stderr")] = False,
    ) -> int:
        """Serve llmflow's MCP tools on stdin/stdout: list and validate flows, start runs,
        follow them, answer their questions, cancel, re-run a step, read artifacts. The
        same tools are at /mcp on `llmflow serve`. See docs/observability.md."""
        import asyncio
        from pathlib import Path

        from llmflow.cli.errors import eprint
        from llmflow.cli.logs import setup_logging
        from llmflow.server.config import ServerConfig
        from llmflow.settings import Settings

        try:
            import mcp  # noqa: F401

            from llmflow.server import mcp as mcp_server
            from llmflow.server.app import open_services, start_services, stop_services
        except ImportError as exc:
            eprint(
                f"error: the MCP server needs the mcp SDK and the server extra ({exc.name} is missing); install them with: {MCP_HINT}"
            )
            return 1
        settings = Settings.from_env()
        try:
            cfg = ServerConfig.from_settings(
                settings,
                flows=[f.strip() for f in (flows or "").split(",") if f.strip()],
                workers=max(workers, 1),
                config_dir=Path(config_dir) if config_dir else None,
            )
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None
        if workers == 0:
            cfg.worker_enabled = False
        setup_logging(
            settings.state_dir, settings.log_level, verbose
        )  # a file (and stderr with -v): stdout is the protocol

        async def main() -> None:
            services = open_services(settings, cfg)
            await start_services(services)
            try:
                await mcp_server.serve_stdio(services)
            finally:
                await stop_services(services, close_runtime=True)

        try:
            asyncio.run(main())
        except KeyboardInterrupt:
            pass
        return 0
