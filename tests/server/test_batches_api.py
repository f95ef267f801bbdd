"""GET /api/v1/batches and /api/v1/batches/{id}: progress of batches started with the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_batches_started_from_the_cli_are_listed_with_their_progress(home, client):
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMFLOW_")}
    env.update({"LLMFLOW_HOME": str(home), "LLMFLOW_MODEL": "fake:", "LLMFLOW_BLOCK_REAL_MODELS": "1"})
    p = subprocess.run([sys.executable, "-m", "llmflow", "batch", str(ROOT / "examples" / "batch"), "--max-records", "2", "-o", "out.jsonl"], capture_output=True, text=True, env=env, cwd=home, timeout=180)
    assert p.returncode == 0, p.stderr
    r = client.get("/api/v1/batches")
    assert r.status_code == 200
    (b,) = r.json()["batches"]
    assert (b["total"], b["done"], b["completed"], b["failed"], b["remaining"]) == (4, 4, 4, 0, 0)
    one = client.get(f"/api/v1/batches/{b['id']}")
    assert one.status_code == 200 and one.json()["id"] == b["id"] and one.json()["tokens"]["total"] > 0
    missing = client.get("/api/v1/batches/nope")
    assert missing.status_code == 404 and "no batch 'nope'" in missing.json()["detail"]
