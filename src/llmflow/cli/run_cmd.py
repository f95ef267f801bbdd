"""`llmflow run`: a flow in the terminal (live step view, streaming text, human prompts), or
with ``-m/--multirun`` one run per combination of Hydra sweep overrides, grouped."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from llmflow.cli.common import (
    ConfigDir,
    Json,
    Models,
    Verbose,
    _dur,
    _exit_for,
    _models,
    _parse_kv,
    _runtime,
    create_run_here,
)
from llmflow.engine.states import RunStatus

if TYPE_CHECKING:
    from llmflow.runtime.ports import RunService


async def _drive(
    rt: RunService,
    run_id: str,
    view: Any,
    human: bool,
    *,
    rerun: tuple[str, str | None, bool] | None = None,
    force: bool = False,
    heartbeat: str | None = None,
) -> Any:
    """Execute the run here, with the view subscribed, human questions asked, Ctrl-C as a
    clean cancel; ``heartbeat``: a sweep whose driver heartbeat this process keeps."""
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

    def ask_in_thread(payload: dict[str, Any]) -> asyncio.Future[str | None]:
        fut: asyncio.Future[str | None] = loop.create_future()

        def work() -> None:
            try:
                ans = view.ask(payload)
            except (OSError, ValueError):  # stdin closed or unreadable: nobody can answer
                ans = None
            loop.call_soon_threadsafe(lambda: None if fut.done() else fut.set_result(ans))

        threading.Thread(target=work, daemon=True).start()
        return fut

    async def answerer() -> None:
        while True:
            e = await questions.get()
            p = e.payload
            r = box.get("runner")
            rid, default, prompt = p.get("request_id"), p.get("default"), str(p.get("prompt", "")).strip()
            if not human:  # --no-human: the defaults answer (a confirmation's default is yes)
                ans: Any = default if default is not None else ""
                print(
                    f"--no-human: answering {prompt!r} with {'the default ' + repr(ans) if default is not None else 'yes' if p.get('input') == 'confirm' else 'an empty answer'}",
                    file=sys.stderr,
                )
            else:
                ans = await ask_in_thread(p)
                if ans is None and default is not None:
                    print(
                        f"no answer to {prompt!r}: standard input is at end of file; using its default {default!r}",
                        file=sys.stderr,
                    )
                    ans = default
            if r is None:
                continue
            if ans is None:  # end of file and no default: fail the step, never guess
                r.control(
                    "decline",
                    {
                        "request_id": rid,
                        "reason": f"no answer to {prompt!r}: standard input is at end of file; run it in a terminal, pipe the answers in (one line each), give the step a default, or pass --no-human to answer with defaults",
                    },
                )
            else:
                r.control("answer", {"request_id": rid, "answer": ans})

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

    async def beat(sweep_id: str) -> None:
        while True:
            rt.store.update_batch(sweep_id, updated_at=rt.clock.now())
            await asyncio.sleep(5)

    task = asyncio.create_task(answerer())
    beating = asyncio.create_task(beat(heartbeat)) if heartbeat else None
    try:
        if rerun is not None:
            step, unit, downstream = rerun
            rt.request_rerun(run_id, step, unit=unit, downstream=downstream)
        return await rt.execute(
            run_id, subscribers=[sub], on_runner=lambda r: box.__setitem__("runner", r), force=force
        )
    finally:
        task.cancel()
        if beating is not None:
            beating.cancel()
        try:
            loop.remove_signal_handler(signal.SIGINT)
        except (NotImplementedError, RuntimeError):
            pass


def _finish(rt: RunService, run_id: str, as_json: bool) -> int:
    from llmflow.isotime import iso_view

    v = rt.view(run_id)
    if as_json:
        print(json.dumps(iso_view(v), indent=2, default=str))
    else:
        status = v["status"]
        print(
            f"\nrun {run_id}: {status} in {_dur(v['duration'])}; tokens {v['usage']['input_tokens']} in / {v['usage']['output_tokens']} out"
        )
        if v["error"]:
            print(f"error: {v['error']}", file=sys.stderr)
        if v["outputs"]:
            print("outputs:")
            for k, val in v["outputs"].items():
                text = (
                    val
                    if isinstance(val, str)
                    else json.dumps(val, indent=2, ensure_ascii=False, default=str)
                )
                print(f"  {k}: {text}")
        if status == RunStatus.PAUSED:
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


def sweep(overrides: list[str]) -> list[list[str]]:
    """Hydra's multirun: ``model=a,b criteria=x,y`` -> one override list per combination
    (the cartesian product, in Hydra's order), parsed by Hydra's own override grammar, so
    quoting, ``range(1,4)`` and ``choice(a,b)`` mean what they mean in Hydra."""
    import itertools

    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as exc:
        raise typer.BadParameter(f"cannot parse the overrides for --multirun: {exc}") from None
    axes: dict[str, list[str]] = {}
    for o in parsed:
        key = o.get_key_element()
        if o.is_sweep_override():
            if not o.is_discrete_sweep() or o.value_type.name == "GLOB_CHOICE_SWEEP":  # type: ignore[union-attr]
                raise typer.BadParameter(
                    f"{key}: only lists (a,b), choice(...) and range(...) can be swept here"
                )
            axes[key] = [f"{key}={v}" for v in o.sweep_string_iterator()]
        else:
            axes[key] = [f"{key}={o.get_value_element_as_str()}"]
    return [list(c) for c in itertools.product(*axes.values())] if axes else [[]]


def _inputs_for(
    f: Any, inputs_file: str | None, input_: list[str] | None, prompt: str | None, record_id: str | None
) -> dict[str, Any]:
    inputs: dict[str, Any] = {}
    if inputs_file:
        from pathlib import Path

        try:
            inputs.update(json.loads(Path(inputs_file).read_text()))
        except (OSError, ValueError) as exc:
            raise typer.BadParameter(f"--inputs {inputs_file}: {exc}") from None
    inputs.update(_parse_kv(input_, "k=v"))
    if prompt is not None:
        if "prompt" in f.inputs:
            inputs["prompt"] = prompt
        else:
            req = [k for k, s in f.inputs.items() if s.is_required and k not in inputs]
            strs = [k for k, s in f.inputs.items() if s.type in ("string", "any")]
            target = req[0] if len(req) == 1 else (strs[0] if len(strs) == 1 else None)
            if target is None:
                raise typer.BadParameter(
                    f"flow {f.name!r} has no 'prompt' input; use --input NAME=... (inputs: {', '.join(f.inputs) or 'none'})"
                )
            inputs[target] = prompt
    if record_id is not None and "record_id" in f.inputs:
        inputs["record_id"] = record_id
    return inputs


def register(app: typer.Typer) -> None:
    if any(c.name == "run" for c in app.registered_commands):
        return

    @app.command("run")
    def run(
        flow: Annotated[str, typer.Argument(metavar="FLOW", help="Flow file, directory or name")],
        overrides: Annotated[
            list[str] | None,
            typer.Argument(
                metavar="OVERRIDES",
                help="Hydra overrides: key=value, +key=value, ~key, group=option; with -m, a,b sweeps",
            ),
        ] = None,
        multirun: Annotated[
            bool,
            typer.Option(
                "--multirun",
                "-m",
                help="Hydra's multirun: one run per combination of the comma-separated override values (model=a,b criteria=x,y: 4 runs), grouped as a sweep",
            ),
        ] = False,
        input_: Annotated[
            list[str] | None,
            typer.Option("--input", "-i", metavar="NAME=VALUE", help="Input value, repeatable"),
        ] = None,
        inputs_file: Annotated[
            str | None, typer.Option("--inputs", metavar="FILE", help="JSON file with the inputs")
        ] = None,
        prompt: Annotated[
            str | None,
            typer.Option(
                "--prompt",
                "-p",
                metavar="TEXT",
                help="Text for the flow's 'prompt' input (or its only required input)",
            ),
        ] = None,
        record_id: Annotated[
            str | None,
            typer.Option(
                "--record-id", metavar="ID", help="Record id (input 'record_id' when the flow has one)"
            ),
        ] = None,
        model: Models = None,
        human: Annotated[
            bool,
            typer.Option("--human/--no-human", help="Ask for human input (--no-human answers with defaults)"),
        ] = True,
        workspace: Annotated[
            str | None,
            typer.Option(
                "--workspace",
                "-w",
                metavar="DIR",
                help="Run file and shell steps in this directory (default: the run's own, under .llmflow/runs/)",
            ),
        ] = None,
        timeout: Annotated[
            float | None, typer.Option("--timeout", metavar="SECONDS", help="Run timeout")
        ] = None,
        thread: Annotated[
            str | None,
            typer.Option(
                "--thread",
                "-t",
                metavar="THREAD",
                help="Continue this conversation thread (agents see their earlier messages)",
            ),
        ] = None,
        as_json: Json = False,
        verbose: Verbose = False,
        config_dir: ConfigDir = None,
    ) -> int:
        """Run a flow in the terminal: live step view, streaming text, human prompts.

        Exit codes: 0 completed, 1 failed, 2 invalid definition or input, 130 cancelled."""
        from llmflow.cli.render import ConsoleView
        from llmflow.runtime import RunRequest, run_blocking

        rt = _runtime(config_dir, verbose)
        if workspace is not None:  # relative to where the command runs, not to the home found above it
            from pathlib import Path

            workspace = str(Path(workspace).expanduser().resolve())
        models = _models(model)
        combos = sweep(list(overrides or [])) if multirun else [list(overrides or [])]
        # every combination is loaded, checked and recorded before the first one runs
        planned = []
        for combo in combos:
            loaded = rt.load(flow, combo)
            inputs = _inputs_for(loaded.flow, inputs_file, input_, prompt, record_id)
            planned.append((combo, loaded, inputs))
        group = _start_sweep(rt, flow, overrides or [], planned) if multirun else None
        swept = (
            {i for i in range(len(combos[0])) if len({c[i] for c in combos}) > 1}
            if combos and combos[0]
            else set()
        )
        recs = []
        for combo, loaded, inputs in planned:
            meta: dict[str, Any] = {"record_id": record_id} if record_id else {}
            if group is not None:
                meta.update(sweep=group, overrides=combo)
            opts = RunRequest(
                models=models,
                timeout=timeout,
                workspace=workspace,
                metadata=meta,
                batch_id=group,
                thread=thread,
                name=" ".join(o for i, o in enumerate(combo) if i in swept) or " ".join(combo)
                if group
                else None,
            )
            recs.append(
                create_run_here(rt, loaded, inputs, opts, claim=group is None)
            )  # executed here at once: no worker may take it
        if group is not None:
            rt.store.update_batch(group, total=len(recs))
        tty = sys.stdout.isatty() and not as_json
        code = 0
        for n, (rec, (combo, loaded, _)) in enumerate(zip(recs, planned, strict=True), 1):
            if not as_json:
                where = (
                    f" (llmflow home {rt.settings.home}: {rt.settings.home_source})"
                    if rt.settings.home_source.startswith("found") and n == 1
                    else ""
                )
                part = f" [{n} of {len(recs)}: {' '.join(combo)}]" if group else ""
                print(
                    f"run {rec.id}: flow {loaded.flow.name}{part}{where}",
                    file=sys.stderr if not tty else sys.stdout,
                )
            view = ConsoleView(live=tty, quiet=as_json)
            with view:
                run_blocking(_drive(rt, rec.id, view, human, heartbeat=group))
            if group is None:
                return _finish(rt, rec.id, as_json)
            status = rt.get(rec.id).status
            code = max(code, _exit_for(status))
            if status == RunStatus.CANCELED:
                break  # Ctrl-C stops the sweep too; the runs not started stay queued
        assert group is not None  # a single run returned above
        return _finish_sweep(rt, group, recs, as_json, code)


def _start_sweep(rt: RunService, flow: str, overrides: list[str], planned: list[Any]) -> str:
    """Record a sweep as a batch (kind ``sweep``): its runs carry its id, so `runs list
    --batch`, `batches show` and the web console group them."""
    import secrets
    import time
    from pathlib import Path

    from llmflow.store.batches import BatchRecord

    sweep_id = "sweep-" + time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)
    now = rt.clock.now()
    ref = str(Path(flow).resolve()) if Path(flow).exists() else flow
    spec = {
        "kind": "sweep",
        "flow": {"ref": ref},
        "overrides": list(overrides),
        "variants": [" ".join(c) for c, _, _ in planned],
    }
    rt.store.create_batch(
        BatchRecord(
            sweep_id,
            planned[0][1].flow.name,
            "RUNNING",
            now,
            now,
            None,
            len(planned),
            spec,
            rt.owner,
            {"source": "llmflow run --multirun"},
        )
    )
    return sweep_id


def _finish_sweep(rt: RunService, sweep_id: str, recs: list[Any], as_json: bool, code: int) -> int:
    """Close the sweep, cancel what a Ctrl-C left unstarted, print one line per run."""
    for rec in recs:
        if rt.get(rec.id).status == RunStatus.QUEUED:
            rt.control(rec.id, "cancel", {"reason": "the sweep was interrupted"})
    now = rt.clock.now()
    rt.store.update_batch(
        sweep_id, status="COMPLETED" if code != 130 else "STOPPED", ended_at=now, updated_at=now, owner=None
    )
    from llmflow.isotime import iso_view

    views = [rt.view(r.id) for r in recs]
    if as_json:
        print(json.dumps({"sweep": sweep_id, "runs": [iso_view(v) for v in views]}, indent=2, default=str))
        return code
    done = sum(1 for v in views if v["status"] == RunStatus.COMPLETED)
    print(
        f"\nsweep {sweep_id}: {done} of {len(views)} runs completed (see `llmflow runs list --batch {sweep_id}`)"
    )
    width = max(len(r.name or "") for r in recs)
    for rec, v in zip(recs, views, strict=True):
        out = v["outputs"] or {}
        first = next(iter(out.values()), "") if out else (v["error"] or "")
        text = (first if isinstance(first, str) else json.dumps(first, default=str)).replace("\n", " ")
        print(f"  {v['status']:<10} {rec.id}  {(rec.name or ''):<{width}}  {text[:80]}")
    return code
