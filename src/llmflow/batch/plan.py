"""Planning a batch: from a request (or a batch id to resume) to the flow, the data source,
the variants, the record mapping and the batch record in the store.

A new batch stores everything it needs to be resumed (flow reference and overrides, data
source, column mapping, record-id column, ``--max-records``, ``--shuffle`` and its seed,
the output path) in the ``batches`` table; ``--resume ID`` reads them back, so the same
jobs come out with the same ids, and refuses options that would change them.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmflow.batch.datasets import BadRow, DataSource, count_rows, iter_rows, open_source, source_from_flow
from llmflow.batch.jobs import RecordMapper, Variant, expand_variants, hydra_value
from llmflow.batch.output import output_format
from llmflow.errors import BatchError
from llmflow.model.loader import LoadedFlow
from llmflow.model.spec import Flow
from llmflow.store.batches import BatchRecord

if TYPE_CHECKING:
    from llmflow.runtime.ports import RunService

# options that decide which jobs exist and what their ids are: fixed once a batch starts
FIXED = (
    "data",
    "data_format",
    "columns",
    "record_id",
    "max_records",
    "shuffle",
    "seed",
    "overrides",
    "no_variants",
    "models",
)


@dataclass
class BatchRequest:
    flow: str | Path | Flow | LoadedFlow | None = None  # None: resume the stored flow
    data: str | None = None
    data_format: str | None = None
    columns: dict[str, str] = field(default_factory=dict)
    record_id: str | None = None
    max_records: int | None = None
    shuffle: bool = False
    seed: int | None = None
    no_variants: bool = False  # keep list parameters as lists: one job per record
    max_workers: int = 16
    output: str | None = None
    error_policy: str = "continue"  # continue | stop
    resume: str | None = None  # batch id
    retry_failed: bool = False
    overrides: list[str] = field(default_factory=list)
    models: dict[str, str] = field(default_factory=dict)
    engine: str = "local"  # local | ray
    ray_address: str | None = None
    force: bool = False  # take over a batch whose driver still looks alive
    batch_id: str | None = None  # a new batch's id (default: generated)
    inline_records: list[Any] | None = None  # Python API: the records themselves


def new_batch_id() -> str:
    return "batch-" + time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)


class _JobFlow(LoadedFlow):
    """A loaded flow whose run record is computed once for all its jobs (without the
    per-value provenance, which would be repeated in every job's run row)."""

    def __init__(self, loaded: LoadedFlow) -> None:
        super().__init__(loaded.flow, None, loaded.source)
        rec = loaded.record()
        rec["provenance"] = []
        self._record = rec

    def record(self) -> dict[str, Any]:
        return self._record


@dataclass
class BatchPlan:
    batch: BatchRecord
    request: BatchRequest
    loaded: LoadedFlow
    source: DataSource
    variants: list[Variant]
    mapper: RecordMapper
    output: Path
    output_keys: list[str]
    resumed: bool
    _flows: dict[str, LoadedFlow] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.batch.id

    def rows(self) -> Any:
        spec = self.batch.spec
        return iter_rows(
            self.source,
            shuffle=bool(spec.get("shuffle")),
            seed=spec.get("seed"),
            limit=spec.get("max_records"),
        )

    def flow_for(self, rt: RunService, variant: Variant) -> LoadedFlow:
        """The flow a job of ``variant`` runs: the variant's values set as parameters with
        Hydra overrides (``parameters.KEY=VALUE``) when the flow comes from a file, so
        interpolations such as ``${..parameters.criteria}`` see them; else on a copy."""
        got = self._flows.get(variant.label)
        if got is not None:
            return got
        base = self.loaded
        if not variant.values:
            got = _JobFlow(base)
        elif base.composed is not None:
            extra = [f"parameters.{k}={hydra_value(v)}" for k, v in variant.values.items()]
            got = _JobFlow(rt.load(base.source, [*self.batch.spec.get("overrides", []), *extra]))
        else:
            flow = base.flow.model_copy(update={"parameters": {**base.flow.parameters, **variant.values}})
            got = _JobFlow(LoadedFlow(flow, None, base.source))
        self._flows[variant.label] = got
        return got


def _flow_ref(flow: Any) -> dict[str, Any]:
    if isinstance(flow, Flow):
        return {"doc": flow.to_dict()}
    if isinstance(flow, LoadedFlow):
        if flow.composed is None:
            return {"doc": flow.flow.to_dict()}
        flow = flow.source
    p = Path(str(flow))
    return {"ref": str(p.resolve()) if p.exists() else str(flow)}


def _load(rt: RunService, ref: dict[str, Any], overrides: list[str]) -> LoadedFlow:
    if ref.get("doc") is not None:
        return LoadedFlow(Flow.model_validate(ref["doc"]), None, "<python>")
    if ref.get("config_dir"):
        rt.settings.config_dir = Path(ref["config_dir"])
    return rt.load(ref["ref"], overrides)


def _search_dirs(loaded: LoadedFlow) -> list[Path]:
    dirs = [Path.cwd()]
    src = loaded.source
    if src and not src.startswith("<"):
        d = Path(src).resolve().parent
        dirs += [d, *list(d.parents)[:3]]
    return list(dict.fromkeys(dirs))


def _source(req: BatchRequest, loaded: LoadedFlow) -> DataSource:
    if req.inline_records is not None:
        return DataSource("inline", None, list(req.inline_records), {})
    if req.data:
        return open_source(req.data, req.data_format)
    src = source_from_flow(loaded.flow.data, _search_dirs(loaded))
    if src is None:
        raise BatchError(
            f"flow {loaded.flow.name!r} has no data",
            hint="pass a dataset with --data PATH (CSV, JSONL, JSON, Parquet or text)",
        )
    return src


def _stored_source(spec: dict[str, Any]) -> DataSource:
    d = spec["data"]
    if d["format"] == "inline":
        return DataSource("inline", None, list(d.get("records") or []), dict(d.get("columns") or {}))
    return open_source(d["path"], d["format"], d.get("columns") or {})


def _check_resume(req: BatchRequest, batch: BatchRecord) -> None:
    spec = batch.spec
    given = {
        "data": str(Path(req.data).resolve()) if req.data else None,
        "data_format": req.data_format,
        "columns": req.columns or None,
        "record_id": req.record_id,
        "max_records": req.max_records,
        "shuffle": req.shuffle or None,
        "seed": req.seed,
        "overrides": req.overrides or None,
        "no_variants": req.no_variants or None,
        "models": req.models or None,
    }
    stored = {**{k: spec.get(k) for k in FIXED}, "data": (spec.get("data") or {}).get("path")}
    for k, v in given.items():
        if v is not None and v != stored.get(k):
            opt = {"models": "--model", "data_format": "--format", "overrides": "the overrides"}.get(
                k, "--" + k.replace("_", "-")
            )
            raise BatchError(
                f"batch {batch.id} was started with {opt} {stored.get(k)!r}; --resume runs the jobs it was started with",
                hint=f"drop {opt}, or start a new batch",
            )
    if req.flow is not None and not isinstance(req.flow, Flow | LoadedFlow):
        ref = _flow_ref(req.flow).get("ref")
        if ref and spec["flow"].get("ref") and ref != spec["flow"]["ref"]:
            raise BatchError(
                f"batch {batch.id} runs flow {spec['flow']['ref']}, not {ref}", hint="drop FLOW when resuming"
            )


def plan_batch(rt: RunService, req: BatchRequest) -> BatchPlan:
    """Resolve a request into a plan; a new batch is recorded in the store (status RUNNING)."""
    if req.error_policy not in ("continue", "stop"):
        raise BatchError(f"--error-policy must be continue or stop, not {req.error_policy!r}")
    if req.max_workers < 1:
        raise BatchError("--max-workers must be at least 1")
    if req.max_records is not None and req.max_records < 0:
        raise BatchError("--max-records must be 0 or more")
    if req.resume:
        batch = rt.store.get_batch(req.resume)
        if batch is None:
            raise BatchError(f"no batch {req.resume!r}", hint="list batches with `llmflow batches list`")
        if batch.spec.get("kind") == "sweep":
            raise BatchError(
                f"{batch.id} is a sweep of `llmflow run --multirun`, not a batch over a dataset; it cannot be resumed",
                hint="run the sweep again, or resume one of its runs with `llmflow runs resume RUN`",
            )
        _check_resume(req, batch)
        spec = batch.spec
        loaded = _load(rt, spec["flow"], spec.get("overrides") or [])
        source = _stored_source(spec)
        if spec.get("fingerprint") and spec["fingerprint"] != loaded.flow.fingerprint() and not req.force:
            raise BatchError(
                f"flow {loaded.flow.name!r} changed since batch {batch.id} started ({loaded.source})",
                hint="restore the flow, or pass --force to run the remaining jobs with the new definition",
            )
        output = Path(req.output).resolve() if req.output else Path(spec["output"])
        if req.output and output_format(output) != output_format(spec["output"]):
            raise BatchError(
                "--output on resume must keep the format the batch started with",
                hint=f"it writes {spec['output']}",
            )
        resumed = True
    else:
        if req.flow is None:
            raise BatchError("give a FLOW to run, or --resume BATCH_ID")
        ref = _flow_ref(req.flow)
        if rt.settings.config_dir and ref.get("ref"):
            ref["config_dir"] = str(Path(rt.settings.config_dir).resolve())
        loaded = req.flow if isinstance(req.flow, LoadedFlow) else _load(rt, ref, req.overrides)
        source = _source(req, loaded)
        if req.columns:
            source = DataSource(source.format, source.path, source.records, {**source.columns, **req.columns})
        batch_id = req.batch_id or new_batch_id()
        output = (
            Path(req.output).resolve()
            if req.output
            else rt.settings.state_dir / "batches" / batch_id / "results.jsonl"
        )
        output_format(output)
        seed = req.seed if req.seed is not None else (secrets.randbelow(2**31) if req.shuffle else None)
        data = source.describe()
        if source.format == "inline":
            data["records"] = source.records
        spec = {
            "flow": ref,
            "overrides": list(req.overrides),
            "data": data,
            "data_format": req.data_format,
            "columns": dict(req.columns) or None,
            "record_id": req.record_id,
            "max_records": req.max_records,
            "shuffle": req.shuffle or None,
            "seed": seed,
            "no_variants": req.no_variants or None,
            "output": str(output),
            "models": dict(req.models),
            "error_policy": req.error_policy,
            "max_workers": req.max_workers,
            "engine": req.engine,
            "fingerprint": loaded.flow.fingerprint(),
        }
        now = rt.clock.now()
        batch = BatchRecord(
            batch_id,
            loaded.flow.name,
            "RUNNING",
            now,
            now,
            None,
            None,
            spec,
            rt.owner,
            {"source": source.label},
        )
        resumed = False
    variants = [Variant("")] if batch.spec.get("no_variants") else expand_variants(loaded.flow.parameters)
    mapper = RecordMapper(loaded.flow.inputs, source.columns, batch.spec.get("record_id"))
    first = next(iter_rows(source, limit=1), (0, None))[1]
    mapper.check(first if not isinstance(first, BadRow) else None, source.label)
    keys = list(loaded.flow.outputs) if loaded.flow.outputs else ["result"]
    plan = BatchPlan(batch, req, loaded, source, variants, mapper, output, keys, resumed)
    if not resumed:
        n = count_rows(source)
        limit = batch.spec.get("max_records")
        batch.total = (min(n, limit) if limit is not None else n) * len(variants)
        batch.spec["variants"] = [v.label for v in variants]
        if batch.total == 0:
            raise BatchError(
                f"{source.label} has no records" + (" (--max-records 0)" if limit == 0 else ""),
                hint="check the data, or --max-records",
            )
        rt.store.create_batch(batch)
    return plan
