"""`llmflow batch` (run a flow over a dataset) and `llmflow batches list | show`."""

from __future__ import annotations

import json
import sys
import time
from typing import Annotated, Any

import typer

from llmflow.cli.common import (
    BatchIdArg,
    Columns,
    ConfigDir,
    Json,
    MaxRecords,
    Models,
    ProgressInterval,
    RecordIdColumn,
    Seed,
    Shuffle,
    Verbose,
    _fmt_ts,
    _models,
    _parse_kv,
    _runtime,
    resolve_batch_id,
)
from llmflow.cli.errors import bad_input


def _print_start(plan: Any) -> None:
    b = plan.batch
    what = "resuming" if plan.resumed else "starting"
    v = len(plan.variants)
    shape = f"{b.total} jobs" + (
        f" ({b.total // v} records x {v} variants)" if v > 1 and b.total is not None else ""
    )
    print(f"batch {b.id}: {what}: flow {b.flow_name} over {plan.source.label}: {shape}", file=sys.stderr)
    print(f"results: {plan.output}", file=sys.stderr)


def _print_result(r: Any, as_json: bool) -> None:
    if as_json:
        print(json.dumps(r.to_dict(), indent=2, default=str))
        return
    total = "?" if r.total is None else r.total
    print(
        f"batch {r.batch_id}: {r.status}: {r.completed + r.failed}/{total} jobs done ({r.completed} completed, {r.failed} failed) in {r.elapsed:.1f}s; tokens {r.tokens}, cost ${r.cost:.4f}"
    )
    print(f"results: {r.output}")
    if r.status != "COMPLETED":
        print(f"stopped: {r.reason}", file=sys.stderr)
        print(f"continue with: llmflow batch --resume {r.batch_id}", file=sys.stderr)
    elif r.failed:
        print(
            f"re-run the failed jobs with: llmflow batch --resume {r.batch_id} --retry-failed",
            file=sys.stderr,
        )


async def _drive(driver: Any) -> Any:
    from llmflow.cli.interrupt import stoppable

    return await stoppable(
        driver.run(),
        lambda: driver.interrupt("interrupted"),
        "the batch: in-flight jobs are left for --resume",
    )


