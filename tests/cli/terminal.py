"""Run `llmflow` the way a person does: in a real pseudo-terminal (stdin, stdout and stderr
all on the pty), optionally typing answers when a prompt appears; or with pipes."""

from __future__ import annotations

import os
import re
import select
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r")


def env_for(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLMFLOW_", "OLLAMA_"))}
    env.update(
        {
            "LLMFLOW_HOME": str(home),
            "LLMFLOW_MODEL": "fake:",
            "LLMFLOW_BLOCK_REAL_MODELS": "1",
            "TERM": "xterm-256color",
            "COLUMNS": "120",
            "LINES": "40",
            **extra,
        }
    )
    return env


@dataclass
class Result:
    code: int
    raw: str  # as the terminal received it (control codes included)

    @property
    def text(self) -> str:
        """What a person reads: control codes removed."""
        return ANSI.sub("", self.raw)


def in_terminal(
    cwd: Path,
    *args: str,
    answers: list[tuple[str, str]] | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 120,
) -> Result:
    """Run ``llmflow ARGS`` on a pty. ``answers``: (text to wait for, line to type) pairs, in
    order; each line is typed once its text has appeared in the output."""
    import pty

    master, slave = pty.openpty()
    os.set_blocking(master, False)
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmflow", *args],
        cwd=cwd,
        env=env or env_for(cwd),
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
    )
    os.close(slave)
    pending = list(answers or [])
    out = b""
    deadline = time.monotonic() + timeout
    try:
        while True:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"llmflow {' '.join(args)} did not finish in {timeout}s; output so far:\n{ANSI.sub('', out.decode(errors='replace'))}"
                )
            ready, _, _ = select.select([master], [], [], 0.05)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: every holder of the slave side closed it
                    chunk = b""
                if chunk:
                    out += chunk
                elif proc.poll() is not None:
                    break
            elif proc.poll() is not None:
                # drain what is left
                try:
                    while chunk := os.read(master, 65536):
                        out += chunk
                except OSError:
                    pass
                break
            if pending and pending[0][0] in ANSI.sub("", out.decode(errors="replace")):
                _, line = pending.pop(0)
                os.write(master, (line + "\n").encode())
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        os.close(master)
    return Result(proc.returncode, out.decode(errors="replace"))


def piped(
    cwd: Path, *args: str, input: str | None = None, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``llmflow ARGS`` with pipes (not a terminal); stdin is ``input`` (empty: at EOF)."""
    return subprocess.run(
        [sys.executable, "-m", "llmflow", *args],
        cwd=cwd,
        env=env or env_for(cwd),
        input=input if input is not None else "",
        capture_output=True,
        text=True,
        timeout=timeout,
    )
