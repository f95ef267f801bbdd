"""The queue worker: claims, failures, SIGKILL takeover, several workers on one queue
(SQLite and Postgres), and a restart of `llmflow serve` mid-run."""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from llmflow.engine.inputs import Start
from llmflow.engine.scheduler import decide
from llmflow.engine.states import AttemptStatus, RunStatus
from llmflow.errors import ResumeRefusedError
from llmflow.runtime import RunRequest, Worker, build_runtime

from .helpers import (
    EXAMPLES,
    ServeProcess,
    base_env,
    completed_steps,
    event_types,
    free_port,
    pg_schema,
    wait_http,
    wait_until,
)

REVIEW = str(EXAMPLES / "review")
STEPS = ["classify", "critics", "report", "save"]


@pytest.fixture(params=["sqlite", "postgres"])
def store_env(request: pytest.FixtureRequest, home: Path) -> Iterator[dict[str, str]]:
    if request.param == "postgres":
        with pg_schema() as url:
            yield base_env(home, LLMFLOW_DATABASE_URL=url)
    else:
        yield base_env(home)


def runtime(env: dict[str, str]) -> Any:
    return build_runtime(env=env)


def test_process_available_executes_the_queue(home: Path) -> None:
    rt = runtime(base_env(home))
    try:
        ids = [rt.create_run(REVIEW, {"text": f"t{i}"}).id for i in range(3)]
        w = Worker(rt, concurrency=2)
        done = asyncio.run(w.process_available())
        assert sorted(done) == sorted(ids)
        assert all(rt.get(i).status == "COMPLETED" for i in ids)
        assert w.status()["processed"] == 3
    finally:
        rt.close()


