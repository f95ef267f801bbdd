"""The service under load, on loopback: a real `llmflow serve` with the fake model.

    python bench/service.py [--runs 200] [--ws-clients 50] [--latency 0.05] [--workers 16]
                            [--external-workers N] [--postgres postgresql://user@host/db]

With ``--external-workers N`` the server runs no worker (``--workers 0``) and N
``llmflow worker`` processes execute the runs: the API process then only serves requests.

1. submits ``--runs`` runs of ``examples/review`` (4 steps, 5 model calls each) over HTTP,
   one ``POST /api/v1/runs`` each (20 at once), or ``--bulk N`` per ``POST /api/v1/runs/bulk``;
2. meanwhile ``--ws-clients`` WebSocket clients each follow one run from its first event
   (``/api/v1/runs/{id}/ws?after=0``) until it ends, and as many SSE clients follow other
   runs (``/api/v1/runs/{id}/events/stream``);
3. meanwhile ``--readers`` clients (4) read ``GET /api/v1/runs/{id}`` of random runs in a
   loop, pausing ``--read-interval`` seconds between reads (0 by default: back to back, which
   makes them a load of their own on the API process's CPU).

Then it checks that every run completed, that no event was lost (each run's log is
contiguous from seq 1 to the run's last_seq and every step completed exactly once), and that
each WebSocket and SSE client got every event of its run, in order, once. Prints the figures:
runs/s from the first submission until the last run finished; the ideal rate the chosen
concurrency allows (slots / the 3 model-call latencies a run waits in sequence) and the ratio;
CPU milliseconds per run of the API process, of each worker, of Postgres (every process named
postgres on this machine, from /proc: other databases' clients included) and of this client,
and how many cores they kept busy. Exits 1 if a check fails. Counts only the runs it submitted
(the store may hold earlier ones). Not a test: timings belong here, never in tests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import connect

ROOT = Path(__file__).resolve().parents[1]
LLMFLOW = str(Path(sys.executable).parent / "llmflow")
STEPS = ["classify", "critics", "report", "save"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_of(pid: int) -> float:
    """CPU seconds (user + system, with reaped children) a process has used so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def postgres_cpu() -> float | None:
    """CPU seconds of every process named postgres on this machine (the postmaster's reaped
    children included): the server's whole cost, other databases' clients included. None
    when there is no local Postgres to read."""
    total, found = 0.0, False
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if (d / "comm").read_text().strip() == "postgres":
                    total += cpu_of(int(d.name))
                    found = True
            except OSError:
                continue
    return total if found else None


def pct(values: list[float], q: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, int(round(q * (len(v) - 1))))] if v else float("nan")


async def submit(client: httpx.AsyncClient, n: int, ids: list[str], limit: int = 20, bulk: int = 0) -> float:
    """``n`` runs: one ``POST /api/v1/runs`` each, ``limit`` at once; with ``bulk``, ``bulk``
    runs per ``POST /api/v1/runs/bulk``, 4 requests at once."""
    sem = asyncio.Semaphore(4 if bulk else limit)
    t0 = time.perf_counter()

    def run(i: int) -> dict[str, Any]:
        return {"flow": "review", "inputs": {"text": f"article {i}"}}

    async def one(i: int) -> None:
        async with sem:
            r = await client.post("/api/v1/runs", json=run(i))
            r.raise_for_status()
            ids.append(r.json()["id"])

    async def many(first: int) -> None:
        async with sem:
            body = {"runs": [run(i) for i in range(first, min(n, first + bulk))]}
            r = await client.post("/api/v1/runs/bulk", json=body)
            r.raise_for_status()
            ids.extend(x["id"] for x in r.json()["runs"])

    if bulk:
        await asyncio.gather(*(many(i) for i in range(0, n, bulk)))
    else:
        await asyncio.gather(*(one(i) for i in range(n)))
    return time.perf_counter() - t0


