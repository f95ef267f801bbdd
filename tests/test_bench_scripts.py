"""The benchmark scripts keep running: each is started on a tiny workload and its report is
read (the figures themselves are for docs/benchmarks.md, never asserted here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_batch_benchmark_checks_its_runs_and_reports_the_floor() -> None:
    p = subprocess.run(
        [sys.executable, "bench/batch.py", "w1", "--records", "40", "--workers", "8", "--check", "--floor"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert p.returncode == 0, p.stderr
    report = json.loads(p.stdout)
    assert report["completed"] == 40 and report["not_completed"] == 0 and report["result_rows"] == 40
    assert report["events_ok"] is True
    assert report["floor_wall_s"] > 0 and report["floor_cpu_us_per_record"] > 0


def test_the_decisions_benchmark_runs_each_flow() -> None:
    p = subprocess.run(
        [sys.executable, "-m", "bench.decisions", "--runs", "3"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert p.returncode == 0, p.stderr
    rows = [line.split()[:2] for line in p.stdout.splitlines() if "us/step" in line]
    flows = ["plain", "outputs", "when", "looping", "filtered"]
    assert rows == [[store, flow] for store in ("memory", "sqlite") for flow in flows]
