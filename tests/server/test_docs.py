"""docs/service.md: every route is documented, and its shell and Python snippets run as
written against a real server."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from llmflow.server.app import create_app
from llmflow.server.config import ServerConfig
from llmflow.settings import Settings

from .helpers import ROOT, LiveServer

DOC = ROOT / "docs" / "service.md"
TEXT = DOC.read_text(encoding="utf-8")
SH = re.findall(r"```sh\n(.*?)```", TEXT, flags=re.DOTALL)
PY = re.findall(r"```python\n(.*?)```", TEXT, flags=re.DOTALL)


def _shape(path: str) -> str:
    return re.sub(r"\{[^}]*\}", "{}", path)


def test_every_route_is_documented() -> None:
    app = create_app(Settings(home=Path("/nonexistent")), ServerConfig())
    documented = {_shape(p) for p in re.findall(r"`(/[^` ?]*)", TEXT)}
    missing = [p for p in app.openapi()["paths"] if _shape(p) not in documented]
    assert not missing, f"routes missing from {DOC.name}: {missing}"
    for ws in ("/ws", "/ws/{session_id}", "/api/v1/runs/{id}/ws"):
        assert f"`{ws}`" in TEXT or ws in TEXT


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("curl") is None or shutil.which("jq") is None, reason="needs curl and jq")
def test_the_shell_snippets_run_against_a_server(live: LiveServer, tmp_path: Path) -> None:
    assert len(SH) >= 8
    script = tmp_path / "doc.sh"
    script.write_text("set -eu\n" + "\n".join(SH))
    out = subprocess.run(
        ["bash", str(script)],
        env={"BASE": live.url, "PATH": "/usr/bin:/bin:/usr/local/bin"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, f"{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    assert '"healthy"' in out.stdout and "COMPLETED" in out.stdout and "Invalid action" in out.stdout
    assert "404" in out.stdout.splitlines()


@pytest.mark.slow
def test_the_python_snippet_follows_a_run(live: LiveServer) -> None:
    with live.client() as c:
        rid = c.post("/api/v1/runs", json={"flow": "panel"}).json()["id"]
        ns: dict[str, Any] = {}
        exec(compile(PY[0].replace("127.0.0.1:8000", f"127.0.0.1:{live.port}"), f"{DOC}:python", "exec"), ns)
        asyncio.run(asyncio.wait_for(ns["follow"](rid), 60))
        assert c.get(f"/api/v1/runs/{rid}").json()["status"] == "COMPLETED"