def register(app: typer.Typer) -> None:
    batches = typer.Typer(help="Inspect batches (runs of a flow over a dataset).", no_args_is_help=True)
    app.add_typer(batches, name="batches")

    @app.command("batch")
    def batch(
        flow: Annotated[
            str | None,
            typer.Argument(metavar="FLOW", help="Flow file, directory or name (omit with --resume)"),
        ] = None,
        overrides: Annotated[
            list[str] | None,
            typer.Argument(metavar="OVERRIDES", help="Hydra overrides: key=value, group=option"),
        ] = None,
        data: Annotated[
            str | None,
            typer.Option(
                "--data",
                "-d",
                metavar="FILE",
                help="Dataset: .csv .tsv .jsonl .json .parquet .txt (default: the flow's data:)",
            ),
        ] = None,
        data_format: Annotated[
            str | None,
            typer.Option("--format", metavar="FORMAT", help="Dataset format when the extension does not say"),
        ] = None,
        columns: Columns = None,
        record_id: RecordIdColumn = None,
        max_records: MaxRecords = None,
        shuffle: Shuffle = False,
        seed: Seed = None,
        no_variants: Annotated[
            bool,
            typer.Option(
                "--no-variants",
                help="Keep list parameters as lists (one job per record) instead of one job per value",
            ),
        ] = False,
        max_workers: Annotated[
            int, typer.Option("--max-workers", "-j", metavar="N", help="Jobs running at once")
        ] = 16,
        output: Annotated[
            str | None,
            typer.Option(
                "--output",
                "-o",
                metavar="FILE",
                help="Result file: .jsonl, .csv or .parquet (default .llmflow/batches/ID/results.jsonl)",
            ),
        ] = None,
        error_policy: Annotated[
            str,
            typer.Option(
                "--error-policy",
                metavar="[continue|stop]",
                help="continue: run every job; stop: stop after the first failed job",
            ),
        ] = "continue",
        resume: Annotated[
            str | None,
            typer.Option(
                "--resume",
                metavar="BATCH",
                help="Continue this batch (an id, a unique prefix, or 'last'): only jobs that did not finish run",
            ),
        ] = None,
        retry_failed: Annotated[
            bool, typer.Option("--retry-failed", help="With --resume: also re-run failed and canceled jobs")
        ] = False,
        model: Models = None,
        engine: Annotated[
            str, typer.Option("--engine", metavar="[local|ray]", help="local (one process) or ray")
        ] = "local",
        ray_address: Annotated[
            str | None,
            typer.Option(
                "--ray-address",
                metavar="ADDRESS",
                help="Ray cluster to join: HOST:PORT, ray://HOST:PORT, or auto (the one `ray start` runs here); default: a private local instance",
            ),
        ] = None,
        force: Annotated[
            bool,
            typer.Option(
                "--force", help="Resume even if the batch's driver still looks alive or the flow changed"
            ),
        ] = False,
        progress_interval: ProgressInterval = 5.0,
        as_json: Json = False,
        verbose: Verbose = False,
        config_dir: ConfigDir = None,
    ) -> int:
        """Run a flow over every record of a dataset: one run per record (x variant),
        resumable, with a result file.

        Exit codes: 0 every job completed, 1 some failed or the batch stopped, 2 invalid
        input, 130 interrupted (continue with --resume)."""
        from llmflow.batch.plan import BatchRequest
        from llmflow.batch.progress import ProgressView
        from llmflow.batch.start import prepare_batch
        from llmflow.errors import BatchError
        from llmflow.runtime import run_blocking

        if retry_failed and not resume:
            raise typer.BadParameter("--retry-failed goes with --resume BATCH_ID")
        if engine not in ("local", "ray"):
            raise typer.BadParameter(f"--engine must be local or ray, not {engine!r}")
        rt = _runtime(config_dir, verbose)
        if resume is not None:
            resume = resolve_batch_id(rt, resume)
        req = BatchRequest(
            flow=flow,
            data=data,
            data_format=data_format,
            columns=_parse_kv(columns, "FIELD=COLUMN"),
            record_id=record_id,
            max_records=max_records,
            shuffle=shuffle,
            seed=seed,
            no_variants=no_variants,
            max_workers=max_workers,
            output=output,
            error_policy=error_policy,
            resume=resume,
            retry_failed=retry_failed,
            overrides=list(overrides or []),
            models=_models(model),
            engine=engine,
            ray_address=ray_address,
            force=force,
        )
        try:
            driver = prepare_batch(rt, req)
        except BatchError as exc:  # bad input: nothing ran
            return bad_input(exc)
        _print_start(driver.plan)
        driver.view = ProgressView(
            driver.counters,
            driver.plan.id,
            live=sys.stderr.isatty() and not as_json,
            interval=progress_interval,
        )
        with driver.view:
            result = run_blocking(_drive(driver))
        _print_result(result, as_json)
        if result.status != "COMPLETED":
            return 130 if result.reason == "interrupted" else 1
        return 1 if result.failed else 0

    @batches.command("list")
    def batches_list(
        limit: Annotated[
            int, typer.Option("--limit", "-n", metavar="N", min=1, help="At most this many")
        ] = 20,
        offset: Annotated[int, typer.Option("--offset", metavar="N", min=0, help="Skip the newest N")] = 0,
        as_json: Json = False,
    ) -> int:
        """List batches, newest first, with their progress."""
        from llmflow.batch.summary import batch_view

        rt = _runtime(read_only=True)
        now = time.time()
        rows = [batch_view(rt.store, b, now) for b in rt.store.list_batches(limit=limit, offset=offset)]
        if as_json:
            from llmflow.isotime import iso_batch

            print(json.dumps([iso_batch(r) for r in rows], indent=2, default=str))
            return 0
        if not rows:
            print("no batches yet; start one with `llmflow batch FLOW --data FILE`")
            return 0
        print(
            f"{'id':<30} {'flow':<16} {'status':<12} {'done':>7} {'failed':>7} {'running':>7} {'remaining':>9} {'created':<19}"
        )
        for r in rows:
            total = r["remaining"] if r["remaining"] is not None else "?"
            print(
                f"{r['id']:<30} {r['flow'][:16]:<16} {r['status']:<12} {r['done']:>7} {r['failed']:>7} {r['running']:>7} {total:>9} {_fmt_ts(r['created_at']):<19}"
            )
        return 0

    @batches.command("show")
    def batches_show(batch_id: BatchIdArg, as_json: Json = False) -> int:
        """Show a batch: progress, tokens, cost, rate, ETA, data, output and options."""
        from llmflow.batch.progress import fmt_duration
        from llmflow.batch.summary import batch_view
        from llmflow.errors import BatchError

        rt = _runtime(read_only=True)
        b = rt.store.get_batch(resolve_batch_id(rt, batch_id))
        if b is None:
            return bad_input(
                BatchError(f"no batch {batch_id!r}", hint="list batches with `llmflow batches list`")
            )
        v = batch_view(rt.store, b, time.time())
        if as_json:
            from llmflow.isotime import iso_batch

            print(json.dumps(iso_batch(v), indent=2, default=str))
            return 0
        print(f"batch {v['id']}  flow {v['flow']}  status {v['status']}")
        print(
            f"jobs: {v['done']}/{v['total'] if v['total'] is not None else '?'} done ({v['completed']} completed, {v['failed']} failed), {v['running']} running, {v['remaining']} remaining"
        )
        rate = f"{v['rate']:.2f} jobs/s" if v["rate"] is not None else "-"
        print(
            f"rate {rate}  ETA {fmt_duration(v['eta_seconds'])}  tokens {v['tokens']['total']} ({v['tokens']['input']} in / {v['tokens']['output']} out)  cost ${v['cost']:.4f}"
        )
        print(
            f"created {_fmt_ts(v['created_at'])}  updated {_fmt_ts(v['updated_at'])}  ended {_fmt_ts(v['ended_at'])}"
        )
        print(f"data: {v['data']}")
        print(f"output: {v['output']}")
        if v["variants"] and v["variants"] != [""]:
            print(f"variants: {', '.join(v['variants'])}")
        if v["options"]:
            print(
                "options: "
                + ", ".join(
                    f"{k}={json.dumps(x) if not isinstance(x, str) else x}" for k, x in v["options"].items()
                )
            )
        if v["reason"]:
            print(f"stopped: {v['reason']}")
        if v["status"] in ("STOPPED", "INTERRUPTED") or (v["status"] == "COMPLETED" and v["failed"]):
            extra = " --retry-failed" if v["status"] == "COMPLETED" else ""
            print(f"continue with: llmflow batch --resume {v['id']}{extra}")
        return 0
