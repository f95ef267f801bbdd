"""The batch driver: streams jobs through a bounded set of in-flight runs on one Runtime.

Every job is a run in the event log (``batch_id`` set, run id from :mod:`.jobs`, the job
id in its metadata). The store is the truth about which jobs are done: on ``--resume``
the driver reads each job run's status, never re-runs a COMPLETED one, continues the ones
that were in flight (the runtime recovers RUNNING runs: in-flight attempts are marked
interrupted and run again), and with ``--retry-failed`` re-runs the FAILED / CANCELED
ones in place (the failed steps and what depends on them; completed steps keep their
outputs), or as a fresh run ``<run id>~rN`` when there is nothing to re-run in place.

Concurrency: at most ``max_workers`` jobs run at once in one asyncio loop, records are
read lazily and rows written as jobs finish, so memory is bounded by ``max_workers``
plus the set of job ids (see docs/batch.md). Executors: :class:`LocalExecutor` here,
:class:`llmflow.batch.ray_executor.RayExecutor` for Ray.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llmflow.batch.jobs import Job, iter_jobs
from llmflow.batch.output import ResultFile, row_from_run
from llmflow.batch.plan import BatchPlan
from llmflow.batch.progress import Counters
from llmflow.batch.summary import driver_alive
from llmflow.engine.events import EventType as E
from llmflow.engine.events import NewEvent
from llmflow.engine.payloads import RunFailed
from llmflow.engine.states import RUN_TERMINAL, RunStatus, StepStatus
from llmflow.errors import BatchError, FlowValidationError, LlmflowError
from llmflow.runtime import RunRequest
from llmflow.store.base import RunRecord

if TYPE_CHECKING:
    from llmflow.runtime.ports import RunService

log = logging.getLogger("llmflow.batch")
TERMINAL = RUN_TERMINAL
RETRYABLE = frozenset({RunStatus.FAILED, RunStatus.CANCELED})
HEARTBEAT_SECONDS = 2.0
_RETRY = re.compile(r"~r(\d+)$")


def base_run_id(run_id: str) -> tuple[str, int]:
    m = _RETRY.search(run_id)
    return (run_id[: m.start()], int(m.group(1))) if m else (run_id, 1)


def latest_runs(statuses: dict[str, str]) -> dict[str, tuple[str, str]]:
    """base run id -> (latest run id, status): a job's latest run decides its state."""
    out: dict[str, tuple[str, str, int]] = {}
    for rid, st in statuses.items():
        base, n = base_run_id(rid)
        if base not in out or n > out[base][2]:
            out[base] = (rid, st, n)
    return {b: (r, s) for b, (r, s, _) in out.items()}


class LocalExecutor:
    """Runs jobs on the driver's own Runtime, in its event loop."""

    def __init__(self, rt: RunService, force: bool = False) -> None:
        self.rt = rt
        self.force = force  # continue runs whose flow changed (--force)

    async def execute(self, run_id: str) -> None:
        await self.rt.execute(run_id, force=self.force)

    async def close(self) -> None:
        return None


