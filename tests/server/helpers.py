"""Helpers for the server tests: isolated environments, a real Uvicorn on a free loopback
port (in a thread or as an `llmflow` subprocess), Postgres schemas, polling."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.support import LoopbackServer, free_port, wait_until

__all__ = ["LoopbackServer", "free_port", "wait_until"]  # re-exported for the server tests

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
LLMFLOW = str(Path(sys.executable).parent / "llmflow")
# a test that also runs on the real Postgres (parametrizes the database_url fixture)
both_stores = pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
PG_URL = os.environ.get("LLMFLOW_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")

HUMAN_FLOW = """\
name: ask
inputs:
  topic: {type: string, default: tea}
steps:
  - id: draft
    llm: {prompt: "Write about {{ inputs.topic }}"}
  - id: approve
    human: {prompt: "Publish the draft?", input: confirm}
  - id: name
    human: {prompt: "Your name?"}
  - id: final
    llm: {prompt: "Final: {{ steps.draft.output }} approved={{ steps.approve.output }} by {{ steps.name.output }}"}
outputs:
  approved: "{{ steps.approve.output }}"
  name: "{{ steps.name.output }}"
"""

# slow when run with options.models = SLOW (per-run models beat LLMFLOW_MODEL)
SLOW = "fake:?latency=0.3"
SLOW_FLOW = """\
name: slow
inputs:
  text: {type: string, default: x}
steps:
  - id: one
    llm: {prompt: "one {{ inputs.text }}"}
  - id: two
    llm: {prompt: "two {{ steps.one.output }}"}
  - id: three
    llm: {prompt: "three {{ steps.two.output }}"}
outputs:
  result: "{{ steps.three.output }}"
"""

SHELL_FLOW = """\
name: sh
steps:
  - id: run
    shell: {command: "echo hello > out.txt && echo done"}
"""


def base_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of an isolated llmflow process: its own home, the fake model, real
    models blocked, short leases."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("LLMFLOW_", "OLLAMA_")) and k not in ("DISABLE_WORKER", "WORKER_CHECK_INTERVAL")
    }
    env.update(
        LLMFLOW_HOME=str(home),
        LLMFLOW_MODEL="fake:",
        LLMFLOW_BLOCK_REAL_MODELS="1",
        LLMFLOW_LEASE_SECONDS="3",
        WORKER_CHECK_INTERVAL="0.2",
        LLMFLOW_SSE_KEEPALIVE="0.5",
    )
    env.update(extra)
    return env


def write_flow(home: Path, name: str, text: str, **subst: str) -> Path:
    for k, v in subst.items():
        text = text.replace(k, v)
    p = home / "conf" / "flows" / f"{name}.yaml"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return p


class LiveServer(LoopbackServer):
    """A real Uvicorn serving ``app`` on a free loopback port, in a thread."""

    @property
    def services(self) -> Any:
        return self.app.state.services

    def client(self, **kw: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **kw)


class ServeProcess:
    """`llmflow serve` (or any llmflow command) as a subprocess with its output in a file."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path, log: Path) -> None:
        self.args, self.env, self.cwd, self.log = args, env, cwd, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ServeProcess:
        self._fh = self.log.open("ab")
        self.proc = subprocess.Popen(
            [LLMFLOW, *self.args], env=self.env, cwd=self.cwd, stdout=self._fh, stderr=subprocess.STDOUT
        )
        return self

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self, sig: int = 9) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(20)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._fh.close()


ENDED = ("COMPLETED", "FAILED", "CANCELED")


def wait_status(c: Any, url: str, *statuses: str, timeout: float = 30) -> dict[str, Any]:
    """The JSON at ``url`` (a run, a batch) once its ``status`` is one of ``statuses``."""
    return wait_until(
        lambda: (r := c.get(url).json())["status"] in statuses and r,
        timeout,
        what=f"{url} to be {' or '.join(statuses)}",
    )


def wait_http(url: str, timeout: float = 30.0, proc: ServeProcess | None = None) -> None:
    def up() -> bool:
        if proc is not None and proc.proc is not None and proc.proc.poll() is not None:
            raise AssertionError(f"the server exited with {proc.proc.returncode}:\n{proc.output()}")
        try:
            return httpx.get(url + "/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(up, timeout, 0.1, what=f"{url}/health")


# -- postgres -------------------------------------------------------------------------------------
_pg_problem: list[str] = []


def _skip_or_fail(reason: str) -> Any:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so this fails instead of skipping)")
    pytest.skip(reason)


@contextmanager
def pg_schema() -> Iterator[str]:
    """A fresh schema on the test Postgres; yields a URL whose search_path is it."""
    try:
        import psycopg
    except ImportError:
        _skip_or_fail("psycopg is not installed")
    if _pg_problem:
        _skip_or_fail(_pg_problem[0])
    try:
        admin = psycopg.connect(PG_URL, autocommit=True, connect_timeout=3)
    except psycopg.Error as exc:
        shown = re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", PG_URL)
        _pg_problem.append(f"Postgres test server {shown} is unreachable: {exc}")
        _skip_or_fail(_pg_problem[0])
    schema = f"llmflow_srv_{uuid.uuid4().hex[:12]}"
    admin.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in PG_URL else "?"
    try:
        yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    finally:
        admin.execute(f"DROP SCHEMA {schema} CASCADE")
        admin.close()


def event_types(store: Any, run_id: str) -> list[str]:
    return [e.type for e in store.events(run_id)]


def completed_steps(store: Any, run_id: str) -> list[str]:
    return [e.step_id for e in store.events(run_id) if e.type == "STEP_COMPLETED"]
