"""`shell`: run a command in the workspace; stream output as events; save it as artifacts.

The command runs in its own process group so cancel stops the whole tree."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any

from llmflow.engine.events import EventType as E
from llmflow.engine.ports import StepContext
from llmflow.errors import ShellDisabledError, StepError
from llmflow.model.expressions import render_async, render_value_async
from llmflow.model.spec import ShellStep
from llmflow.steps.trust import policy_of
from llmflow.steps.workspace import atomic_write, file_record, safe_path

MAX_OUTPUT = 64_000


async def execute(ctx: StepContext) -> Any:
    spec = ctx.step
    assert isinstance(spec, ShellStep)
    if not ctx.allow_shell:
        raise ShellDisabledError(
            "shell steps are disabled in this runtime",
            hint="run with --allow-shell (server) or unset LLMFLOW_DISABLE_SHELL",
        )
    cwd = (
        safe_path(ctx.workspace, await render_async(spec.cwd, ctx.template))
        if spec.cwd
        else ctx.workspace.resolve()
    )
    policy = policy_of(ctx.settings, ctx.artifacts_dir)
    if policy is not None:  # a command starts in a place this run may write (steps/trust.py)
        cwd = policy.check_write(cwd, ctx.workspace, ctx.run_id)
    cwd.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **{k: str(v) for k, v in (await render_value_async(spec.env, ctx.template)).items()}}
    if isinstance(spec.command, list):
        argv = [str(a) for a in await render_value_async(list(spec.command), ctx.template)]
        shown = " ".join(argv)
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=cwd,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
    else:
        shown = await render_async(spec.command, ctx.template)
        proc = await asyncio.create_subprocess_shell(
            shown,
            cwd=cwd,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
    ctx.event(E.SHELL_EXECUTING, f"Running: {shown}", command=shown, cwd=str(cwd), pid=proc.pid)
    out_parts: list[str] = []
    err_parts: list[str] = []

    async def pump(stream: asyncio.StreamReader, parts: list[str], name: str) -> None:
        buf: list[str] = []
        last = time.monotonic()
        while True:
            line = await stream.readline()
            if not line:
                break
            text = line.decode("utf-8", "replace")
            parts.append(text)
            buf.append(text)
            if time.monotonic() - last > 0.2 or len(buf) >= 50:
                ctx.event(E.SHELL_OUTPUT, "".join(buf)[-2000:].rstrip("\n"), stream=name, text="".join(buf))
                buf, last = [], time.monotonic()
        if buf:
            ctx.event(E.SHELL_OUTPUT, "".join(buf)[-2000:].rstrip("\n"), stream=name, text="".join(buf))

    try:
        assert proc.stdout is not None and proc.stderr is not None
        await asyncio.gather(pump(proc.stdout, out_parts, "stdout"), pump(proc.stderr, err_parts, "stderr"))
        code = await proc.wait()
    except asyncio.CancelledError:
        _kill_group(proc)
        try:
            await asyncio.wait_for(proc.wait(), timeout=2)
        except TimeoutError:
            _kill_group(proc, signal.SIGKILL)
        raise
    stdout, stderr = "".join(out_parts), "".join(err_parts)
    base = (
        ctx.artifacts_dir
        / ctx.node_id.replace("/", "_")
        / (f"{ctx.unit}_" if ctx.unit else "")
        / f"attempt-{ctx.attempt}"
    )
    for name, text in (("stdout.txt", stdout), ("stderr.txt", stderr)):
        if text:
            p = base / name
            atomic_write(p, text)
            rec = file_record(ctx.artifacts_dir, p)
            ctx.event(E.ARTIFACT_CREATED, f"Artifact: {p}", **rec)
    result = {
        "exit_code": code,
        "stdout": stdout[-MAX_OUTPUT:],
        "stderr": stderr[-MAX_OUTPUT:],
        "success": code == 0,
    }
    if code != 0 and spec.check:
        tail = (stderr or stdout).strip().splitlines()[-5:]
        raise StepError(
            f"command exited with {code}: {shown}" + (f" | {' | '.join(tail)}" if tail else ""),
            retryable=True,
            hint="set 'check: false' to let a non-zero exit pass",
        )
    return result


def _kill_group(proc: asyncio.subprocess.Process, sig: int = signal.SIGTERM) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
