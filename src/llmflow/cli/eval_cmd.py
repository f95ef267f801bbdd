"""`llmflow eval`, `llmflow evals list | show | compare`, `llmflow optimize`, and SuperOptiX's
`llmflow agent evaluate | optimize NAME` spellings."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from llmflow.cli.common import (
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
)
from llmflow.cli.errors import EXIT_CANCELED, EXIT_FAILED, EXIT_INVALID, EXIT_OK, bad_input, eprint

if TYPE_CHECKING:
    from llmflow.runtime.ports import RunService

Format = Annotated[str, typer.Option("--format", "-f", help="table, json, junit or markdown")]


def _write(text: str, output: str | None) -> None:
    if output:
        Path(output).write_text(text, encoding="utf-8")
        eprint(f"report written to {output}")
    else:
        sys.stdout.write(text)


async def _drive(rt: RunService, plan: Any, view: Any) -> Any:
    """Run the evaluation; the first Ctrl-C (or SIGTERM) stops it cleanly, a second quits."""
    from llmflow.cli.interrupt import stoppable
    from llmflow.evals.runner import run_eval

    box: dict[str, Any] = {}

    def hook(driver: Any, scorer: Any) -> None:
        box["driver"] = driver
        view.c = driver.counters  # the bar follows the driver's own counters

    def stop() -> None:
        if "driver" in box:
            box["driver"].interrupt("interrupted")

    return await stoppable(
        run_eval(rt, plan, view=view, driver_hook=hook),
        stop,
        "the evaluation: unfinished records are left for --resume",
    )


def run_eval_command(
    target: str | None,
    *,
    overrides: list[str] | None,
    fmt: str,
    output: str | None,
    progress_interval: float,
    config_dir: str | None,
    verbose: bool,
    **options: Any,
) -> int:
    from llmflow.batch.progress import Counters, ProgressView
    from llmflow.errors import EvalError, FlowValidationError
    from llmflow.evals.api import target_request
    from llmflow.evals.playbook import no_scenarios, superoptix_result, superoptix_table
    from llmflow.evals.report import FORMATS, render
    from llmflow.evals.runner import evaluation_view, plan_eval
    from llmflow.runtime import run_blocking

    if fmt not in FORMATS:
        raise typer.BadParameter(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    rt = _runtime(config_dir, verbose)
    try:
        t = target_request(target, overrides=list(overrides or []), **options) if target is not None else None
        req = t.request if t is not None else None
        if req is None:
            from llmflow.evals.runner import EvalRequest

            req = EvalRequest(**{k: v for k, v in options.items() if v not in (None, [], {})})
        if (
            t is not None
            and t.playbook is not None
            and not req.data
            and not ((t.playbook.get("spec") or {}).get("feature_specifications") or {}).get("scenarios")
        ):
            res = no_scenarios()
            _write(json.dumps(res, indent=2) + "\n" if fmt == "json" else superoptix_table(res), output)
            return EXIT_FAILED
        plan = plan_eval(rt, req)
    except (EvalError, FlowValidationError) as exc:
        if isinstance(exc, FlowValidationError):
            raise
        return bad_input(exc)
    b = plan.batch.batch
    eprint(
        f"evaluation {plan.id}: {'resuming' if plan.resumed else 'starting'}: flow {b.flow_name} over {plan.batch.source.label}: {b.total} jobs, metrics {', '.join(m.name for m in plan.metrics)}"
    )
    view = ProgressView(
        Counters(total=plan.batch.batch.total),
        plan.id,
        live=sys.stderr.isatty() and fmt == "table" and not output,
        interval=progress_interval,
    )
    with view:
        outcome = run_blocking(_drive(rt, plan, view))
    ev = evaluation_view(rt.store, outcome.eval_id)
    assert ev is not None
    playbook = t.playbook if t is not None else None
    if playbook is None and plan.resumed:
        from llmflow.evals.playbook import read_playbook

        src = plan.batch.loaded.source
        playbook = read_playbook(src) if src and not src.startswith("<") else None
    if playbook is not None and fmt in ("table", "json"):
        res = superoptix_result(
            ev, plan.batch.loaded.flow.data if isinstance(plan.batch.loaded.flow.data, list) else None
        )
        _write(
            json.dumps(res, indent=2, default=str) + "\n" if fmt == "json" else superoptix_table(res), output
        )
    else:
        _write(render(ev, fmt), output)
    if outcome.status != "COMPLETED":
        eprint(f"stopped: {outcome.reason}")
        eprint(f"continue with: llmflow eval --resume {outcome.eval_id}")
        return EXIT_CANCELED if outcome.reason == "interrupted" else EXIT_FAILED
    failing = outcome.gate(
        req.min_pass_rate if req.min_pass_rate is not None else plan.record.spec.get("min_pass_rate")
    )
    if failing:
        rate = (
            req.min_pass_rate
            if req.min_pass_rate is not None
            else plan.record.spec.get("min_pass_rate") or 0.0
        )
        eprint(f"pass rate under {rate * 100:.1f}% for: {', '.join(failing)}")
        return EXIT_FAILED
    return EXIT_OK


def register(app: typer.Typer) -> None:
    evals = typer.Typer(help="Inspect and compare evaluations.", no_args_is_help=True)
    app.add_typer(evals, name="evals")
    agent = typer.Typer(
        help="SuperOptiX's agent commands on playbooks (evaluate, optimize).", no_args_is_help=True
    )
    app.add_typer(agent, name="agent")

    @app.command("eval")
    def eval_cmd(
        target: Annotated[
            str | None,
            typer.Argument(
                help="Flow (file, directory, name), eval file, or SuperOptiX playbook; omit with --resume"
            ),
        ] = None,
        overrides: Annotated[list[str] | None, typer.Argument(help="Hydra overrides: key=value")] = None,
        data: Annotated[
            str | None,
            typer.Option(
                "--data",
                "-d",
                help="Dataset (.csv .jsonl .json .parquet .txt); default: the flow's data: or the playbook's scenarios",
            ),
        ] = None,
        metric: Annotated[
            list[str] | None,
            typer.Option(
                "--metric",
                "-M",
                help="exact, contains=TEXT, regex=PATTERN, json_schema=FILE, field=NAME, numeric=TOL, similarity=THRESHOLD, judge=RUBRIC, bdd, module:function, a declared name or a YAML mapping (repeatable)",
            ),
        ] = None,
        variants: Annotated[
            list[str] | None,
            typer.Option(
                "--variants",
                "-V",
                help="KEY=V1,V2: an axis of variants (model=... sets the model); repeatable",
            ),
        ] = None,
        expected: Annotated[
            str | None,
            typer.Option(
                "--expected",
                help="Column with the expected value (default: expected, expected_output, label, answer, target, reference)",
            ),
        ] = None,
        fmt: Format = "table",
        output: Annotated[
            str | None, typer.Option("--output", "-o", help="Write the report to this file")
        ] = None,
        min_pass_rate: Annotated[
            str | None,
            typer.Option("--min-pass-rate", help="Exit 1 when a variant's pass rate is under P (0.8 or 80%)"),
        ] = None,
        columns: Columns = None,
        record_id: RecordIdColumn = None,
        max_records: MaxRecords = None,
        shuffle: Shuffle = False,
        seed: Seed = None,
        max_workers: Annotated[int, typer.Option("--max-workers", "-j", help="Records running at once")] = 8,
        error_policy: Annotated[
            str,
            typer.Option(
                "--error-policy", help="continue: run every record; stop: stop after the first failed run"
            ),
        ] = "continue",
        model: Models = None,
        resume: Annotated[
            str | None,
            typer.Option("--resume", help="Continue evaluation ID: only unfinished or unscored records run"),
        ] = None,
        retry_failed: Annotated[
            bool, typer.Option("--retry-failed", help="With --resume: also re-run records whose run failed")
        ] = False,
        force: Annotated[
            bool,
            typer.Option("--force", help="Resume even if the flow changed or its driver still looks alive"),
        ] = False,
        progress_interval: ProgressInterval = 5.0,
        verbose: Verbose = False,
        config_dir: ConfigDir = None,
    ) -> int:
        """Evaluate a flow over a dataset: every record runs as a run (resumable, bounded
        concurrency), then is scored by the metrics; results are stored (llmflow evals).

        Exit codes: 0 done and every variant meets --min-pass-rate, 1 under it or stopped,
        2 invalid input, 130 interrupted (continue with --resume)."""
        from llmflow.errors import EvalError
        from llmflow.evals.api import parse_rate, parse_variants

        if retry_failed and not resume:
            raise typer.BadParameter("--retry-failed goes with --resume EVAL_ID")
        if target is None and not resume:
            raise typer.BadParameter(
                "give a FLOW (or eval file, or playbook) to evaluate, or --resume EVAL_ID"
            )
        try:
            opts = dict(
                data=data,
                metrics=list(metric or []),
                variants=parse_variants(variants),
                expected=expected,
                min_pass_rate=parse_rate(min_pass_rate),
                columns=_parse_kv(columns, "FIELD=COLUMN"),
                record_id=record_id,
                max_records=max_records,
                shuffle=shuffle or None,
                seed=seed,
                max_workers=max_workers,
                error_policy=error_policy,
                models=_models(model),
                resume=resume,
                retry_failed=retry_failed or None,
                force=force or None,
            )
        except EvalError as exc:
            return bad_input(exc)
        return run_eval_command(
            target,
            overrides=overrides,
            fmt=fmt,
            output=output,
            progress_interval=progress_interval,
            config_dir=config_dir,
            verbose=verbose,
            **opts,
        )

    @agent.command("evaluate")
    def agent_evaluate(
        name: Annotated[
            str,
            typer.Argument(
                help="Agent name (finds <name>_playbook.yaml under the project) or a playbook path"
            ),
        ],
        fmt: Format = "table",
        output: Annotated[
            str | None, typer.Option("--output", "-o", "--save-report", help="Write the report to this file")
        ] = None,
        model: Annotated[
            list[str] | None, typer.Option("--model", help="provider:model for every step")
        ] = None,
        verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
    ) -> int:
        """Run a playbook's BDD scenarios (SuperOptiX's `super agent evaluate`): PASS/FAIL
        per scenario, pass rate and quality gate; --format json prints SuperOptiX's shape."""
        from llmflow.evals.playbook import find_agent_playbook

        path = find_agent_playbook(name)
        if path is None:
            eprint(
                f"error: no playbook for agent {name!r} (looked for {name}_playbook.yaml under {Path.cwd()})"
            )
            eprint("hint: give the playbook's path")
            return EXIT_INVALID
        return run_eval_command(
            str(path),
            overrides=[],
            fmt=fmt,
            output=output,
            progress_interval=5.0,
            config_dir=None,
            verbose=verbose,
            models=_models(model),
        )

    @evals.command("list")
    def evals_list(
        flow: Annotated[str | None, typer.Option("--flow", help="Only this flow's evaluations")] = None,
        limit: Annotated[int, typer.Option("--limit", "-n")] = 20,
        offset: Annotated[int, typer.Option("--offset")] = 0,
        as_json: Json = False,
    ) -> int:
        """List evaluations, newest first, with their pass rate."""
        from llmflow.evals.summary import fmt_rate

        rt = _runtime()
        rows = []
        for e in rt.store.list_evals(flow=flow, limit=limit, offset=offset):
            ov = (e.summary or {}).get("overall") or {}
            rows.append(
                {
                    "id": e.id,
                    "flow": e.flow_name,
                    "status": e.status,
                    "created_at": e.created_at,
                    "total": ov.get("total"),
                    "passed": ov.get("passed"),
                    "pass_rate": ov.get("pass_rate"),
                    "score": ov.get("score"),
                    "variants": len((e.summary or {}).get("variants") or []),
                }
            )
        if as_json:
            print(json.dumps(rows, indent=2, default=str))
            return EXIT_OK
        if not rows:
            print("no evaluations yet; run one with `llmflow eval FLOW --data FILE --metric exact`")
            return EXIT_OK
        print(
            f"{'id':<30} {'flow':<20} {'status':<10} {'passed':>9} {'rate':>7} {'score':>6} {'variants':>8} {'created':<19}"
        )
        for r in rows:
            passed = f"{r['passed']}/{r['total']}" if r["total"] is not None else "-"
            rate = fmt_rate(r["pass_rate"]) if r["pass_rate"] is not None else "-"
            score = f"{r['score']:.3f}" if r["score"] is not None else "-"
            print(
                f"{r['id']:<30} {r['flow'][:20]:<20} {r['status']:<10} {passed:>9} {rate:>7} {score:>6} {r['variants']:>8} {_fmt_ts(r['created_at']):<19}"
            )
        return EXIT_OK

    @evals.command("show")
    def evals_show(
        eval_id: Annotated[str, typer.Argument(help="Evaluation id")],
        as_json: Json = False,
        fmt: Format = "table",
        output: Annotated[
            str | None, typer.Option("--output", "-o", help="Write the report to this file")
        ] = None,
    ) -> int:
        """Show an evaluation: per-variant table, failed records with their runs (--json: everything)."""
        from llmflow.evals.report import FORMATS, render
        from llmflow.evals.runner import evaluation_view

        if fmt not in FORMATS:
            raise typer.BadParameter(f"--format must be one of {', '.join(FORMATS)}")
        rt = _runtime()
        v = evaluation_view(rt.store, eval_id)
        if v is None:
            eprint(f"error: no evaluation {eval_id!r}")
            eprint("hint: list them with `llmflow evals list`")
            return EXIT_INVALID
        _write(render(v, "json" if as_json else fmt), output)
        return EXIT_OK

    @evals.command("compare")
    def evals_compare(
        a: Annotated[str, typer.Argument(help="The baseline evaluation id")],
        b: Annotated[str, typer.Argument(help="The evaluation to compare with it")],
        as_json: Json = False,
        fail_on_regression: Annotated[
            bool, typer.Option("--fail-on-regression", help="Exit 1 when any record regressed")
        ] = False,
    ) -> int:
        """Per-metric deltas (B - A) and the records that regressed (passed in A, fail in B,
        or scored lower)."""
        from llmflow.evals.report import comparison_table
        from llmflow.evals.runner import evaluation_view
        from llmflow.evals.summary import compare

        rt = _runtime()
        va, vb = evaluation_view(rt.store, a), evaluation_view(rt.store, b)
        for eid, v in ((a, va), (b, vb)):
            if v is None:
                eprint(f"error: no evaluation {eid!r}")
                eprint("hint: list them with `llmflow evals list`")
                return EXIT_INVALID
        c = compare(va, vb)  # type: ignore[arg-type]
        sys.stdout.write(json.dumps(c, indent=2, default=str) + "\n" if as_json else comparison_table(c))
        return EXIT_FAILED if fail_on_regression and c["regressed"] else EXIT_OK

    from llmflow.cli import optimize_cmd

    optimize_cmd.register(app, agent)
