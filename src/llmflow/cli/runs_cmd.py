"""`llmflow runs ...` (list, show, events, cancel, pause, resume, rerun) and `llmflow stats`.
`llmflow run` lives in :mod:`llmflow.cli.run_cmd`."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

# re-exported: other command modules (and plugins) import these from here
from llmflow.cli.common import (  # noqa: F401
    STATUS_METAVAR,
    Json,
    RunIdArg,
    Status,
    _dur,
    _exit_for,
    _fmt_ts,
    _models,
    _parse_kv,
    _runtime,
    create_run_here,
    located,
    resolve_run_id,
)
from llmflow.engine.states import RunStatus

if TYPE_CHECKING:
    from llmflow.runtime.ports import RunService


def _no_match(rt: RunService, filters: dict[str, Any]) -> str:
    """Why a filtered listing is empty, and what there is instead."""
    given = " ".join(f"--{k} {v}" for k, v in filters.items() if v is not None)
    total = rt.store.count_runs()
    msg = f"no runs match {given} (of {total} in {rt.settings.store_label()})"
    if filters.get("flow") is not None and total:
        from llmflow.model.diagnostics import did_you_mean

        flows = sorted({r.flow_name for r in rt.store.list_runs(limit=500)})
        hint = did_you_mean(str(filters["flow"]), flows)
        msg += "; " + (hint or f"flows with runs: {', '.join(flows[:10])}")
    return msg


def register(app: typer.Typer) -> None:
    from llmflow.cli import run_cmd

    run_cmd.register(app)
    runs = typer.Typer(help="Inspect and control runs.", no_args_is_help=True)
    app.add_typer(runs, name="runs")

    @runs.command("list")
    def runs_list(
        flow: Annotated[
            str | None, typer.Option("--flow", metavar="NAME", help="Only runs of this flow")
        ] = None,
        status: Annotated[
            Status | None,
            typer.Option(
                "--status", metavar=STATUS_METAVAR, case_sensitive=False, help="Only runs in this status"
            ),
        ] = None,
        batch: Annotated[
            str | None,
            typer.Option(
                "--batch",
                metavar="BATCH",
                help="Only the runs of this batch or sweep (an id, a prefix, or 'last')",
            ),
        ] = None,
        limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="At most this many")] = 20,
        offset: Annotated[int, typer.Option("--offset", min=0, help="Skip the newest N")] = 0,
        as_json: Json = False,
    ) -> int:
        """List runs, newest first. The first line names the store they are read from."""
        rt = _runtime(read_only=True)
        batch_id = None
        if batch is not None:
            from llmflow.cli.common import resolve_batch_id

            batch_id = resolve_batch_id(rt, batch)
        st = status.value if status is not None else None
        rows = rt.store.list_runs(flow=flow, status=st, batch_id=batch_id, limit=limit, offset=offset)
        from llmflow.isotime import iso

        data = [
            {
                "id": r.id,
                "flow": r.flow_name,
                "status": r.status,
                "name": r.name,
                "created_at": iso(r.created_at),
                "started_at": iso(r.started_at),
                "ended_at": iso(r.ended_at),
                "duration": (r.ended_at - r.started_at) if r.ended_at and r.started_at else None,
                "tokens": r.tokens_in + r.tokens_out,
                "cost": r.cost,
                "batch_id": r.batch_id,
                "parent_run_id": r.parent_run_id,
            }
            for r in rows
        ]
        if as_json:
            print(json.dumps(data, indent=2))
            return 0
        filtered = {"flow": flow, "status": st, "batch": batch_id}
        if not data:
            if any(v is not None for v in filtered.values()):
                print(_no_match(rt, filtered))
            elif offset:
                print(f"no runs after the newest {offset} in {rt.settings.store_label()}")
            else:
                print(f"no runs yet in {rt.settings.store_label()}; start one with `llmflow run FLOW`")
            return 0
        print(f"runs in {rt.settings.store_label()}")
        print(f"{'id':<24} {'flow':<20} {'status':<10} {'started':<19} {'duration':>9} {'tokens':>7}")
        for d, r in zip(data, rows, strict=True):
            print(
                f"{d['id']:<24} {d['flow'][:20]:<20} {d['status']:<10} {_fmt_ts(r.started_at or r.created_at):<19} {_dur(d['duration']):>9} {d['tokens']:>7}"
            )
        return 0

    @runs.command("show")
    def runs_show(
        run_id: RunIdArg,
        step: Annotated[str | None, typer.Option("--step", metavar="STEP", help="Show one step")] = None,
        attempts: Annotated[bool, typer.Option("--attempts", help="Show every attempt side by side")] = False,
        as_json: Json = False,
    ) -> int:
        """Show a run: status, steps with durations and models, outputs."""
        from llmflow.isotime import iso_view

        rt = _runtime(read_only=True)
        run_id = resolve_run_id(rt, run_id)
        v = rt.view(run_id)
        steps = v["steps"]
        if step is not None:
            steps = [s for s in steps if s["id"] == step]
            if not steps:
                from llmflow.errors import RunStateError
                from llmflow.model.diagnostics import did_you_mean

                known = [s["id"] for s in v["steps"]]
                raise RunStateError(
                    f"run {run_id} has no step {step!r}",
                    hint=did_you_mean(step, known) or f"steps: {', '.join(known)}",
                )
        if as_json:
            print(
                json.dumps(
                    iso_view(v) if step is None else iso_view({"steps": steps})["steps"][0],
                    indent=2,
                    default=str,
                )
            )
            return 0
        print(f"run {v['id']}  flow {v['flow']}  status {v['status']}  duration {_dur(v['duration'])}")
        print(
            f"created {_fmt_ts(v['created_at'])}  tokens {v['usage']['input_tokens']} in / {v['usage']['output_tokens']} out  cost ${v['usage']['cost']:.4f}"
        )
        if v["error"]:
            print(f"error: {v['error']}")
        for s in steps:
            print(
                f"  {s['status']:<10} {s['id']:<24} {s['kind']:<10} {_dur(s['duration']):>8}  {s['model'] or ''}"
            )
            if s["error"]:
                print(f"             error: {s['error']}")
            calls = s.get("tool_calls") or []
            if calls:
                failed = sum(1 for c in calls if c["status"] == "FAILED")
                print(f"             tool calls: {len(calls)}" + (f" ({failed} failed)" if failed else ""))
                if attempts or step is not None:
                    for c in calls:
                        args = json.dumps(c.get("arguments"), ensure_ascii=False, default=str)
                        outcome = (
                            c.get("error")
                            if c["status"] == "FAILED"
                            else json.dumps(c.get("result"), ensure_ascii=False, default=str)
                        )
                        print(
                            f"             {c['status']:<10} {c['name']}({args[:60]}) {_dur(c.get('duration')):>8}  {(outcome or '').replace(chr(10), ' ')[:80]}"
                        )
            if attempts or step is not None:
                for a in s["attempts"]:
                    label = f"{a['unit']}#{a['attempt']}" if a["unit"] else f"#{a['attempt']}"
                    out = (
                        a["output"] if isinstance(a["output"], str) else json.dumps(a["output"], default=str)
                    )
                    out = (out or "").replace("\n", " ")
                    print(
                        f"             attempt {label:<10} {a['status']:<11} {_dur(a['duration']):>8}  {(a['error'] or out)[:100]}"
                    )
        if v["outputs"] and step is None:
            print("outputs: " + json.dumps(v["outputs"], ensure_ascii=False, default=str)[:2000])
        return 0

    @runs.command("events")
    def runs_events(
        run_id: RunIdArg,
        follow: Annotated[
            bool, typer.Option("--follow", "-f", help="Keep printing new events until the run ends")
        ] = False,
        after: Annotated[
            int, typer.Option("--after", metavar="SEQ", min=0, help="Only events after this sequence number")
        ] = 0,
        tokens: Annotated[bool, typer.Option("--tokens", help="Include token-chunk events")] = False,
        as_json: Json = False,
    ) -> int:
        """Print a run's event log (also while another process runs it); --json: one JSON
        object per line."""
        from llmflow.isotime import iso_event
        from llmflow.runtime.follow import EventFollower

        rt = _runtime(read_only=True)
        run_id = resolve_run_id(rt, run_id)
        for e in EventFollower(rt.store, None, run_id, after, poll_interval=0.2).follow_blocking(
            follow=follow
        ):
            if e.type == "LLM_TOKENS" and not tokens:
                continue
            if as_json:
                print(json.dumps(iso_event(e.to_dict()), default=str), flush=True)
            else:
                step = f"[{e.step_id}{'/' + e.unit if e.unit else ''}] " if e.step_id else ""
                print(f"{e.seq:>5} {_fmt_ts(e.ts)} {e.type:<22} {step}{e.message}", flush=True)
        return 0

    def _control(run_id: str, action: str, as_json: bool) -> int:
        rt = _runtime()
        run_id = resolve_run_id(rt, run_id)
        what = rt.control(run_id, action)
        if as_json:
            print(
                json.dumps({"id": run_id, "action": action, "result": what, "status": rt.get(run_id).status})
            )
        else:
            print(f"run {run_id}: {what}")
        return 0

    @runs.command("cancel")
    def runs_cancel(run_id: RunIdArg, as_json: Json = False) -> int:
        """Cancel a run: in-flight LLM calls and shell processes stop; no step starts afterwards."""
        return _control(run_id, "cancel", as_json)

    @runs.command("pause")
    def runs_pause(run_id: RunIdArg, as_json: Json = False) -> int:
        """Pause a run: running steps finish, no new step starts."""
        return _control(run_id, "pause", as_json)

    @runs.command("answer")
    def runs_answer(
        run_id: Annotated[str, typer.Argument(help="Run id")],
        answer: Annotated[str, typer.Argument(help="The answer (for a confirm question: yes / no)")],
        request: Annotated[
            str | None, typer.Option("--request", help="The request id (default: the run's open question)")
        ] = None,
    ) -> int:
        """Answer a run's human-input question, also when nobody is at its console (a parked run continues)."""
        rt = _runtime()
        what = rt.control(run_id, "answer", {"request_id": request, "answer": answer})
        print(f"run {run_id}: {what}")
        return 0

    @runs.command("resume")
    def runs_resume(
        run_id: RunIdArg,
        force: Annotated[
            bool, typer.Option("--force", help="Continue even if the flow definition changed")
        ] = False,
        background: Annotated[
            bool, typer.Option("--queue", help="Only re-queue it for a worker; do not run it here")
        ] = False,
        as_json: Json = False,
    ) -> int:
        """Resume a paused run, or recover a run whose process died, in this terminal."""
        from llmflow.cli.render import ConsoleView
        from llmflow.cli.run_cmd import _drive, _finish
        from llmflow.runtime import run_blocking

        rt = _runtime()
        run_id = resolve_run_id(rt, run_id)
        rec = rt.get(run_id)
        if rec.status == RunStatus.PAUSED:
            if rt.owned_live(rec):
                what = rt.control(run_id, "resume")
                print(
                    json.dumps({"id": run_id, "action": "resume", "result": what})
                    if as_json
                    else f"run {run_id}: {what}"
                )
                return 0
            rt.control(run_id, "resume")
            if background:
                print(
                    json.dumps({"id": run_id, "action": "resume", "result": "re-queued"})
                    if as_json
                    else f"run {run_id}: re-queued"
                )
                return 0
        tty = sys.stdout.isatty() and not as_json
        view = ConsoleView(live=tty, quiet=as_json)
        with view:
            run_blocking(_drive(rt, run_id, view, True, force=force))
        return _finish(rt, run_id, as_json)

    @runs.command("rerun")
    def runs_rerun(
        run_id: RunIdArg,
        step: Annotated[
            str | None, typer.Option("--step", "-s", metavar="STEP", help="Re-run this step in place")
        ] = None,
        unit: Annotated[
            str | None,
            typer.Option(
                "--unit",
                metavar="UNIT",
                help="Only this unit (broadcast agent, for_each index, matrix variant)",
            ),
        ] = None,
        downstream: Annotated[
            bool, typer.Option("--downstream", help="Also re-run the steps that depend on it")
        ] = False,
        from_step: Annotated[
            str | None,
            typer.Option(
                "--from", metavar="STEP", help="Fork a new run from this step, reusing earlier outputs"
            ),
        ] = None,
        as_json: Json = False,
    ) -> int:
        """Re-run one step inside an existing run (new attempt, dependents STALE), or fork with --from."""
        from llmflow.cli.render import ConsoleView
        from llmflow.cli.run_cmd import _drive, _finish
        from llmflow.runtime import run_blocking

        if (step is None) == (from_step is None):
            raise typer.BadParameter("give exactly one of --step S or --from S")
        rt = _runtime()
        run_id = resolve_run_id(rt, run_id)
        target = run_id
        rerun = None
        if from_step is not None:
            new = rt.fork(run_id, from_step)
            target = new.id
            print(f"forked run {new.id} from {run_id} at step {from_step}", file=sys.stderr)
        else:
            assert step is not None  # exactly one of step / from_step, checked above
            rerun = (step, unit, downstream)
            print(
                f"run {run_id}: re-running step {step}{'[' + unit + ']' if unit else ''}{' and what depends on it' if downstream else ''}",
                file=sys.stderr,
            )
        tty = sys.stdout.isatty() and not as_json
        view = ConsoleView(live=tty, quiet=as_json)
        with view:
            run_blocking(_drive(rt, target, view, True, rerun=rerun))
        return _finish(rt, target, as_json)

    @app.command("stats")
    def stats(
        flow: Annotated[str | None, typer.Argument(metavar="[FLOW]", help="Only this flow")] = None,
        as_json: Json = False,
    ) -> int:
        """Run statistics: totals, p50/p95 durations of runs and steps, tokens per model. The
        first line names the store they are read from."""
        from llmflow.stats import compute_stats

        rt = _runtime(read_only=True)
        s = compute_stats(rt.store, flow)
        if as_json:
            print(json.dumps({"store": rt.settings.store_label(), **s}, indent=2))
            return 0
        print(f"store: {rt.settings.store_label()}")
        if flow is not None and not s["runs"]["total"]:
            print(_no_match(rt, {"flow": flow}))
            return 0
        print(
            f"runs: {s['runs']['total']} total, {s['runs']['completed']} completed, {s['runs']['failed']} failed, {s['runs']['canceled']} canceled"
        )
        print(f"run duration: p50 {_dur(s['runs']['p50'])}  p95 {_dur(s['runs']['p95'])}")
        for sid, d in s["steps"].items():
            print(
                f"  step {sid:<24} n={d['count']:<5} p50 {_dur(d['p50'])}  p95 {_dur(d['p95'])}  failed {d['failed']}"
            )
        for m, d in s["models"].items():
            print(
                f"  model {m:<30} calls={d['calls']:<5} tokens in {d['input_tokens']} out {d['output_tokens']}  cost ${d['cost']:.4f}"
            )
        return 0
