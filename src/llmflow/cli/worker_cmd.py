"""`llmflow worker`: execute queued runs from the store, alongside any other workers."""

from __future__ import annotations

from typing import Annotated, Any

import typer


def register(app: typer.Typer) -> None:
    if any(c.name == "worker" for c in app.registered_commands):
        return

    @app.command("worker")
    def worker(
        concurrency: Annotated[
            int, typer.Option("--concurrency", "-c", metavar="N", min=1, help="Runs executed at once")
        ] = 4,
        check_interval: Annotated[
            float | None,
            typer.Option(
                "--check-interval",
                metavar="SECONDS",
                min=0.01,
                help="Seconds between queue polls (default $WORKER_CHECK_INTERVAL or 1)",
            ),
        ] = None,
        once: Annotated[bool, typer.Option("--once", help="Execute what is queued now, then exit")] = False,
        verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logs on stderr")] = False,
    ) -> int:
        """Claim QUEUED runs (and runs whose worker died) and execute them. Several workers
        may share one store (Postgres: any number of machines); each run is executed by one.
        SIGTERM / Ctrl-C stop it: its runs are released and another worker continues them."""
        import asyncio
        import signal
        import sys

        from llmflow.cli.logs import setup_logging
        from llmflow.runtime import Worker, build_runtime

        rt = build_runtime()
        setup_logging(rt.settings.state_dir, rt.settings.log_level, verbose)
        interval = check_interval or rt.settings.worker_check_interval

        def report(run_id: str, what: str) -> None:
            print(f"worker {rt.owner}: run {run_id} {what}", file=sys.stderr, flush=True)

        w = Worker(rt, concurrency=concurrency, check_interval=interval, on_run=report)

        async def main() -> None:
            loop = asyncio.get_running_loop()
            stop = asyncio.Event()
            for sig in (signal.SIGTERM, signal.SIGINT):
                try:
                    loop.add_signal_handler(sig, stop.set)
                except (NotImplementedError, RuntimeError):
                    pass
            work: asyncio.Task[Any]
            if once:
                work = asyncio.create_task(w.process_available())
            else:
                work = w.start()
            waiter = asyncio.create_task(stop.wait())
            await asyncio.wait({work, waiter}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            await w.stop()
            if work.done() and not work.cancelled() and work.exception() is not None:
                raise work.exception()  # type: ignore[misc]

        print(
            f"worker {rt.owner}: polling {rt.store.url if not rt.settings.database_url else 'the database'} every {interval:g}s, {concurrency} at once",
            file=sys.stderr,
            flush=True,
        )
        try:
            asyncio.run(main())
        finally:
            rt.close()
        return 0
