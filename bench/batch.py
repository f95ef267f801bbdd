"""Batch-mode throughput and memory on the fake model (not a test; figures in docs/batch.md).

    python bench/batch.py w1 [--records 10000 | --full] [--workers 500] [--latency 0.05] [--store sqlite|memory]
    python bench/batch.py w2 [--records 1000] [--workers 100] [--latency 0.05]
    python bench/batch.py w1 --floor     # + the same records with no engine (a lower bound)

W1: N records through a one-step flow at W concurrent jobs (10,000 by default, a few minutes
at most; ``--full``: issue 10's 100,000 records). W2: N inputs through a 3-step
pipeline (3 sequential model calls per job). Each job is a full run in the event log (SQLite
in a temporary directory unless --store memory). Reported: wall time of the batch (the
driver loop, after planning), the ideal wall time (ceil(N / W) x steps x latency), the
efficiency (ideal / wall), jobs per second, peak RSS of the process, and a check that every
job's run COMPLETED with its events persisted.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import math
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

FLOW_W1 = """
name: w1
inputs: {text: {type: string}}
steps:
  - id: answer
    llm: {prompt: "{{ inputs.text }}", stream: false}
"""

FLOW_W2 = """
name: w2
inputs: {text: {type: string}}
steps:
  - id: extract
    llm: {prompt: "Extract: {{ inputs.text }}", stream: false}
  - id: analyse
    llm: {prompt: "Analyse: {{ steps.extract.output }}", stream: false}
  - id: report
    llm: {prompt: "Report: {{ steps.analyse.output }}", stream: false}
"""


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workload", choices=["w1", "w2"])
    ap.add_argument("--records", type=int)
    ap.add_argument(
        "--full", action="store_true", help="w1 with 100,000 records (issue 10's figure; several minutes)"
    )
    ap.add_argument("--workers", type=int)
    ap.add_argument("--latency", type=float, default=0.05)
    ap.add_argument("--store", choices=["sqlite", "memory"], default="sqlite")
    ap.add_argument(
        "--engine",
        choices=["local", "ray"],
        default="local",
        help="where runs execute: the driver's own event loop, or Ray actors (one per core)",
    )
    ap.add_argument("--check", action="store_true", help="verify every run and its events afterwards")
    ap.add_argument("--keep", action="store_true", help="keep the temporary project (database, result file)")
    ap.add_argument(
        "--floor",
        action="store_true",
        help="also run the records with no engine at all (prompt rendered, fake model called, "
        "a JSON line written per record): what any batch mode would still pay",
    )
    args = ap.parse_args()
    n = args.records or ((100_000 if args.full else 10_000) if args.workload == "w1" else 1_000)
    w = args.workers or (500 if args.workload == "w1" else 100)
    steps = 1 if args.workload == "w1" else 3
    tmp = Path(tempfile.mkdtemp(prefix="llmflow-bench-"))
    data = tmp / "data.csv"
    with open(data, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["id", "text"])
        for i in range(n):
            out.writerow([i, f"record number {i} with a few words of text"])
    (tmp / "flow.yaml").write_text(FLOW_W1 if args.workload == "w1" else FLOW_W2)

    env = {
        "LLMFLOW_HOME": str(tmp),
        "LLMFLOW_MODEL": f"fake:?latency={args.latency}",
        "LLMFLOW_BLOCK_REAL_MODELS": "1",
        "LLMFLOW_LOG_LEVEL": "WARNING",
    }
    if args.store == "memory":
        env["LLMFLOW_DATABASE_URL"] = "memory://"
    os.chdir(tmp)
    from llmflow.batch.plan import BatchRequest, plan_batch
    from llmflow.batch.runner import BatchDriver
    from llmflow.runtime import build_runtime

    rt = build_runtime(env=env, home=tmp)
    rss0 = peak_rss_mb()
    plan = plan_batch(
        rt,
        BatchRequest(
            flow=str(tmp / "flow.yaml"), data=str(data), max_workers=w, output=str(tmp / "out.jsonl")
        ),
    )
    executor = None
    if args.engine == "ray":
        from llmflow.batch.ray_executor import RayExecutor

        executor = RayExecutor(rt, max_workers=w)
    driver = BatchDriver(rt, plan, executor=executor)
    t0 = time.perf_counter()
    result = asyncio.run(driver.run())
    wall = time.perf_counter() - t0
    ideal = math.ceil(n / w) * steps * args.latency
    report = {
        "load_average": [round(x, 1) for x in os.getloadavg()],
        "workload": args.workload,
        "records": n,
        "workers": w,
        "steps": steps,
        "latency": args.latency,
        "store": args.store,
        "engine": args.engine,
        "status": result.status,
        "completed": result.completed,
        "failed": result.failed,
        "wall_s": round(wall, 2),
        "ideal_s": round(ideal, 2),
        "efficiency": round(ideal / wall, 3),
        "jobs_per_s": round(n / wall, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "rss_before_mb": round(rss0, 1),
    }
    if args.check:
        statuses = rt.store.batch_run_statuses(plan.id)
        bad = [r for r, s in statuses.items() if s != "COMPLETED"]
        sample = list(statuses)[:: max(1, len(statuses) // 200)]
        events_ok = all(any(e.type == "RUN_COMPLETED" for e in rt.store.events(r)) for r in sample)
        lines = sum(1 for _ in open(tmp / "out.jsonl"))
        report.update(
            runs=len(statuses),
            not_completed=len(bad),
            events_checked=len(sample),
            events_ok=events_ok,
            result_rows=lines,
        )
    if args.floor:
        report.update(floor(data, tmp, n, w, steps, args.latency, ideal))
    if args.store == "sqlite":
        report["db_mb"] = round(
            sum(p.stat().st_size for p in (tmp / ".llmflow").glob("llmflow.db*")) / 2**20, 1
        )
    rt.close()
    if args.keep:
        report["project"] = str(tmp)
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(report, indent=2), file=sys.stdout)


def floor(
    data: Path, tmp: Path, n: int, w: int, steps: int, latency: float, ideal: float
) -> dict[str, float]:
    """The same records and model calls with no engine: each record's prompt rendered with
    Jinja2, the fake model called ``steps`` times through the provider (not the gateway: no
    events), one JSON line written. No run, no event, nothing to resume: the lower bound of
    a batch's cost on this machine, beside which the durable batch's figure can be read."""
    import jinja2

    from llmflow.providers.base import ChatMessage, ModelRequest
    from llmflow.providers.registry import ProviderRegistry

    provider, name = ProviderRegistry({}).resolve(f"fake:?latency={latency}")
    template = jinja2.Environment().from_string("{{ inputs.text }}")

    async def go() -> None:
        sem = asyncio.Semaphore(w)
        with open(data, newline="") as f, open(tmp / "floor.jsonl", "w") as out:

            async def one(row: dict[str, str]) -> None:
                async with sem:
                    text = template.render(inputs=row)
                    for _ in range(steps):
                        async for item in provider.stream(ModelRequest(name, [ChatMessage("user", text)])):
                            final = item
                        text = final.text  # type: ignore[attr-defined]
                    out.write(json.dumps({"id": row["id"], "output": text}) + "\n")

            await asyncio.gather(*(one(row) for row in csv.DictReader(f)))

    t0, c0 = time.perf_counter(), time.process_time()
    asyncio.run(go())
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {
        "floor_wall_s": round(wall, 2),
        "floor_efficiency": round(ideal / wall, 3),
        "floor_cpu_us_per_record": round(cpu / n * 1e6, 1),
    }


if __name__ == "__main__":
    main()
