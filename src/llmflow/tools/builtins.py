"""Built-in tools. File tools stay inside the run's workspace (the same confinement as the
``write_file`` step: no absolute paths, no ``..`` or symlink escapes); ``shell`` exists only
where shell steps are allowed."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

from llmflow.engine.events import EventType as E
from llmflow.tools.base import CallContext, Tool, tool_error

MAX_READ = 100_000
MAX_LIST = 500
SHELL_OUTPUT = 16_000


def _obj(props: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": required, "additionalProperties": False}


async def read_file(args: dict[str, Any], cc: CallContext) -> Any:
    from llmflow.steps.workspace import safe_path

    path = safe_path(cc.step.workspace, str(args.get("path", "")))
    if not path.is_file():
        raise tool_error(
            f"no file {args.get('path')!r} in the workspace", hint="list the files with list_files"
        )
    data = path.read_bytes()[: MAX_READ + 1]
    text = data[:MAX_READ].decode("utf-8", "replace")
    return text + ("\n[... cut at 100000 bytes]" if len(data) > MAX_READ else "")


async def write_file(args: dict[str, Any], cc: CallContext) -> Any:
    from llmflow.steps.trust import writable_path
    from llmflow.steps.workspace import atomic_write, file_record

    path = writable_path(
        cc.step, str(args.get("path", ""))
    )  # the trust boundaries, as for the write_file step
    content = str(args.get("content", ""))
    atomic_write(path, content, bool(args.get("append", False)))
    rec = file_record(cc.step.workspace, path)
    cc.step.event(E.ARTIFACT_CREATED, f"Artifact: {rec['abs_path']}", tool_call_id=cc.call_id, **rec)
    return {"path": rec["path"], "bytes": rec["size"]}


async def list_files(args: dict[str, Any], cc: CallContext) -> Any:
    from llmflow.steps.workspace import safe_path

    rel = str(args.get("path") or ".")
    root = cc.step.workspace.resolve()
    base = root if rel in (".", "") else safe_path(cc.step.workspace, rel)
    if not base.exists():
        return []
    if not base.is_dir():
        raise tool_error(f"{rel!r} is a file, not a directory")
    pattern = str(args.get("pattern") or "**/*")
    out = []
    for p in sorted(base.glob(pattern)):
        if p.is_file() and (p.resolve() == root or root in p.resolve().parents):
            out.append(str(p.relative_to(root)))
            if len(out) >= MAX_LIST:
                break
    return out


async def shell(args: dict[str, Any], cc: CallContext) -> Any:
    ctx = cc.step
    if not ctx.allow_shell:
        raise tool_error(
            "the shell tool is disabled here: shell steps are not allowed",
            hint="run with --allow-shell (server) or unset LLMFLOW_DISABLE_SHELL",
            kind="shell_disabled",
        )
    command = str(args.get("command", ""))
    if not command.strip():
        raise tool_error("empty command", kind="arguments")
    cwd = ctx.workspace.resolve()
    cwd.mkdir(parents=True, exist_ok=True)
    proc = await asyncio.create_subprocess_shell(
        command,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    ctx.event(
        E.SHELL_EXECUTING,
        f"Running (tool call {cc.call_id}): {command}",
        command=command,
        cwd=str(cwd),
        pid=proc.pid,
        tool_call_id=cc.call_id,
    )
    try:
        out, err = await proc.communicate()
    except asyncio.CancelledError:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        raise
    return {
        "exit_code": proc.returncode,
        "stdout": out.decode("utf-8", "replace")[-SHELL_OUTPUT:],
        "stderr": err.decode("utf-8", "replace")[-SHELL_OUTPUT:],
    }


BUILTINS: dict[str, Tool] = {
    t.name: t
    for t in (
        Tool(
            "read_file",
            "Read a text file of the workspace.",
            _obj({"path": {"type": "string", "description": "path relative to the workspace"}}, ["path"]),
            read_file,
            "builtin read_file",
        ),
        Tool(
            "write_file",
            "Write (or append to) a text file in the workspace.",
            _obj(
                {
                    "path": {"type": "string", "description": "path relative to the workspace"},
                    "content": {"type": "string"},
                    "append": {"type": "boolean", "default": False},
                },
                ["path", "content"],
            ),
            write_file,
            "builtin write_file",
        ),
        Tool(
            "list_files",
            "List the files of the workspace (or of one directory in it).",
            _obj(
                {
                    "path": {"type": "string", "default": "."},
                    "pattern": {"type": "string", "description": "glob, default **/*"},
                },
                [],
            ),
            list_files,
            "builtin list_files",
        ),
        Tool(
            "shell",
            "Run a shell command in the workspace; returns exit_code, stdout and stderr.",
            _obj({"command": {"type": "string"}}, ["command"]),
            shell,
            "builtin shell",
            runs_code=True,
        ),
    )
}