@dataclass
class BatchResult:
    batch_id: str
    status: str  # COMPLETED | STOPPED
    total: int | None
    completed: int
    failed: int
    unfinished: int
    output: str
    tokens: int
    cost: float
    elapsed: float
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class BatchDriver:
    def __init__(
        self, rt: RunService, plan: BatchPlan, *, executor: Any = None, view: Any = None, on_row: Any = None
    ) -> None:
        self.rt = rt
        self.plan = plan
        self.executor = executor or LocalExecutor(rt, force=plan.request.force)
        self.view = view
        self.on_row = on_row
        self.counters = Counters(total=plan.batch.total)
        self.file = ResultFile(plan.output, plan.output_keys)
        self._stop: str | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._unfinished = 0

    # -- control ---------------------------------------------------------------------------
    def interrupt(self, reason: str = "interrupted") -> None:
        """Stop now: no new job starts, in-flight jobs are abandoned mid-run (their runs stay
        RUNNING with the lease released, and are recovered by ``--resume``)."""
        self._stop = self._stop or reason
        for t in list(self._tasks):
            t.cancel()

    # -- preparation -----------------------------------------------------------------------
    def _take_over(self) -> dict[str, tuple[str, str]]:
        rt, b = self.rt, self.plan.batch
        now = rt.clock.now()
        if self.plan.resumed and b.status == "RUNNING" and b.owner and b.owner != rt.owner:
            if driver_alive(b.owner, b.updated_at, now) and not self.plan.request.force:
                raise BatchError(
                    f"batch {b.id} is being run by another process ({b.owner}, heartbeat {now - b.updated_at:.0f}s ago)",
                    hint="wait for it or stop it; pass --force if that process is gone",
                )
        latest = latest_runs(rt.store.batch_run_statuses(b.id))
        for rid, st in latest.values():
            if st not in TERMINAL:  # in flight when the previous driver died: free its lease
                rec = rt.store.get_run(rid)
                if rec is not None and rec.owner and rec.owner != rt.owner:
                    rt.store.release(rid, rec.owner)
        rt.store.update_batch(b.id, status="RUNNING", owner=rt.owner, updated_at=now, ended_at=None)
        return latest

    def _open_output(self, latest: dict[str, tuple[str, str]]) -> set[str]:
        """Open the result file and add the rows of finished jobs it lacks; returns the base
        run ids to run again (``--retry-failed``)."""
        retry = (
            {b for b, (_, st) in latest.items() if st in RETRYABLE}
            if self.plan.request.retry_failed
            else set()
        )
        self.file.open((lambda row: base_run_id(str(row.get("run_id") or ""))[0] in retry) if retry else None)
        c = self.counters
        for base, (rid, st) in latest.items():
            if st not in TERMINAL or base in retry:
                continue
            if rid not in self.file.run_ids:
                rec = self.rt.store.get_run(rid)
                if rec is not None:
                    self._row(rec)
            if st == RunStatus.COMPLETED:
                c.completed += 1
            else:
                c.failed += 1
        # usage so far: every top-level run's, minus the runs about to run (again), whose
        # totals are added when they finish
        summary = self.rt.store.batch_summary(self.plan.id)
        c.tokens, c.cost = summary["tokens_in"] + summary["tokens_out"], summary["cost"]
        for base, (rid, st) in latest.items():
            if st not in TERMINAL or base in retry:
                rec = self.rt.store.get_run(rid)
                if rec is not None:
                    c.tokens -= rec.tokens_in + rec.tokens_out
                    c.cost -= rec.cost
        return retry

    def _row(self, rec: RunRecord) -> dict[str, Any]:
        row = row_from_run(rec)
        self.file.write(row)
        if self.on_row is not None:
            self.on_row(row)
        return row

    # -- one job ---------------------------------------------------------------------------
    def _options(self, job: Job) -> RunRequest:
        spec = self.plan.batch.spec
        md = {
            "job_id": job.job_id,
            "record_id": job.record_id,
            "variant": job.variant.label,
            "parameters": job.variant.values,
            "index": job.index,
        }
        return RunRequest(
            models=dict(spec.get("models") or {}),
            batch_id=self.plan.id,
            run_id=job.run_id,
            metadata=md,
            run_type="batch",
        )

    def _create(self, job: Job, run_id: str) -> bool:
        """Create the job's run; a record that cannot feed the flow becomes a FAILED run."""
        loaded = self.plan.flow_for(self.rt, job.variant)
        opts = self._options(job)
        opts.run_id = run_id
        error = job.error
        if error is None:
            try:
                # created holding the lease when this process executes it (another executor,
                # Ray's actors, claims it itself)
                local = isinstance(
                    self.executor, LocalExecutor
                )  # written with its first events, in the group commit
                self.rt.create_run(loaded, job.inputs, opts, claim=local, defer=local)
                return True
            except FlowValidationError as exc:
                error = "invalid record: " + "; ".join(d.message for d in exc.diagnostics)
        now = self.rt.clock.now()
        rec = RunRecord(
            id=run_id,
            flow_name=loaded.flow.name,
            created_at=now,
            spec=loaded.record(),
            fingerprint=loaded.flow.fingerprint(),
            options=opts.to_dict(),
            metadata=opts.metadata,
            batch_id=self.plan.id,
            run_type="batch",
        )
        self.rt.record_new_run(
            rec,
            [
                NewEvent(E.RUN_CREATED, f"Run created for flow {loaded.flow.name}"),
                NewEvent(E.RUN_FAILED, f"Run failed: {error}", payload=RunFailed(error=error)),  # type: ignore[call-arg]  # engine payloads take their fields by keyword (engine/payloads.py)
            ],
        )
        return False

    def _rerun_in_place(self, run_id: str) -> bool:
        """Re-run a FAILED run's failed or canceled steps whose needs completed, with
        everything downstream of them. False when that is not possible (a canceled run, a
        run that never started): the job then gets a fresh run."""
        rt = self.rt
        rec = rt.get(run_id)
        if rec.status != RunStatus.FAILED or not rec.spec.get("flow") or rec.started_at is None:
            return False
        st = rt.state_of(rec)
        ok = (StepStatus.COMPLETED, StepStatus.SKIPPED)
        frontier = [
            n.id
            for n in st.nodes.values()
            if n.scope is None
            and n.status in (StepStatus.FAILED, StepStatus.CANCELED)
            and all(st.nodes[d].status in ok for d in n.needs if d in st.nodes)
        ]
        for nid in frontier:
            rt.request_rerun(run_id, nid, downstream=True)
        return bool(frontier)

    async def _job(self, job: Job, latest: tuple[str, str] | None) -> None:
        run_id = job.run_id
        start = True
        if latest is None:
            start = self._create(job, run_id)
        elif latest[1] in RETRYABLE:
            run_id = latest[0]
            if not self._rerun_in_place(run_id):
                run_id = f"{job.run_id}~r{base_run_id(run_id)[1] + 1}"
                start = self._create(job, run_id)
        else:
            run_id = latest[0]
        if start:
            await self.executor.execute(run_id)
        rec = self.rt.store.get_run(run_id)
        if rec is None or rec.status not in TERMINAL:
            self._unfinished += 1
            return
        self._row(rec)
        self.counters.add(rec.status, rec.tokens_in + rec.tokens_out, rec.cost)
        if (
            rec.status != RunStatus.COMPLETED
            and self.plan.request.error_policy == "stop"
            and self._stop is None
        ):
            self._stop = f"job {job.job_id} {rec.status.lower()}: {rec.error or ''}".strip()

    async def _guarded(self, job: Job, latest: tuple[str, str] | None) -> None:
        self.counters.running += 1
        try:
            await self._job(job, latest)
        except asyncio.CancelledError:
            self._unfinished += 1
            raise
        except LlmflowError as exc:
            log.warning("batch %s: job %s did not run: %s", self.plan.id, job.job_id, exc.message)
            self._unfinished += 1
        except Exception:  # noqa: BLE001 - a bug in one job must not lose the others
            log.exception("batch %s: job %s failed unexpectedly", self.plan.id, job.job_id)
            self._unfinished += 1
        finally:
            self.counters.running -= 1
            if self.view is not None:
                self.view.refresh()

    # -- the loop --------------------------------------------------------------------------
    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            try:
                self.rt.store.update_batch(self.plan.id, updated_at=self.rt.clock.now())
            except LlmflowError:
                log.warning("batch %s: heartbeat failed", self.plan.id, exc_info=True)
            if self.view is not None:
                self.view.refresh()

    async def run(self) -> BatchResult:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        latest = self._take_over()
        retry = self._open_output(latest)
        beat = asyncio.create_task(self._heartbeat())
        limit = max(1, int(self.plan.request.max_workers))
        try:
            for job in iter_jobs(self.plan.id, self.plan.rows(), self.plan.mapper, self.plan.variants):
                if self._stop is not None:
                    break
                prev = latest.get(job.run_id)
                if prev is not None and prev[1] in TERMINAL and job.run_id not in retry:
                    continue
                while len(self._tasks) >= limit:
                    await asyncio.wait(self._tasks, return_when=asyncio.FIRST_COMPLETED)
                    if self._stop is not None:
                        break
                if self._stop is not None:
                    break
                task = asyncio.create_task(self._guarded(job, prev))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            while self._tasks:
                await asyncio.wait(set(self._tasks))
        except asyncio.CancelledError:
            self.interrupt()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self._finish(loop.time() - t0)
            raise
        finally:
            beat.cancel()
            await self.executor.close()
        return self._finish(loop.time() - t0)

    def _finish(self, elapsed: float) -> BatchResult:
        c = self.counters
        done = self._stop is None and self._unfinished == 0
        status = "COMPLETED" if done else "STOPPED"
        reason = None if done else (self._stop or f"{self._unfinished} job(s) did not finish")
        self.file.close(completed=done)
        now = self.rt.clock.now()
        md = {**self.plan.batch.metadata, "reason": reason}
        self.rt.store.update_batch(
            self.plan.id, status=status, ended_at=now, updated_at=now, owner=None, metadata=md
        )
        if self.view is not None:
            self.view.refresh(force=True)
        return BatchResult(
            self.plan.id,
            status,
            c.total,
            c.completed,
            c.failed,
            (c.total - c.finished) if c.total is not None else self._unfinished,
            str(self.plan.output),
            c.tokens,
            c.cost,
            elapsed,
            reason,
        )


async def run_batch(
    rt: RunService, plan: BatchPlan, *, executor: Any = None, view: Any = None, on_row: Any = None
) -> BatchResult:
    driver = BatchDriver(rt, plan, executor=executor, view=view, on_row=on_row)
    return await driver.run()
