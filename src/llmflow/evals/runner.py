"""Running an evaluation: a batch of the flow over the data, then every job's run scored.

The evaluation *is* a batch (same id): :mod:`llmflow.batch` runs the records (bounded
concurrency, progress, ``--max-records``, error policy, resumable after ``kill -9``). Each
job's run is scored as soon as it finishes, and once more at the end a sweep scores every
finished job whose result is missing or was scored on an earlier outcome of its run (a
resumed or retried job). A result is written with an upsert keyed by the job
(:mod:`llmflow.store.evals`), so after any number of interruptions and resumes every
record (x variant) has exactly one result, scored on its run's final outcome.

Variants: every list under the flow's ``parameters:`` is an axis (as in batch mode), and
``variants={"model": [...], "style": [...]}`` adds axes. An axis named ``model`` also sets
the model of every step of that variant's runs (a per-run model option, which beats
``LLMFLOW_MODEL``).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmflow.batch.datasets import BadRow
from llmflow.batch.jobs import get_path, hydra_value
from llmflow.batch.plan import BatchPlan, BatchRequest, plan_batch
from llmflow.batch.runner import BatchDriver, BatchResult, base_run_id, latest_runs
from llmflow.engine.states import RUN_TERMINAL, RunStatus
from llmflow.errors import BatchError, EvalError, LlmflowError
from llmflow.evals.declare import parse_metrics
from llmflow.evals.metrics import Metric, Sample, ScoringContext
from llmflow.evals.summary import summarize
from llmflow.model.loader import LoadedFlow
from llmflow.model.spec import Flow
from llmflow.store.evals import EvalRecord, EvalResult

if TYPE_CHECKING:
    from llmflow.runtime.ports import RunService
    from llmflow.store.base import Store

log = logging.getLogger("llmflow.evals")
EXPECTED_COLUMNS = ("expected", "expected_output", "label", "answer", "target", "reference")


def new_eval_id() -> str:
    return "eval-" + time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)


@dataclass
class EvalRequest:
    flow: str | Path | Flow | LoadedFlow | None = None  # None: resume the stored one
    data: str | None = None
    data_format: str | None = None
    records: list[Any] | None = None  # Python API / REST: the records themselves
    columns: dict[str, str] = field(default_factory=dict)
    record_id: str | None = None
    expected: str | None = None  # the column holding the expected value
    metrics: list[Any] = field(default_factory=list)
    declared: dict[str, Any] = field(default_factory=dict)  # metrics of an eval file, by name
    variants: dict[str, list[Any]] = field(default_factory=dict)
    max_records: int | None = None
    shuffle: bool = False
    seed: int | None = None
    max_workers: int = 8
    error_policy: str = "continue"
    overrides: list[str] = field(default_factory=list)
    models: dict[str, str] = field(default_factory=dict)
    min_pass_rate: float | None = None
    resume: str | None = None
    retry_failed: bool = False
    force: bool = False
    eval_id: str | None = None
    allow_code: bool = True  # python metrics (refused for evaluations posted over HTTP)
    default_metrics: list[Any] = field(default_factory=lambda: ["exact"])
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class EvalPlan:
    record: EvalRecord
    batch: BatchPlan
    metrics: list[Metric]
    expected_column: str | None
    resumed: bool

    @property
    def id(self) -> str:
        return self.record.id


@dataclass
class EvalOutcome:
    eval_id: str
    status: str  # COMPLETED | STOPPED
    summary: dict[str, Any]
    batch: BatchResult | None
    reason: str | None = None

    def gate(self, min_pass_rate: float | None) -> list[str]:
        """The variants whose pass rate is under ``min_pass_rate`` (empty: the gate passes)."""
        if min_pass_rate is None:
            return []
        return [
            v["label"] or "(all)"
            for v in self.summary.get("variants", [])
            if v["total"] == 0 or v["pass_rate"] < min_pass_rate - 1e-12
        ]


def _with_axes(loaded: Any, req: EvalRequest, rt: RunService) -> tuple[Any, list[str]]:
    """The flow to batch with the request's variant axes added to its parameters."""
    axes = {k: list(v) for k, v in req.variants.items()}
    for k, v in axes.items():
        if not v:
            raise EvalError(f"variant axis {k!r} has no values", hint="--variants KEY=V1,V2")
    if not axes:
        return req.flow, list(req.overrides)
    if isinstance(req.flow, Flow | LoadedFlow) or (
        isinstance(loaded, LoadedFlow) and loaded.composed is None
    ):
        flow = loaded.flow
        return LoadedFlow(
            flow.model_copy(update={"parameters": {**flow.parameters, **axes}}), None, loaded.source
        ), list(req.overrides)
    extra = [
        f"{'' if k in loaded.flow.parameters else '+'}parameters.{k}={hydra_value(v)}"
        for k, v in axes.items()
    ]
    return req.flow, [*req.overrides, *extra]


