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
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "llmflow",
            "batch",
            str(ROOT / "examples" / "batch"),
            "--max-records",
            "2",
            "-o",
            "out.jsonl",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=home,
        timeout=180,
    )
    assert p.returncode == 0, p.stderr
    r = client.get("/api/v1/batches")
    assert r.status_code == 200
    (b,) = r.json()["batches"]
    assert (b["total"], b["done"], b["completed"], b["failed"], b["remaining"]) == (4, 4, 4, 0, 0)
    one = client.get(f"/api/v1/batches/{b['id']}")
    assert one.status_code == 200 and one.json()["id"] == b["id"] and one.json()["tokens"]["total"] > 0
    missing = client.get("/api/v1/batches/nope")
    assert missing.status_code == 404 and "no batch 'nope'" in missing.json()["detail"]


# -- resume and retry-failed over HTTP --------------------------------------------------------
import json  # noqa: E402

from .helpers import wait_until  # noqa: E402

GATED = """\
name: gated
inputs:
  text: {type: string}
steps:
  - id: gate
    shell: {command: "test -f FLAG"}
    retry: 1
  - id: say
    llm: "{{ inputs.text }}"
outputs:
  said: "{{ steps.say.output }}"
"""


def _cli(home: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMFLOW_")}
    env.update({"LLMFLOW_HOME": str(home), "LLMFLOW_MODEL": "fake:", "LLMFLOW_BLOCK_REAL_MODELS": "1"})
    return subprocess.run(
        [sys.executable, "-m", "llmflow", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=home,
        timeout=timeout,
    )


def _wait_batch(c, batch_id: str, done: int) -> dict:
    return wait_until(
        lambda: (
            (b := c.get(f"/api/v1/batches/{batch_id}").json())["status"] in ("COMPLETED", "STOPPED")
            and b["done"] >= done
            and b
        ),
        60,
        what=f"batch {batch_id} to finish {done} jobs",
    )


def test_retry_failed_over_http_reruns_the_failed_jobs_to_completion(home, live):
    flag = home / "ok.flag"
    (home / "gated.yaml").write_text(GATED.replace("FLAG", str(flag)))
    (home / "data.jsonl").write_text("".join(json.dumps({"text": f"record {i}"}) + "\n" for i in range(3)))
    p = _cli(home, "batch", "gated.yaml", "--data", "data.jsonl", "--json")
    assert p.returncode == 1, p.stderr  # every job failed at the gate
    batch_id = json.loads(p.stdout)["batch_id"]
    with live.client() as c:
        before = c.get(f"/api/v1/batches/{batch_id}").json()
        assert (before["completed"], before["failed"]) == (0, 3)
        plain = c.post(f"/api/v1/batches/{batch_id}/resume")
        assert plain.status_code == 202 and plain.json()["action"] == "resume"
        assert _wait_batch(c, batch_id, 3)["failed"] == 3  # resume alone leaves failed jobs alone
        flag.write_text("ok")
        r = c.post(f"/api/v1/batches/{batch_id}/retry-failed")
        assert r.status_code == 202, r.text
        assert r.json()["action"] == "retry-failed" and r.json()["status"] == "RUNNING"
        after = _wait_batch(c, batch_id, 3)
        assert (after["status"], after["completed"], after["failed"]) == ("COMPLETED", 3, 0)
        runs = c.get("/api/v1/runs", params={"batch_id": batch_id}).json()["runs"]
        assert sorted(r["status"] for r in runs) == ["COMPLETED"] * 3  # re-run in place, not new runs
    rows = [json.loads(line) for line in Path(after["output"]).read_text().splitlines()]
    assert sorted(r["outputs"]["said"].split(" [")[0] for r in rows) == [
        f"fake answer to: record {i}" for i in range(3)
    ]


def test_resume_over_http_finishes_a_batch_whose_driver_was_killed(home, live):
    (home / "data.jsonl").write_text("".join(json.dumps({"text": f"r{i}"}) + "\n" for i in range(6)))
    (home / "slow.yaml").write_text(
        "name: slow\ninputs:\n  text: {type: string}\nsteps:\n  - id: a\n    llm: '{{ inputs.text }}'\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMFLOW_")}
    env.update({"LLMFLOW_HOME": str(home), "LLMFLOW_BLOCK_REAL_MODELS": "1"})
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llmflow",
            "batch",
            "slow.yaml",
            "--data",
            "data.jsonl",
            "-j",
            "1",
            "--model",
            "fake:?latency=0.5",
        ],
        env=env,
        cwd=home,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    with live.client() as c:
        batch = wait_until(
            lambda: (rows := c.get("/api/v1/batches").json()["batches"]) and rows[0]["done"] >= 1 and rows[0],
            60,
            what="the batch to get going",
        )
        busy = c.post(f"/api/v1/batches/{batch['id']}/resume")
        assert busy.status_code == 409 and "being run by another process" in busy.json()["detail"]
        proc.kill()
        proc.wait(30)
        r = c.post(f"/api/v1/batches/{batch['id']}/resume", json={"max_workers": 3})
        assert r.status_code == 202, r.text
        again = c.post(f"/api/v1/batches/{batch['id']}/resume")
        assert again.status_code == 409 and "already running on this server" in again.json()["detail"]
        after = _wait_batch(c, batch["id"], 6)
        assert (after["status"], after["completed"], after["failed"], after["remaining"]) == (
            "COMPLETED",
            6,
            0,
            0,
        )


def test_resume_refuses_what_cannot_be_resumed(home, client):
    assert client.post("/api/v1/batches/nope/resume").status_code == 404
    (home / "sweep.yaml").write_text(
        "name: s\nparameters: {x: 1}\nsteps:\n  - id: a\n    llm: '{{ parameters.x }}'\n"
    )
    assert _cli(home, "run", "sweep.yaml", "-m", "parameters.x=1,2").returncode == 0
    sweep = client.get("/api/v1/batches").json()["batches"][0]
    r = client.post(f"/api/v1/batches/{sweep['id']}/retry-failed")
    assert r.status_code == 409 and "is a sweep" in r.json()["detail"]
    bad = client.post(f"/api/v1/batches/{sweep['id']}/resume", json={"max_workers": 0})
    assert bad.status_code == 422


from .helpers import both_stores  # noqa: E402


@both_stores
def test_runs_can_leave_out_batch_runs_for_the_dashboard(home, client):
    flow = {"name": "one", "steps": [{"id": "a", "llm": "hi"}]}
    solo = client.post("/api/v1/runs", json={"document": flow, "wait": True}).json()["id"]
    from llmflow.batch.plan import BatchRequest
    from llmflow.batch.start import prepare_batch
    from llmflow.model.spec import Flow
    from llmflow.runtime import run_blocking

    rt = client.app.state.services.runtime
    driver = prepare_batch(
        rt,
        BatchRequest(flow=Flow.model_validate(flow), inline_records=[{}, {}], output=str(home / "out.jsonl")),
    )
    run_blocking(driver.run())
    standalone = client.get("/api/v1/runs", params={"in_batch": "false"}).json()
    assert [r["id"] for r in standalone["runs"]] == [solo] and standalone["total"] == 1
    batched = client.get("/api/v1/runs", params={"in_batch": "true"}).json()
    assert batched["total"] == 2 and {r["batch_id"] for r in batched["runs"]} == {driver.plan.id}
    assert client.get("/api/v1/runs").json()["total"] == 3