async def follow(ws_url: str, run_id: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    async with connect(f"{ws_url}/api/v1/runs/{run_id}/ws?after=0", max_size=2**24) as ws:
        async for raw in ws:
            msg = json.loads(raw)
            if msg["type"] == "event":
                events.append(msg["event"])
            elif msg["type"] == "end":
                return events
    return events


async def follow_sse(base: str, run_id: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    async with (
        httpx.AsyncClient(base_url=base, timeout=None) as c,
        c.stream("GET", f"/api/v1/runs/{run_id}/events/stream") as r,
    ):
        data: list[str] = []
        async for line in r.aiter_lines():
            if line.startswith("data: "):
                data.append(line[6:])
            elif line == "" and data:
                e = json.loads("\n".join(data))
                data = []
                events.append(e)
                if e["type"] in ("RUN_COMPLETED", "RUN_FAILED", "RUN_CANCELED"):
                    return events
    return events


async def sample_reads(
    client: httpx.AsyncClient, ids: list[str], stop: asyncio.Event, lat: list[float], interval: float
) -> None:
    """A dashboard-like reader: ``GET /runs/{id}`` of a random run, then a pause of
    ``interval`` seconds (0: back to back, a load of its own that takes CPU from the service)."""
    while not stop.is_set():
        if not ids:
            await asyncio.sleep(0.01)
            continue
        rid = random.choice(ids)
        t0 = time.perf_counter()
        r = await client.get(f"/api/v1/runs/{rid}")
        lat.append(time.perf_counter() - t0)
        r.raise_for_status()
        if interval:
            await asyncio.sleep(interval)


async def main(args: argparse.Namespace) -> int:
    home = Path(tempfile.mkdtemp(prefix="llmflow-bench-"))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMFLOW_")}
    env.update(
        LLMFLOW_HOME=str(home),
        LLMFLOW_MODEL=f"fake:?latency={args.latency}",
        LLMFLOW_BLOCK_REAL_MODELS="1",
        WORKER_CHECK_INTERVAL="0.2",
    )
    if args.postgres:
        env["LLMFLOW_DATABASE_URL"] = args.postgres
    log = (home / "serve.log").open("wb")
    in_process = 0 if args.external_workers else args.workers
    proc = subprocess.Popen(
        [
            LLMFLOW,
            "serve",
            "--port",
            str(port),
            "--flows",
            str(ROOT / "examples" / "review"),
            "--workers",
            str(in_process),
            "--log-level",
            "warning",
        ],
        env=env,
        cwd=home,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    workers = [
        subprocess.Popen(
            [LLMFLOW, "worker", "--concurrency", str(args.workers)],
            env=env,
            cwd=home,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        for _ in range(args.external_workers)
    ]
    base, ws_url = f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}"
    failures: list[str] = []
    try:
        async with httpx.AsyncClient(
            base_url=base, timeout=60, limits=httpx.Limits(max_connections=100)
        ) as client:
            for _ in range(300):
                try:
                    if (await client.get("/health")).status_code == 200:
                        break
                except httpx.HTTPError:
                    await asyncio.sleep(0.1)
            else:
                raise SystemExit(f"the server did not start; see {home / 'serve.log'}")
            # the same read with nothing else going on, for comparison
            warm = (
                await client.post(
                    "/api/v1/runs", json={"flow": "review", "inputs": {"text": "warm-up"}, "wait": True}
                )
            ).json()["id"]
            idle: list[float] = []
            for _ in range(100):
                t = time.perf_counter()
                (await client.get(f"/api/v1/runs/{warm}")).raise_for_status()
                idle.append(time.perf_counter() - t)

            async def finished() -> int:
                n = 0
                for status in ("COMPLETED", "FAILED"):
                    page = await client.get("/api/v1/runs", params={"limit": 1, "status": status})
                    n += page.json()["total"]
                return n

            before = await finished()  # the store may hold runs of earlier invocations
            ids: list[str] = []
            stop = asyncio.Event()
            lat: list[float] = []
            readers = [
                asyncio.create_task(sample_reads(client, ids, stop, lat, args.read_interval))
                for _ in range(args.readers)
            ]
            procs = {"API": proc.pid, **{f"worker {i + 1}": w.pid for i, w in enumerate(workers)}}
            cpu0 = {k: cpu_of(pid) for k, pid in procs.items()}
            pg0 = postgres_cpu()
            me0 = time.process_time()
            t0 = time.perf_counter()
            submit_s = await submit(client, args.runs, ids, bulk=args.bulk)
            followers = [asyncio.create_task(follow(ws_url, rid)) for rid in ids[: args.ws_clients]]
            sse_ids = ids[args.ws_clients : 2 * args.ws_clients]
            sse_followers = [asyncio.create_task(follow_sse(base, rid)) for rid in sse_ids]
            while await finished() < before + args.runs:
                await asyncio.sleep(0.1)
            wall = time.perf_counter() - t0
            cpu = {k: cpu_of(pid) - cpu0[k] for k, pid in procs.items()}
            pg1 = postgres_cpu()
            pg = pg1 - pg0 if pg0 is not None and pg1 is not None else None
            me = time.process_time() - me0
            stop.set()
            await asyncio.gather(*readers)
            streams = await asyncio.wait_for(asyncio.gather(*followers), 120)
            sse_streams = await asyncio.wait_for(asyncio.gather(*sse_followers), 120)

            # checks: every run completed, no event lost, every WS client saw its whole run
            n_events = 0
            for rid in ids:  # (the warm-up run is not counted)
                v = (await client.get(f"/api/v1/runs/{rid}")).json()
                evs = (await client.get(f"/api/v1/runs/{rid}/events", params={"limit": 10_000})).json()[
                    "events"
                ]
                n_events += len(evs)
                seqs = [e["seq"] for e in evs]
                done_steps = sorted(e["step_id"] for e in evs if e["type"] == "STEP_COMPLETED")
                if v["status"] != "COMPLETED":
                    failures.append(f"run {rid} is {v['status']}")
                if seqs != list(range(1, len(seqs) + 1)) or evs[-1]["type"] != "RUN_COMPLETED":
                    failures.append(
                        f"run {rid}: the log is not contiguous or does not end with RUN_COMPLETED"
                    )
                if done_steps != sorted(STEPS):
                    failures.append(f"run {rid}: steps completed {done_steps}")
            for rid, got in zip(ids[: args.ws_clients], streams, strict=True):
                stored = (await client.get(f"/api/v1/runs/{rid}/events", params={"limit": 10_000})).json()[
                    "events"
                ]
                if got != stored:
                    failures.append(
                        f"ws client of run {rid}: got {len(got)} events, the log has {len(stored)} (or order differs)"
                    )
            for rid, got in zip(sse_ids, sse_streams, strict=True):
                stored = (
                    await client.get(f"/api/v1/runs/{rid}/events", params={"limit": 10_000, "tokens": True})
                ).json()["events"]
                if [e["seq"] for e in got] != [e["seq"] for e in stored]:
                    failures.append(
                        f"sse client of run {rid}: got {len(got)} events, the log has {len(stored)} (or order differs)"
                    )
            ws_events = sum(len(s) for s in streams)
            sse_events = sum(len(s) for s in sse_streams)
    finally:
        for p in (proc, *workers):
            p.terminate()
        for p in (proc, *workers):
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
        log.close()

    where = (
        f"{args.external_workers} `llmflow worker` processes"
        if args.external_workers
        else "the in-process worker"
    )
    print(
        f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} cores (the API process, the workers, Postgres and this client share them)"
    )
    print(
        f"store: {'postgres' if args.postgres else 'sqlite'}; model fake:?latency={args.latency}; {where}, {args.workers} runs at once each"
    )
    # 3 model-call stages in sequence per run: a slot finishes at most one run per 3 latencies
    slots = args.workers * max(1, args.external_workers)
    per_run = 3 * args.latency
    ideal = slots / per_run
    rate = args.runs / wall
    best = args.runs / (-(-args.runs // slots) * per_run)  # whole waves: what N runs allow at best
    print(
        f"runs: {args.runs} submitted in {submit_s:.2f}s ({args.runs / submit_s:.0f}/s); all finished after {wall:.2f}s"
    )
    print(
        f"rate: {rate:.1f} runs/s; ideal {ideal:.0f}/s ({slots} slots, {per_run * 1000:.0f} ms per run; {best:.0f}/s for {args.runs} runs in whole waves); ratio {rate / ideal:.0%} of ideal"
    )
    n = args.runs
    parts = [f"{k} {v / n * 1000:.2f}" for k, v in cpu.items()]
    total = sum(cpu.values()) + me + (pg or 0.0)
    parts.append(
        f"Postgres {pg / n * 1000:.2f} (every postgres process of the machine)"
        if pg is not None
        else "Postgres n/a (not local)"
    )
    parts.append(f"this client {me / n * 1000:.2f}")
    service = sum(cpu.values()) + (pg or 0.0)
    print(f"CPU ms per run: {', '.join(parts)}; total {total / n * 1000:.2f}")
    print(
        f"CPU ms per run of the service (API + workers{' + Postgres' if pg is not None else ''}, without this client): {service / n * 1000:.2f}; {os.cpu_count()} cores given to it alone would allow at most {(os.cpu_count() or 1) / (service / n):.0f} runs/s"
    )
    print(
        f"CPU busy over the wall: {total / wall:.2f} of {os.cpu_count()} cores ({', '.join(f'{k} {v / wall:.2f}' for k, v in cpu.items())}{f', Postgres {pg / wall:.2f}' if pg is not None else ''}, client {me / wall:.2f})"
    )
    print(
        f"events: {n_events} stored ({n_events / args.runs:.0f} per run); lost: {'none' if not failures else 'SEE BELOW'}"
    )
    print(
        f"websocket: {args.ws_clients} clients received {ws_events} events, each its run's whole log in order: {'yes' if not any('ws client' in f for f in failures) else 'NO'}"
    )
    print(
        f"sse: {len(sse_streams)} clients received {sse_events} events, each its run's whole log in order: {'yes' if not any('sse client' in f for f in failures) else 'NO'}"
    )
    print(
        f"GET /api/v1/runs/{{id}} under load: n={len(lat)} ({len(lat) / wall:.0f}/s) p50 {pct(lat, 0.5) * 1000:.1f} ms, p99 {pct(lat, 0.99) * 1000:.1f} ms, mean {statistics.fmean(lat) * 1000:.1f} ms"
    )
    print(
        f"GET /api/v1/runs/{{id}} idle:       n={len(idle)} p50 {pct(idle, 0.5) * 1000:.1f} ms, p99 {pct(idle, 0.99) * 1000:.1f} ms"
    )
    for f in failures[:20]:
        print(f"FAIL: {f}")
    return 1 if failures else 0


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=200)
    p.add_argument("--ws-clients", type=int, default=50)
    p.add_argument("--latency", type=float, default=0.05)
    p.add_argument("--workers", type=int, default=16)
    p.add_argument(
        "--external-workers", type=int, default=0, help="run the runs in N `llmflow worker` processes instead"
    )
    p.add_argument(
        "--bulk", type=int, default=0, help="submit N runs per POST /api/v1/runs/bulk (0: one POST per run)"
    )
    p.add_argument("--readers", type=int, default=4, help="clients reading GET /runs/{id} meanwhile")
    p.add_argument(
        "--read-interval",
        type=float,
        default=0.0,
        help="each reader's pause between reads (0: back to back, as before 2026-11-28)",
    )
    p.add_argument("--postgres", default=None, help="a Postgres URL (its search_path schema is written to)")
    raise SystemExit(asyncio.run(main(p.parse_args())))