def _expected_column(first: Any, wanted: str | None) -> str | None:
    if wanted:
        if isinstance(first, dict) and get_path(first, wanted) is None and wanted not in first:
            raise EvalError(
                f"the data has no column {wanted!r} for --expected", hint=f"columns: {', '.join(first)}"
            )
        return wanted
    if isinstance(first, dict):
        for c in EXPECTED_COLUMNS:
            if c in first:
                return c
    return None


def plan_eval(rt: RunService, req: EvalRequest) -> EvalPlan:
    """Check everything (metrics, flow, data, expected column) and record the evaluation;
    nothing runs. A resumed evaluation reads its metrics and options back from the store."""
    if req.min_pass_rate is not None and not 0.0 <= req.min_pass_rate <= 1.0:
        raise EvalError(f"--min-pass-rate must be in [0, 1] (or a percentage), not {req.min_pass_rate}")
    if req.resume:
        ev = rt.store.get_eval(req.resume)
        if ev is None:
            raise EvalError(f"no evaluation {req.resume!r}", hint="list them with `llmflow evals list`")
        metrics = parse_metrics(ev.spec.get("metrics") or [], allow_code=req.allow_code)
        try:
            batch = plan_batch(
                rt,
                BatchRequest(
                    resume=ev.batch_id or ev.id,
                    retry_failed=req.retry_failed,
                    force=req.force,
                    max_workers=req.max_workers,
                ),
            )
        except BatchError as exc:
            raise EvalError(exc.message, hint=exc.hint) from None
        rt.store.update_eval(ev.id, status="RUNNING", updated_at=rt.clock.now(), ended_at=None)
        return EvalPlan(ev, batch, metrics, ev.spec.get("expected_column"), True)
    if req.flow is None:
        raise EvalError("give a FLOW to evaluate, or --resume EVAL_ID")
    metrics = parse_metrics(
        list(req.metrics) or list(req.default_metrics), req.declared, allow_code=req.allow_code
    )
    if not metrics:
        raise EvalError(
            "no metrics to score with",
            hint="--metric exact (or contains=..., regex=..., judge=..., module:function)",
        )
    loaded = rt.load(req.flow, req.overrides) if not isinstance(req.flow, LoadedFlow) else req.flow
    flow_ref, overrides = _with_axes(loaded, req, rt)
    eval_id = req.eval_id or new_eval_id()
    breq = BatchRequest(
        flow=flow_ref,
        data=req.data,
        data_format=req.data_format,
        columns=dict(req.columns),
        record_id=req.record_id,
        max_records=req.max_records,
        shuffle=req.shuffle,
        seed=req.seed,
        max_workers=req.max_workers,
        error_policy=req.error_policy,
        overrides=overrides,
        models=dict(req.models),
        force=req.force,
        batch_id=eval_id,
        inline_records=list(req.records) if req.records is not None else None,
        output=str(rt.settings.state_dir / "evals" / eval_id / "runs.jsonl"),
    )
    # check the expected column before the batch is recorded: bad input records nothing
    from llmflow.batch import plan as batch_plan

    probe = (
        batch_plan._source(breq, loaded)
        if req.data or req.records is not None
        else batch_plan._source(
            breq, rt.load(flow_ref, overrides) if not isinstance(flow_ref, LoadedFlow) else flow_ref
        )
    )
    from llmflow.batch.datasets import iter_rows

    first = next(iter_rows(probe, limit=1), (0, None))[1]
    column = _expected_column(first if not isinstance(first, BadRow) else None, req.expected)
    needs = [
        m.name for m in metrics if m.NEEDS_EXPECTED and not (m.TYPE == "contains" and "value" in m.options)
    ]
    if needs and column is None and first is not None:
        raise EvalError(
            f"metric {needs[0]!r} compares outputs with an expected value, but the data has no expected column ({', '.join(EXPECTED_COLUMNS[:4])}, ...)",
            hint="name the column with --expected COLUMN, or use metrics that need none (regex, json_schema, judge)",
        )
    try:
        batch = plan_batch(rt, breq)
    except BatchError as exc:
        raise EvalError(exc.message, hint=exc.hint) from None
    now = rt.clock.now()
    spec = {
        "metrics": [m.describe() for m in metrics],
        "expected_column": column,
        "variants": batch.batch.spec.get("variants") or [],
        "axes": {k: list(v) for k, v in req.variants.items()},
        "source": batch.source.label,
        "min_pass_rate": req.min_pass_rate,
        "max_workers": req.max_workers,
    }
    ev = EvalRecord(
        eval_id, batch.loaded.flow.name, "RUNNING", now, now, None, batch.id, spec, {}, dict(req.metadata)
    )
    rt.store.create_eval(ev)
    return EvalPlan(ev, batch, metrics, column, False)


