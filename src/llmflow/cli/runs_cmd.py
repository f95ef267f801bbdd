"""`llmflow run`, `llmflow runs ...`, `llmflow stats`."""

from __future__ import annotations

import json
import re
import sys
import time
from typing import Annotated, Any

import typer

from llmflow.cli.flows_cmd import ConfigDir

Json = Annotated[bool, typer.Option("--json", help="Print JSON for scripts")]


def _runtime(config_dir: str | None = None, verbose: bool = False, *, read_only: bool = False) -> Any:
    """The runtime for a command. ``read_only`` commands (listings, show, stats) create no
    ``.llmflow/`` where there is none: they read an empty store instead, so looking does
    not plant a home that later runs would be found in."""
    from llmflow.app import build_runtime
    from llmflow.cli.logs import setup_logging
    from llmflow.settings import Settings

    settings = Settings.from_env()
    if read_only and not settings.database_url and not (settings.state_dir / "llmflow.db").exists():
        from llmflow.store.memory import MemoryStore

        return build_runtime(settings, store=MemoryStore())
    rt = build_runtime(settings)
    if config_dir:
        from pathlib import Path

        rt.settings.config_dir = Path(config_dir)
    setup_logging(rt.settings.state_dir, rt.settings.log_level, verbose)
    return rt


def _parse_kv(items: list[str] | None, what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for it in items or []:
        k, sep, v = it.partition("=")
        if not sep or not k.strip():
            raise typer.BadParameter(f"{it!r}: expected {what}")
        out[k.strip()] = v
    return out


_STEP_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-/]*$")


def _models(items: list[str] | None) -> dict[str, str]:
    """``STEP=provider:model`` for one step, ``provider:model`` for every step. A value that
    starts with ``provider:`` is a model even when its options hold ``=``
    (``fake:?latency=0.2``)."""
    out: dict[str, str] = {}
    for it in items or []:
        head, sep, model = it.partition("=")
        if sep and ":" not in head and _STEP_KEY.match(head.strip()) and model.strip():
            out[head.strip()] = model.strip()
        elif ":" in it.partition("=")[0]:
            out["*"] = it.strip()
        else:
            raise typer.BadParameter(f"{it!r}: expected STEP=provider:model, or provider:model for every step (e.g. --model fake: or --model report=openai:gpt-4o-mini)")
    return out


def located(exc: Any, source: str) -> Any:
    """The same problems, pointing at the flow file (not ``<flow>``) and with the CLI's own
    fix for a missing input (``--input NAME=...``)."""
    from dataclasses import replace

    from llmflow.errors import FlowValidationError
    from llmflow.model.diagnostics import Location

    out = []
    for d in exc.diagnostics:
        if d.location.file is None and d.location.origin is None:
            if d.path.startswith("models."):
                d = replace(d, location=Location(origin="--model"))
            elif source and not source.startswith("<"):
                d = replace(d, location=Location(file=source))
        if d.path.startswith("options.models"):  # the CLI's name for it is the location: --model
            d = replace(d, path="")
        if d.code == "missing-input":
            d = replace(d, hint=f"pass it with --input {d.path.removeprefix('inputs.')}=...")
        out.append(d)
    return FlowValidationError(out)


def create_run_here(rt: Any, loaded: Any, inputs: dict[str, Any], opts: Any) -> Any:
    from llmflow.errors import FlowValidationError

    try:
        return rt.create_run(loaded, inputs, opts)
    except FlowValidationError as exc:
        raise located(exc, loaded.source) from None