def test_a_run_that_cannot_start_is_failed_not_claimed_forever(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt = runtime(base_env(home))
    try:
        rid = rt.create_run(REVIEW, {"text": "x"}).id

        async def refuse(run_id: str, **kw: Any) -> Any:
            raise ResumeRefusedError("flow 'review' changed since the run started", hint="restore it")

        monkeypatch.setattr(rt, "execute", refuse)
        w = Worker(rt)
        assert asyncio.run(w.process_available()) == [rid]
        rec = rt.get(rid)
        assert rec.status == "FAILED" and "changed since the run started" in (rec.error or "")
        assert rec.owner is None
        assert asyncio.run(w.process_available()) == []
    finally:
        rt.close()


def test_a_run_whose_execution_broke_mid_step_is_wound_down_not_left_running(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt = runtime(base_env(home))
    try:
        rid = rt.create_run(REVIEW, {"text": "x"}).id

        async def broke(run_id: str, **kw: Any) -> Any:
            # the driver got as far as starting the first step (its events are durable),
            # then an internal error escaped it
            d = decide(rt.state_of(rt.get(run_id)), Start(rt.owner), rt.clock.now())
            rt.record(run_id, d.events)
            raise RuntimeError("boom")

        monkeypatch.setattr(rt, "execute", broke)
        assert asyncio.run(Worker(rt).process_available()) == [rid]
        rec = rt.get(rid)
        assert rec.status == RunStatus.FAILED and rec.error == "internal error: RuntimeError: boom"
        assert rec.owner is None
        types = event_types(rt.store, rid)
        assert types[-3:] == ["STEP_CANCELED", "WORKFLOW_FAILED", "RUN_FAILED"]
        assert "ATTEMPT_CANCELED" in types  # the attempt it left running ended, in the log
        assert all(a.status != AttemptStatus.RUNNING for a in rt.store.attempts(rid))
        st = rt.state_of(rec)  # and the log folds without an illegal transition
        assert st.status is RunStatus.FAILED and not st.running
    finally:
        rt.close()


def test_the_worker_polls_and_can_be_woken(home: Path) -> None:
    rt = runtime(base_env(home))

    async def go() -> None:
        w = Worker(rt, check_interval=3600)  # only a wake-up can find the run quickly
        w.start()
        await asyncio.sleep(0.05)
        rid = rt.create_run(REVIEW, {"text": "x"}).id
        w.wake()
        for _ in range(600):
            if rt.get(rid).status == "COMPLETED":
                break
            await asyncio.sleep(0.05)
        assert rt.get(rid).status == "COMPLETED"
        assert w.status()["running"] is True
        await w.stop()
        assert w.status()["running"] is False

    try:
        asyncio.run(go())
    finally:
        rt.close()


def test_a_worker_on_postgres_starts_a_run_another_process_queued_without_waiting_for_its_poll(
    home: Path,
) -> None:
    # the API process (or any other) queues the run through its own store connection; the
    # worker hears of it by LISTEN, not by its next poll (an hour away here)
    with pg_schema() as url:
        env = base_env(home, LLMFLOW_DATABASE_URL=url)
        worker_rt, api_rt = runtime(env), runtime(env)

        async def go() -> None:
            w = Worker(worker_rt, check_interval=3600)
            w.start()
            await asyncio.sleep(0.5)  # the first (empty) poll, and the listener subscribed
            rid = await asyncio.to_thread(lambda: api_rt.create_run(REVIEW, {"text": "x"}).id)
            for _ in range(600):
                if worker_rt.get(rid).status == "COMPLETED":
                    break
                await asyncio.sleep(0.05)
            assert worker_rt.get(rid).status == "COMPLETED"
            assert worker_rt.get(rid).owner is None
            await w.stop()

        try:
            asyncio.run(go())
        finally:
            api_rt.close()
            worker_rt.close()


def _worker(env: dict[str, str], home: Path, name: str, *args: str) -> ServeProcess:
    return ServeProcess(["worker", *args], env, home, home / f"{name}.log").start()


def _assert_executed_once(rt: Any, rid: str) -> None:
    types = event_types(rt.store, rid)
    assert types.count("RUN_STARTED") == 1
    assert Counter(completed_steps(rt.store, rid)) == Counter(STEPS), completed_steps(rt.store, rid)


@pytest.mark.slow
def test_a_killed_workers_run_is_taken_over_and_no_step_runs_twice(
    store_env: dict[str, str], home: Path
) -> None:
    env = {**store_env, "LLMFLOW_MODEL": "fake:?latency=0.5", "LLMFLOW_LEASE_SECONDS": "2"}
    rt = runtime(env)
    a = b = None
    try:
        rid = rt.create_run(REVIEW, {"text": "x"}).id
        a = _worker(env, home, "a")
        # mid-run: one step done and the next one's model call in flight
        wait_until(
            lambda: (
                "classify" in completed_steps(rt.store, rid)
                and event_types(rt.store, rid)[-1]
                in ("LLM_GENERATING", "LLM_LOADING_MODEL", "ATTEMPT_STARTED", "STEP_STARTED")
            ),
            60,
            what="worker a to be mid-run",
        )
        a.kill(signal.SIGKILL)
        assert rt.get(rid).status == "RUNNING"
        b = _worker(env, home, "b")
        wait_until(
            lambda: rt.get(rid).status == "COMPLETED",
            90,
            0.1,
            what=f"worker b to finish the run\n{b.output()}",
        )
        types = event_types(rt.store, rid)
        assert "RUN_RECOVERED" in types and "ATTEMPT_INTERRUPTED" in types
        assert Counter(completed_steps(rt.store, rid)) == Counter(STEPS)
        assert completed_steps(rt.store, rid).count("classify") == 1
        recovered = next(e for e in rt.store.events(rid) if e.type == "RUN_RECOVERED")
        started = next(e for e in rt.store.events(rid) if e.type == "RUN_STARTED")
        assert recovered.payload["owner"] != started.payload["owner"]
    finally:
        for p in (a, b):
            if p is not None:
                p.stop()
        rt.close()


@pytest.mark.slow
def test_two_workers_racing_for_one_queue_execute_each_run_once(
    store_env: dict[str, str], home: Path
) -> None:
    env = {**store_env, "LLMFLOW_MODEL": "fake:?latency=0.05", "WORKER_CHECK_INTERVAL": "0.05"}
    rt = runtime(env)
    workers: list[ServeProcess] = []
    try:
        ids = [rt.create_run(REVIEW, {"text": f"t{i}"}).id for i in range(16)]
        workers = [_worker(env, home, f"w{i}", "--concurrency", "3") for i in range(2)]
        wait_until(
            lambda: all(rt.get(i).status == "COMPLETED" for i in ids),
            120,
            0.2,
            what="every run to complete\n" + "\n".join(w.output() for w in workers),
        )
        owners = set()
        for rid in ids:
            _assert_executed_once(rt, rid)
            assert "RUN_RECOVERED" not in event_types(rt.store, rid)
            owners.add(next(e for e in rt.store.events(rid) if e.type == "RUN_STARTED").payload["owner"])
        assert 1 <= len(owners) <= 2
    finally:
        for w in workers:
            w.stop()
        rt.close()


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_restarting_serve_mid_run_resumes_the_run(home: Path, sig: int) -> None:
    port = free_port()
    env = base_env(home, LLMFLOW_MODEL="fake:?latency=0.5", LLMFLOW_LEASE_SECONDS="2")
    args = ["serve", "--port", str(port), "--flows", REVIEW]
    url = f"http://127.0.0.1:{port}"
    first = ServeProcess(args, env, home, home / "serve1.log").start()
    second = None
    rt = runtime(env)
    try:
        wait_http(url, proc=first)
        rid = httpx.post(f"{url}/api/v1/runs", json={"flow": "review", "inputs": {"text": "x"}}).json()["id"]
        wait_until(lambda: "classify" in completed_steps(rt.store, rid), 60, what="the run to be mid-way")
        first.kill(sig)
        assert rt.get(rid).status == "RUNNING"
        if (
            sig == signal.SIGTERM
        ):  # graceful: the worker released the run (uvicorn re-raises SIGTERM once shut down)
            assert "Application shutdown complete" in first.output() and rt.get(rid).owner is None
        # after SIGKILL the lease (2 s here) has to expire before the new server takes the run
        second = ServeProcess(args, env, home, home / "serve2.log").start()
        wait_http(url, proc=second)
        wait_until(
            lambda: httpx.get(f"{url}/api/v1/runs/{rid}").json()["status"] == "COMPLETED",
            90,
            0.1,
            what="the restarted server to finish the run",
        )
        _assert_executed_once(rt, rid)
        assert "RUN_RECOVERED" in event_types(rt.store, rid)
    finally:
        first.stop()
        if second is not None:
            second.stop()
        rt.close()


def test_worker_command_once_drains_the_queue(home: Path) -> None:
    env = base_env(home)
    rt = runtime(env)
    try:
        rid = rt.create_run(REVIEW, {"text": "x"}, RunRequest(models={"*": "fake:"})).id
        p = ServeProcess(["worker", "--once"], env, home, home / "once.log").start()
        assert p.proc is not None and p.proc.wait(60) == 0, p.output()
        p.stop()
        assert rt.get(rid).status == "COMPLETED"
        assert f"run {rid} COMPLETED" in p.output()
    finally:
        rt.close()
