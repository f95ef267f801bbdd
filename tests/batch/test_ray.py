"""Batches on Ray: a local instance (``ray.init(num_cpus=2)``) and a local cluster the CLI
joins with --ray-address, killed and resumed. Slow: Ray takes seconds to start."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llmflow.store.factory import open_store

from .conftest import FLOW, read_rows, records, write_csv
from .test_cli import batch_ids, env_for, llmflow

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local_ray() -> Iterator[Any]:
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_a_batch_runs_on_ray_actors_with_the_same_ids_and_output(
    local_ray: Any, make_rt: Any, project: Path
) -> None:
    from llmflow.batch.plan import BatchRequest, plan_batch
    from llmflow.batch.ray_executor import RayExecutor
    from llmflow.batch.runner import BatchDriver

    rt = make_rt()
    write_csv(project / "d.csv", records(12))
    plan = plan_batch(
        rt, BatchRequest(flow="flow.yaml", data="d.csv", output="o.jsonl", max_workers=4, engine="ray")
    )
    result = asyncio.run(BatchDriver(rt, plan, executor=RayExecutor(rt, max_workers=4)).run())
    assert (result.status, result.completed) == ("COMPLETED", 12)
    rows = read_rows(project / "o.jsonl")
    assert sorted(r["record_id"] for r in rows) == sorted(f"r{i}" for i in range(12))
    owners = {
        e.payload.get("owner") for r in rows for e in rt.store.events(r["run_id"]) if e.type == "RUN_STARTED"
    }
    assert rt.owner not in owners and len(owners) >= 1  # executed by the actors' runtimes
    assert all(r["run_id"].startswith(plan.id + ".r") for r in rows)


def test_ray_refuses_a_store_its_workers_cannot_share(local_ray: Any, make_rt: Any) -> None:
    from llmflow.batch.ray_executor import RayExecutor
    from llmflow.errors import BatchError

    with pytest.raises(BatchError, match="in memory"):
        RayExecutor(make_rt(LLMFLOW_DATABASE_URL="memory://"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def ray_cluster(tmp_path: Path) -> Iterator[str]:
    """A local cluster in its own session, stopped by that session id afterwards."""
    if ray.is_initialized():
        ray.shutdown()
    port = _free_port()
    exe = Path(sys.executable).with_name("ray")
    proc = subprocess.Popen(
        [
            str(exe),
            "start",
            "--head",
            f"--port={port}",
            "--num-cpus=2",
            "--include-dashboard=false",
            "--disable-usage-stats",
            "--block",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"},
    )
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.5)
        else:
            pytest.fail("the local Ray cluster did not start within 90s")
        yield address
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        marker = Path("/tmp/ray/ray_current_cluster")  # `ray start` leaves our address here
        if marker.exists() and marker.read_text().strip().endswith(f":{port}"):
            marker.unlink()


def test_sigkill_a_ray_batch_then_resume_it_on_ray(tmp_path: Path, ray_cluster: str) -> None:
    (tmp_path / "flow.yaml").write_text(FLOW)
    write_csv(tmp_path / "d.csv", records(24))
    out = tmp_path / "out.jsonl"
    args = [
        "batch",
        "flow.yaml",
        "--data",
        "d.csv",
        "-o",
        "out.jsonl",
        "-j",
        "4",
        "--engine",
        "ray",
        "--ray-address",
        ray_cluster,
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmflow", *args],
        env=env_for(tmp_path, LLMFLOW_MODEL="fake:?latency=0.3"),
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and (not out.exists() or len(out.read_text().splitlines()) < 6):
            time.sleep(0.1)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    (bid,) = batch_ids(tmp_path)
    store = open_store(None, project_dir=tmp_path)
    try:
        done = {r for r, s in store.batch_run_statuses(bid).items() if s == "COMPLETED"}
        assert len(done) >= 6
        p = llmflow(
            tmp_path, "batch", "--resume", bid, "--engine", "ray", "--ray-address", ray_cluster, timeout=300
        )
        assert p.returncode == 0, p.stderr
        rows = [json.loads(x) for x in out.read_text().splitlines()]
        assert sorted(r["record_id"] for r in rows) == sorted(f"r{i}" for i in range(24))
        assert set(store.batch_run_statuses(bid).values()) == {"COMPLETED"}
        for rid in done:
            assert [e.type for e in store.events(rid)].count("ATTEMPT_STARTED") == 1
    finally:
        store.close()
