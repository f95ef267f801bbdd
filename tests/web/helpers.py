"""Helpers for the console tests: an isolated home with test flows, a real Uvicorn serving
the app in a thread, the API through httpx, and the `llmflow` CLI as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
from tests.support import LoopbackServer, free_port, wait_until

from . import flows

__all__ = ["free_port", "wait_until"]  # re-exported for the console tests

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
ARTIFACTS = ROOT / "test-artifacts" / "web"
CHROMIUM = "/usr/bin/chromium"
LLMFLOW = str(Path(sys.executable).parent / "llmflow")
DEFAULT_MODEL = "fake:?latency=0.2&chunk_delay=0.03"


def make_home(home: Path) -> Path:
    conf = home / "conf" / "flows"
    conf.mkdir(parents=True, exist_ok=True)
    for name in ("ask", "slow", "note", "broken"):
        (conf / f"{name}.yaml").write_text(getattr(flows, name.upper()))
    (home / "fake-scripts.yaml").write_text(flows.FAKE_SCRIPTS)
    return home


def env_for(home: Path, **extra: str) -> dict[str, str]:
    """An isolated llmflow environment: its own home, the fake model, real models blocked."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("LLMFLOW_", "OLLAMA_")) and k not in ("DISABLE_WORKER", "WORKER_CHECK_INTERVAL")
    }
    env.update(
        LLMFLOW_HOME=str(home),
        LLMFLOW_MODEL=DEFAULT_MODEL,
        LLMFLOW_BLOCK_REAL_MODELS="1",
        LLMFLOW_FAKE_SCRIPTS=str(home / "fake-scripts.yaml"),
        LLMFLOW_CONFIG_DIR=str(home / "conf"),
        LLMFLOW_LEASE_SECONDS="3",
        WORKER_CHECK_INTERVAL="0.2",
        LLMFLOW_SSE_KEEPALIVE="2",
    )
    env.update(extra)
    return env


class ConsoleServer(LoopbackServer):
    """create_app(...) on a free loopback port, in a thread, as `llmflow serve` builds it."""

    def __init__(self, home: Path, **env: str) -> None:
        from llmflow.server.app import create_app
        from llmflow.server.config import ServerConfig
        from llmflow.settings import Settings

        self.home = home
        self.env = env_for(home, **env)
        settings = Settings.from_env(self.env)
        flows_ = [str(EXAMPLES / n) for n in ("review", "support-router", "panel", "hello")]
        cfg = ServerConfig.from_env(self.env, flows=flows_, config_dir=home / "conf")
        super().__init__(create_app(settings, cfg), name="uvicorn-console")
        self.token = env.get("LLMFLOW_API_TOKEN")

    def client(self) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return httpx.Client(base_url=self.url, timeout=30, headers=headers)

    def start_run(self, flow: str, inputs: dict[str, Any] | None = None, **options: Any) -> str:
        with self.client() as c:
            r = c.post("/api/v1/runs", json={"flow": flow, "inputs": inputs or {}, "options": options})
            assert r.status_code == 201, r.text
            return r.json()["id"]

    def status(self, run_id: str) -> str:
        with self.client() as c:
            return c.get(f"/api/v1/runs/{run_id}").json()["status"]

    def wait_for(self, run_id: str, statuses: tuple[str, ...] = ("COMPLETED", "FAILED", "CANCELED")) -> str:
        return wait_until(
            lambda: (s := self.status(run_id)) in statuses and s, 60, what=f"run {run_id} to reach {statuses}"
        )

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """`llmflow ARGS` with the server's home and store."""
        return subprocess.run(
            [LLMFLOW, *args], env=self.env, cwd=self.home, capture_output=True, text=True, timeout=timeout
        )