class EvalDriver(BatchDriver):
    """The batch driver, with a variant's ``model`` value as the model of its runs."""

    def _options(self, job: Any) -> Any:
        opts = super()._options(job)
        model = job.variant.values.get("model")
        if isinstance(model, str) and ":" in model:
            opts.models = {**opts.models, "*": model}
        return opts


class Scorer:
    """Scores finished job runs into ``eval_results``, at most ``concurrency`` at once."""

    def __init__(
        self,
        rt: RunService,
        plan: EvalPlan,
        *,
        concurrency: int = 8,
        embed: Any = None,
        on_result: Any = None,
    ) -> None:
        self.rt = rt
        self.plan = plan
        self.ctx = ScoringContext(runtime=rt, eval_id=plan.id, embed=embed)
        self._sem = asyncio.Semaphore(max(1, concurrency))
        self._tasks: set[asyncio.Task[Any]] = set()
        self._expected: dict[int, Any] | None = None
        self.on_result = on_result
        self.scored = 0

    def expected_by_index(self) -> dict[int, Any]:
        """The expected value of every record, by its index in the batch's record order."""
        if self._expected is None:
            col = self.plan.expected_column
            out: dict[int, Any] = {}
            if col:
                for index, row in self.plan.batch.rows():
                    if isinstance(row, dict):
                        v = get_path(row, col)
                        out[index] = v if v is not None else row.get(col)
            self._expected = out
        return self._expected

    def on_row(self, row: dict[str, Any]) -> None:
        """BatchDriver callback (in the loop): score the job's run in the background."""
        task = asyncio.get_running_loop().create_task(self._guarded(str(row.get("run_id") or "")))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _guarded(self, run_id: str) -> None:
        try:
            async with self._sem:
                await self.score_run(run_id)
        except asyncio.CancelledError:
            raise
        except LlmflowError as exc:  # the sweep tries again
            log.warning("evaluation %s: scoring run %s failed: %s", self.plan.id, run_id, exc.message)
        except Exception:  # noqa: BLE001 - one record's scoring bug must not lose the others
            log.exception("evaluation %s: scoring run %s failed", self.plan.id, run_id)

    async def drain(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def cancel(self) -> None:
        for t in list(self._tasks):
            t.cancel()

    async def score_run(self, run_id: str) -> EvalResult | None:
        rec = self.rt.store.get_run(run_id)
        if rec is None or rec.status not in RUN_TERMINAL:
            return None
        md = rec.metadata or {}
        index = md.get("index")
        expected = self.expected_by_index().get(index) if isinstance(index, int) else None
        outputs = (
            rec.outputs
            if isinstance(rec.outputs, dict)
            else ({"result": rec.outputs} if rec.outputs is not None else None)
        )
        output = next(iter(outputs.values())) if outputs and len(outputs) == 1 else outputs
        sample = Sample(
            output=output,
            expected=expected,
            inputs=dict(rec.inputs or {}),
            outputs=outputs,
            record_id=str(md.get("record_id") or rec.id),
            run_id=rec.id,
            run_seq=rec.last_seq,
        )
        scores: dict[str, Any] = {}
        if rec.status != RunStatus.COMPLETED:
            why = f"run {rec.status.lower()}: {rec.error or ''}".strip().rstrip(":")
            for m in self.plan.metrics:
                scores[m.name] = {"score": 0.0, "passed": False, "reason": why}
        else:
            for m in self.plan.metrics:
                scores[m.name] = (await m.score(sample, self.ctx)).to_dict()
        values = [s["score"] for s in scores.values()]
        failed = [f"{n}: {s['reason']}" for n, s in scores.items() if not s["passed"]]
        passed = rec.status == RunStatus.COMPLETED and not failed
        latency = (rec.ended_at - rec.started_at) if rec.ended_at and rec.started_at else None
        result = EvalResult(
            eval_id=self.plan.id,
            job_key=base_run_id(rec.id)[0],
            record_id=sample.record_id,
            variant=str(md.get("variant") or ""),
            parameters=dict(md.get("parameters") or {}),
            run_id=rec.id,
            run_seq=rec.last_seq,
            status=rec.status,
            score=sum(values) / len(values) if values else 0.0,
            passed=passed,
            scores=scores,
            reason=None if passed else "; ".join(failed) or f"run {rec.status.lower()}",
            expected=expected,
            output=output,
            tokens=rec.tokens_in + rec.tokens_out,
            cost=rec.cost,
            latency=latency,
            created_at=self.rt.clock.now(),
        )
        self.rt.store.put_eval_result(result)
        self.scored += 1
        if self.on_result is not None:
            self.on_result(result)
        return result

    async def sweep(self) -> int:
        """Score every finished job whose stored result is missing or stale; returns how many."""
        store = self.rt.store
        have = {r.job_key: r for r in store.eval_results(self.plan.id)}
        todo: list[str] = []
        for base, (rid, st) in latest_runs(store.batch_run_statuses(self.plan.batch.id)).items():
            if st not in RUN_TERMINAL:
                continue
            got = have.get(base)
            if got is None or got.run_id != rid:
                todo.append(rid)
                continue
            rec = store.get_run(rid)
            if rec is not None and rec.last_seq != got.run_seq:
                todo.append(rid)
        for rid in todo:
            self.on_row({"run_id": rid})
        await self.drain()
        return len(todo)


async def run_eval(
    rt: RunService,
    plan: EvalPlan,
    *,
    executor: Any = None,
    view: Any = None,
    embed: Any = None,
    on_result: Any = None,
    driver_hook: Any = None,
) -> EvalOutcome:
    """Run the batch (scoring as jobs finish), sweep, summarise, and record the outcome."""
    scorer = Scorer(
        rt, plan, concurrency=max(1, int(plan.batch.request.max_workers)), embed=embed, on_result=on_result
    )
    driver = EvalDriver(rt, plan.batch, executor=executor, view=view, on_row=scorer.on_row)
    if driver_hook is not None:
        driver_hook(driver, scorer)
    try:
        result = await driver.run()
        await scorer.drain()
        await scorer.sweep()
    except asyncio.CancelledError:
        scorer.cancel()
        finish(rt, plan, None, "interrupted")
        raise
    reason = result.reason if result.status != "COMPLETED" else None
    return finish(rt, plan, result, reason)


def finish(rt: RunService, plan: EvalPlan, batch: BatchResult | None, reason: str | None) -> EvalOutcome:
    results = rt.store.eval_results(plan.id)
    summary = summarize(results, [m.name for m in plan.metrics], total=plan.batch.batch.total)
    status = (
        "COMPLETED"
        if reason is None and summary["scored"] == (plan.batch.batch.total or summary["scored"])
        else "STOPPED"
    )
    if status == "STOPPED" and reason is None:
        reason = f"{summary['scored']} of {plan.batch.batch.total} jobs scored"
    now = rt.clock.now()
    rt.store.update_eval(
        plan.id,
        status=status,
        summary=summary,
        updated_at=now,
        ended_at=now,
        metadata={**plan.record.metadata, "reason": reason},
    )
    return EvalOutcome(plan.id, status, summary, batch, reason)


def evaluation_view(store: Store, eval_id: str) -> dict[str, Any] | None:
    """An evaluation with its summary (recomputed from its results) and every result."""
    ev = store.get_eval(eval_id)
    if ev is None:
        return None
    results = store.eval_results(eval_id)
    names = [m["name"] for m in ev.spec.get("metrics") or []]
    return {
        "id": ev.id,
        "flow": ev.flow_name,
        "status": ev.status,
        "created_at": ev.created_at,
        "ended_at": ev.ended_at,
        "batch_id": ev.batch_id,
        "metrics": ev.spec.get("metrics") or [],
        "expected_column": ev.spec.get("expected_column"),
        "source": ev.spec.get("source"),
        "min_pass_rate": ev.spec.get("min_pass_rate"),
        "reason": (ev.metadata or {}).get("reason"),
        "summary": summarize(results, names, total=(ev.summary or {}).get("total")),
        "results": [result_dict(r) for r in results],
    }


def result_dict(r: EvalResult) -> dict[str, Any]:
    return {
        "record_id": r.record_id,
        "variant": r.variant,
        "parameters": r.parameters,
        "run_id": r.run_id,
        "status": r.status,
        "score": round(r.score, 6),
        "passed": r.passed,
        "reason": r.reason,
        "scores": r.scores,
        "expected": r.expected,
        "output": r.output,
        "tokens": r.tokens,
        "cost": r.cost,
        "latency": r.latency,
    }