def _fmt_ts(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


def _dur(v: float | None) -> str:
    return f"{v:.2f}s" if v is not None else "-"


def _exit_for(status: str) -> int:
    return {"COMPLETED": 0, "FAILED": 1, "CANCELED": 130}.get(status, 0)


async def _drive(rt: Any, run_id: str, view: Any, human: bool, *, rerun: tuple[str, str | None, bool] | None = None, force: bool = False) -> Any:
    import asyncio
    import signal
    import threading

    from llmflow.engine.events import EventType as E

    loop = asyncio.get_running_loop()
    box: dict[str, Any] = {}
    questions: asyncio.Queue[Any] = asyncio.Queue()

    def sub(e: Any) -> None:
        view.on_event(e)
        if e.type == E.HUMAN_INPUT_REQUESTED:
            questions.put_nowait(e)

    def ask_in_thread(payload: dict[str, Any]) -> asyncio.Future[str]:
        fut: asyncio.Future[str] = loop.create_future()

        def work() -> None:
            try:
                ans = view.ask(payload)
            except Exception:  # noqa: BLE001
                ans = payload.get("default") or ""
            loop.call_soon_threadsafe(lambda: fut.done() or fut.set_result(ans))

        threading.Thread(target=work, daemon=True).start()
        return fut

    async def answerer() -> None:
        while True:
            e = await questions.get()
            p = e.payload
            ans: Any = await ask_in_thread(p) if human else (p.get("default") if p.get("default") is not None else "")
            r = box.get("runner")
            if r is not None:
                r.control("answer", {"request_id": p.get("request_id"), "answer": ans})

    interrupts = {"n": 0}

    def on_sigint() -> None:
        interrupts["n"] += 1
        r = box.get("runner")
        if interrupts["n"] > 1 or r is None:
            raise KeyboardInterrupt
        print("\ncanceling the run (Ctrl-C again to quit at once)...", file=sys.stderr)
        r.control("cancel", {"reason": "Ctrl-C"})

    try:
        loop.add_signal_handler(signal.SIGINT, on_sigint)
    except (NotImplementedError, RuntimeError):
        pass
    task = asyncio.create_task(answerer())
    try:
        if rerun is not None:
            step, unit, downstream = rerun
            rt.request_rerun(run_id, step, unit=unit, downstream=downstream)
        return await rt.execute(run_id, subscribers=[sub], on_runner=lambda r: box.__setitem__("runner", r), force=force)
    finally:
        task.cancel()
        try:
            loop.remove_signal_handler(signal.SIGINT)
        except (NotImplementedError, RuntimeError):
            pass


def _finish(rt: Any, run_id: str, as_json: bool) -> int:
    v = rt.view(run_id)
    if as_json:
        print(json.dumps(v, indent=2, default=str))
    else:
        status = v["status"]
        print(f"\nrun {run_id}: {status} in {_dur(v['duration'])}; tokens {v['usage']['input_tokens']} in / {v['usage']['output_tokens']} out")
        if v["error"]:
            print(f"error: {v['error']}", file=sys.stderr)
        if v["outputs"]:
            print("outputs:")
            for k, val in v["outputs"].items():
                text = val if isinstance(val, str) else json.dumps(val, indent=2, ensure_ascii=False, default=str)
                print(f"  {k}: {text}")
        if status == "PAUSED":
            print(f"paused; continue with `llmflow runs resume {run_id}`")
        _say_where_files_went(v)
    return _exit_for(v["status"])


def _say_where_files_went(v: dict[str, Any]) -> None:
    """The files the run's steps wrote, and where: the default workspace is inside the
    store (``.llmflow/runs/ID/workspace``), which is easy to miss."""
    from pathlib import Path

    files = [a["path"] for a in v.get("artifacts") or []]
    if not files:
        return
    ws = Path(v["workspace"])
    shown = ", ".join(files[:5]) + (f" and {len(files) - 5} more" if len(files) > 5 else "")
    print(f"files: {shown}")
    print(f"  in {ws}/")
    if ws.parts[-4:-2] == (".llmflow", "runs"):
        print("  (the run's own workspace; pass -w DIR to write them somewhere else)")


def register(app: typer.Typer) -> None:
    runs = typer.Typer(help="Inspect and control runs.", no_args_is_help=True)
    app.add_typer(runs, name="runs")

    @app.command("run")
    def run(
        flow: Annotated[str, typer.Argument(help="Flow file, directory or name")],
        overrides: Annotated[list[str] | None, typer.Argument(help="Hydra overrides: key=value, +key=value, ~key, group=option")] = None,
        input_: Annotated[list[str] | None, typer.Option("--input", "-i", help="Input k=v, repeatable")] = None,
        inputs_file: Annotated[str | None, typer.Option("--inputs", help="JSON file with the inputs")] = None,
        prompt: Annotated[str | None, typer.Option("--prompt", "-p", help="Text for the flow's 'prompt' input (or its only required input)")] = None,
        record_id: Annotated[str | None, typer.Option("--record-id", help="Record id (input 'record_id' when the flow has one)")] = None,
        model: Annotated[list[str] | None, typer.Option("--model", "-m", help="STEP=provider:model, or provider:model for every step")] = None,
        human: Annotated[bool, typer.Option("--human/--no-human", help="Ask for human input (--no-human answers with defaults)")] = True,
        workspace: Annotated[str | None, typer.Option("--workspace", "-w", help="Run file and shell steps in this directory")] = None,
        timeout: Annotated[float | None, typer.Option("--timeout", help="Run timeout in seconds")] = None,
        as_json: Json = False,
        verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logs on stderr")] = False,
        config_dir: ConfigDir = None,
    ) -> int:
        """Run a flow in the terminal: live step view, streaming text, human prompts.

        Exit codes: 0 completed, 1 failed, 2 invalid definition or input, 130 cancelled."""
        from llmflow.cli.render import ConsoleView
        from llmflow.runtime import RunOptions, run_blocking

        rt = _runtime(config_dir, verbose)
        loaded = rt.load(flow, overrides or [])
        inputs: dict[str, Any] = {}
        if inputs_file:
            from pathlib import Path

            try:
                inputs.update(json.loads(Path(inputs_file).read_text()))
            except (OSError, ValueError) as exc:
                raise typer.BadParameter(f"--inputs {inputs_file}: {exc}") from None
        inputs.update(_parse_kv(input_, "k=v"))
        f = loaded.flow
        if prompt is not None:
            if "prompt" in f.inputs:
                inputs["prompt"] = prompt
            else:
                req = [k for k, s in f.inputs.items() if s.is_required and k not in inputs]
                strs = [k for k, s in f.inputs.items() if s.type in ("string", "any")]
                target = req[0] if len(req) == 1 else (strs[0] if len(strs) == 1 else None)
                if target is None:
                    raise typer.BadParameter(f"flow {f.name!r} has no 'prompt' input; use --input NAME=... (inputs: {', '.join(f.inputs) or 'none'})")
                inputs[target] = prompt
        if record_id is not None:
            if "record_id" in f.inputs:
                inputs["record_id"] = record_id
        if workspace is not None:  # relative to where the command runs, not to the home found above it
            from pathlib import Path

            workspace = str(Path(workspace).expanduser().resolve())
        opts = RunOptions(models=_models(model), timeout=timeout, workspace=workspace, metadata={"record_id": record_id} if record_id else {})
        rec = create_run_here(rt, loaded, inputs, opts)
        tty = sys.stdout.isatty() and not as_json
        if not as_json:
            where = f" (llmflow home {rt.settings.home}: {rt.settings.home_source})" if rt.settings.home_source.startswith("found") else ""
            print(f"run {rec.id}: flow {f.name}{where}", file=sys.stderr if not tty else sys.stdout)
        view = ConsoleView(live=tty, quiet=as_json)
        with view:
            run_blocking(_drive(rt, rec.id, view, human))
        return _finish(rt, rec.id, as_json)

    @runs.command("list")
    def runs_list(
        flow: Annotated[str | None, typer.Option("--flow")] = None,
        status: Annotated[str | None, typer.Option("--status")] = None,
        batch: Annotated[str | None, typer.Option("--batch")] = None,
        limit: Annotated[int, typer.Option("--limit", "-n")] = 20,
        offset: Annotated[int, typer.Option("--offset")] = 0,
        as_json: Json = False,
    ) -> int:
        """List runs, newest first."""
        rt = _runtime(read_only=True)
        rows = rt.store.list_runs(flow=flow, status=status.upper() if status else None, batch_id=batch, limit=limit, offset=offset)
        data = [
            {"id": r.id, "flow": r.flow_name, "status": r.status, "created_at": r.created_at, "started_at": r.started_at, "ended_at": r.ended_at, "duration": (r.ended_at - r.started_at) if r.ended_at and r.started_at else None, "tokens": r.tokens_in + r.tokens_out, "cost": r.cost, "batch_id": r.batch_id, "parent_run_id": r.parent_run_id}
            for r in rows
        ]
        if as_json:
            print(json.dumps(data, indent=2))
            return 0
        if not data:
            print(f"no runs yet in {rt.settings.store_label()}; start one with `llmflow run FLOW`")
            return 0
        print(f"runs in {rt.settings.store_label()}")
        print(f"{'id':<24} {'flow':<20} {'status':<10} {'started':<19} {'duration':>9} {'tokens':>7}")
        for d in data:
            print(f"{d['id']:<24} {d['flow'][:20]:<20} {d['status']:<10} {_fmt_ts(d['started_at'] or d['created_at']):<19} {_dur(d['duration']):>9} {d['tokens']:>7}")
        return 0

    @runs.command("show")
    def runs_show(
        run_id: Annotated[str, typer.Argument(help="Run id")],
        step: Annotated[str | None, typer.Option("--step", help="Show one step")] = None,
        attempts: Annotated[bool, typer.Option("--attempts", help="Show every attempt side by side")] = False,
        as_json: Json = False,
    ) -> int:
        """Show a run: status, steps with durations and models, outputs."""
        rt = _runtime(read_only=True)
        v = rt.view(run_id)
        steps = v["steps"]
        if step is not None:
            steps = [s for s in steps if s["id"] == step]
            if not steps:
                from llmflow.errors import RunStateError

                raise RunStateError(f"run {run_id} has no step {step!r}", hint=f"steps: {', '.join(s['id'] for s in v['steps'])}")
        if as_json:
            print(json.dumps(v if step is None else steps[0], indent=2, default=str))
            return 0
        print(f"run {v['id']}  flow {v['flow']}  status {v['status']}  duration {_dur(v['duration'])}")
        print(f"created {_fmt_ts(v['created_at'])}  tokens {v['usage']['input_tokens']} in / {v['usage']['output_tokens']} out  cost ${v['usage']['cost']:.4f}")
        if v["error"]:
            print(f"error: {v['error']}")
        for s in steps:
            print(f"  {s['status']:<10} {s['id']:<24} {s['kind']:<10} {_dur(s['duration']):>8}  {s['model'] or ''}")
            if s["error"]:
                print(f"             error: {s['error']}")
            if attempts or step is not None:
                for a in s["attempts"]:
                    label = f"{a['unit']}#{a['attempt']}" if a["unit"] else f"#{a['attempt']}"
                    out = a["output"] if isinstance(a["output"], str) else json.dumps(a["output"], default=str)
                    out = (out or "").replace("\n", " ")
                    print(f"             attempt {label:<10} {a['status']:<11} {_dur(a['duration']):>8}  {(a['error'] or out)[:100]}")
        if v["outputs"] and step is None:
            print("outputs: " + json.dumps(v["outputs"], ensure_ascii=False, default=str)[:2000])
        return 0

    @runs.command("events")
    def runs_events(
        run_id: Annotated[str, typer.Argument(help="Run id")],
        follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new events until the run ends")] = False,
        after: Annotated[int, typer.Option("--after", help="Only events after this sequence number")] = 0,
        tokens: Annotated[bool, typer.Option("--tokens", help="Include token-chunk events")] = False,
        as_json: Json = False,
    ) -> int:
        """Print a run's event log (also while another process runs it)."""
        rt = _runtime(read_only=True)
        rt.get(run_id)
        seq = after
        terminal = {"RUN_COMPLETED", "RUN_FAILED", "RUN_CANCELED"}
        while True:
            evs = rt.store.events(run_id, seq)
            for e in evs:
                seq = e.seq
                if e.type == "LLM_TOKENS" and not tokens:
                    continue
                if as_json:
                    print(json.dumps(e.to_dict(), default=str), flush=True)
                else:
                    step = f"[{e.step_id}{'/' + e.unit if e.unit else ''}] " if e.step_id else ""
                    print(f"{e.seq:>5} {_fmt_ts(e.ts)} {e.type:<22} {step}{e.message}", flush=True)
            if not follow:
                return 0
            rec = rt.get(run_id)
            if rec.status in ("COMPLETED", "FAILED", "CANCELED") and (not evs or evs[-1].type in terminal):
                return 0
            time.sleep(0.2)

    def _control(run_id: str, action: str) -> int:
        rt = _runtime()
        what = rt.control(run_id, action)
        print(f"run {run_id}: {what}")
        return 0

    @runs.command("cancel")
    def runs_cancel(run_id: Annotated[str, typer.Argument()]) -> int:
        """Cancel a run: in-flight LLM calls and shell processes stop; no step starts afterwards."""
        return _control(run_id, "cancel")

    @runs.command("pause")
    def runs_pause(run_id: Annotated[str, typer.Argument()]) -> int:
        """Pause a run: running steps finish, no new step starts."""
        return _control(run_id, "pause")

    @runs.command("resume")
    def runs_resume(
        run_id: Annotated[str, typer.Argument()],
        force: Annotated[bool, typer.Option("--force", help="Continue even if the flow definition changed")] = False,
        background: Annotated[bool, typer.Option("--queue", help="Only re-queue it for a worker; do not run it here")] = False,
        as_json: Json = False,
    ) -> int:
        """Resume a paused run, or recover a run whose process died, in this terminal."""
        from llmflow.cli.render import ConsoleView
        from llmflow.runtime import run_blocking

        rt = _runtime()
        rec = rt.get(run_id)
        if rec.status == "PAUSED":
            if rt._owned_live(rec):
                print(f"run {run_id}: {rt.control(run_id, 'resume')}")
                return 0
            rt.control(run_id, "resume")
            if background:
                print(f"run {run_id}: re-queued")
                return 0
        tty = sys.stdout.isatty() and not as_json
        view = ConsoleView(live=tty, quiet=as_json)
        with view:
            run_blocking(_drive(rt, run_id, view, sys.stdin.isatty(), force=force))
        return _finish(rt, run_id, as_json)

    @runs.command("rerun")
    def runs_rerun(
        run_id: Annotated[str, typer.Argument()],
        step: Annotated[str | None, typer.Option("--step", "-s", help="Re-run this step in place")] = None,
        unit: Annotated[str | None, typer.Option("--unit", help="Only this unit (broadcast agent, for_each index, matrix variant)")] = None,
        downstream: Annotated[bool, typer.Option("--downstream", help="Also re-run the steps that depend on it")] = False,
        from_step: Annotated[str | None, typer.Option("--from", help="Fork a new run from this step, reusing earlier outputs")] = None,
        as_json: Json = False,
    ) -> int:
        """Re-run one step inside an existing run (new attempt, dependents STALE), or fork with --from."""
        from llmflow.cli.render import ConsoleView
        from llmflow.runtime import run_blocking

        if (step is None) == (from_step is None):
            raise typer.BadParameter("give exactly one of --step S or --from S")
        rt = _runtime()
        target = run_id
        rerun = None
        if from_step is not None:
            new = rt.fork(run_id, from_step)
            target = new.id
            print(f"forked run {new.id} from {run_id} at step {from_step}", file=sys.stderr)
        else:
            rerun = (step, unit, downstream)
        tty = sys.stdout.isatty() and not as_json
        view = ConsoleView(live=tty, quiet=as_json)
        with view:
            run_blocking(_drive(rt, target, view, sys.stdin.isatty(), rerun=rerun))
        return _finish(rt, target, as_json)

    @app.command("stats")
    def stats(
        flow: Annotated[str | None, typer.Argument(help="Only this flow")] = None,
        as_json: Json = False,
    ) -> int:
        """Run statistics: totals, p50/p95 durations of runs and steps, tokens per model."""
        from llmflow.stats import compute_stats

        rt = _runtime(read_only=True)
        s = compute_stats(rt.store, flow)
        if as_json:
            print(json.dumps(s, indent=2))
            return 0
        print(f"store: {rt.settings.store_label()}")
        print(f"runs: {s['runs']['total']} total, {s['runs']['completed']} completed, {s['runs']['failed']} failed, {s['runs']['canceled']} canceled")
        print(f"run duration: p50 {_dur(s['runs']['p50'])}  p95 {_dur(s['runs']['p95'])}")
        for sid, d in s["steps"].items():
            print(f"  step {sid:<24} n={d['count']:<5} p50 {_dur(d['p50'])}  p95 {_dur(d['p95'])}  failed {d['failed']}")
        for m, d in s["models"].items():
            print(f"  model {m:<30} calls={d['calls']:<5} tokens in {d['input_tokens']} out {d['output_tokens']}  cost ${d['cost']:.4f}")
        return 0
