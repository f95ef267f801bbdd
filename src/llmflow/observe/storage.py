"""A flow's ``storage:`` honoured by every run (console, API, WebSocket, batch), as
Buttermilk's file store: when a run ends, its results are appended as JSONL rows to each
results file the flow configures.

A results file is a ``storage:`` entry (or Buttermilk's ``parameters.save``) of type
``file`` (the default) whose ``path`` ends in ``.jsonl`` or ``.ndjson``::

    storage:
      results: {type: file, path: ${oc.env:LLMFLOW_RESULTS_PATH,results}/judges.jsonl}

A relative path is relative to the directory the command runs in (as Buttermilk's
``./data/``). An entry that holds records (an existing file whose first row has no
``run_id``: the flow's dataset, which ``GET /api/flows/{flow}/records`` reads) is never
written to, nor is an entry that sets one of Buttermilk's reading options (``randomize``,
``batch_size``, ``filter``, ``columns``...: a dataset, even before its file exists), nor a
cloud path (``gs://``). Each is logged once per run.

One row per step result, in the shape of Buttermilk's saved agent calls
(``schemas/flow.json``): ``session_id, call_id, run_id, flow, record_id, timestamp,
agent_info {agent_id, role, model}, parameters, inputs, outputs, error``. A failed step
gives a row with its ``error`` and no ``outputs``. Registered as the ``storage`` entry
point of the ``llmflow.observers`` group.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeGuard

from llmflow.engine.events import RUN_END_EVENTS, Event
from llmflow.engine.events import EventType as E

log = logging.getLogger("llmflow.observe.storage")

RESULT_SUFFIXES = (".jsonl", ".ndjson")
# Buttermilk's options for reading a data source (docs/developer-guide/columns_mapping.md and
# its storage configs): an entry that sets one describes a dataset, never a results file
READING_OPTIONS = (
    "randomize",
    "batch_size",
    "max_records",
    "max_records_per_group",
    "filter",
    "columns",
    "glob",
    "join",
    "index",
    "agg",
    "group",
    "last_n_days",
    "split",
)


def storage_observer(runtime: Any) -> StorageWriter:
    """The ``llmflow.observers`` factory: writes every ending run's results to its flow's
    results files (a run whose flow has none costs one dictionary lookup)."""
    return StorageWriter(runtime.store)


def result_targets(flow: dict[str, Any]) -> tuple[list[tuple[str, Path]], list[str]]:
    """The flow's results files as (storage name, path), and why other file entries are
    not written (``["name: reason", ...]``)."""
    entries: list[tuple[str, Any]] = []
    storage = flow.get("storage")
    if isinstance(storage, dict):
        entries += [(str(k), v) for k, v in storage.items()]
    save = (flow.get("parameters") or {}).get("save")
    if isinstance(save, dict) and "path" in save:
        entries.append(("parameters.save", save))
    targets: list[tuple[str, Path]] = []
    skipped: list[str] = []
    for name, cfg in entries:
        if not isinstance(cfg, dict) or str(cfg.get("type", "file")) not in ("file", "jsonl"):
            continue
        raw = str(cfg.get("path") or "")
        if not raw.lower().endswith(RESULT_SUFFIXES):
            continue
        if "://" in raw:
            skipped.append(f"{name}: {raw} is not a local path (llmflow writes local JSONL files)")
            continue
        reading = next((k for k in READING_OPTIONS if k in cfg), None)
        if reading is not None:
            skipped.append(f"{name}: {raw} is a dataset (it sets {reading}), read, not written")
            continue
        path = Path(raw).expanduser().resolve()
        if _holds_records(path):
            skipped.append(f"{name}: {path} holds records (its rows have no run_id), not results")
            continue
        if all(path != p for _, p in targets):
            targets.append((name, path))
    return targets, skipped


def _holds_records(path: Path) -> bool:
    """An existing file whose first row is not one of llmflow's result rows."""
    try:
        with path.open(encoding="utf-8") as fh:
            first = next((line for line in fh if line.strip()), None)
    except (OSError, UnicodeDecodeError):
        return False
    if first is None:
        return False
    try:
        row = json.loads(first)
    except ValueError:
        return True
    return not (isinstance(row, dict) and "run_id" in row and "call_id" in row)


def _has_storage(flow: Any) -> TypeGuard[dict[str, Any]]:
    return isinstance(flow, dict) and bool(flow.get("storage") or (flow.get("parameters") or {}).get("save"))


class StorageWriter:
    """The observer: on a run's end event, reads the run and its events and appends its
    result rows to the flow's results files."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def wants(self, rec: Any) -> bool:
        """Whether a run's events concern this observer (a runner leaves it out otherwise,
        so a run of a flow without storage costs it nothing)."""
        return _has_storage((rec.spec or {}).get("flow"))

    def __call__(self, e: Event) -> None:
        if e.type not in RUN_END_EVENTS:
            return
        rec = self.store.get_run(e.run_id)
        flow = (rec.spec or {}).get("flow") if rec is not None else None
        if not _has_storage(flow):
            return
        targets, skipped = result_targets(flow)
        for why in skipped:
            log.warning("run %s: storage %s; not written", e.run_id, why)
        if not targets:
            return
        rows = list(result_rows(rec, flow, self.store.events(e.run_id, 0)))
        if not rows:
            return
        text = "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in rows)
        for name, path in targets:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                with path.open("a", encoding="utf-8") as fh:
                    fh.write(text)
            except OSError as exc:
                log.warning("run %s: cannot write storage %s (%s): %s", e.run_id, name, path, exc)


def _steps(flow: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every step of the flow document by id (nested groups included)."""
    out: dict[str, dict[str, Any]] = {}

    def walk(steps: Any) -> None:
        for st in steps or []:
            if isinstance(st, dict):
                if st.get("id"):
                    out[str(st["id"])] = st
                for key in ("steps", "branches", "do"):
                    walk(st.get(key) if isinstance(st.get(key), list) else None)

    walk(flow.get("steps"))
    return out


def result_rows(rec: Any, flow: dict[str, Any], events: list[Event]) -> Iterator[dict[str, Any]]:
    """The run's result rows: one per completed or failed step unit, in event order."""
    steps = _steps(flow)
    agents = flow.get("agents") or {}
    models: dict[tuple[str, str], str] = {}
    meta = rec.metadata or {}
    record_id = meta.get("record_id") or (rec.inputs or {}).get("record_id")
    for ev in events:
        key = (ev.step_id or "", ev.unit or "")
        if ev.type == E.LLM_DONE and ev.payload.get("model"):
            models[key] = str(ev.payload["model"])
        if ev.type not in (E.STEP_COMPLETED, E.STEP_FAILED) or ev.step_id is None:
            continue
        spec = steps.get(ev.step_id, {})
        own = spec.get("llm")
        llm: dict[str, Any] = own if isinstance(own, dict) else {}
        agent_name = spec.get("agent") or llm.get("agent")
        agent = agents.get(agent_name) if isinstance(agents, dict) and agent_name else None
        role = agent.get("role") if isinstance(agent, dict) else None
        p = ev.payload or {}
        failed = ev.type == E.STEP_FAILED
        yield {
            "session_id": meta.get("session_id") or rec.id,
            "call_id": f"{rec.id}:{ev.step_id}" + (f"[{ev.unit}]" if ev.unit else "") + f"#{ev.seq}",
            "run_id": rec.id,
            "flow": rec.flow_name,
            "record_id": record_id,
            "timestamp": datetime.fromtimestamp(ev.ts, UTC).isoformat(),
            "agent_info": {
                "agent_id": ev.step_id,
                "role": role or agent_name or ev.step_id,
                "model": models.get(key) or spec.get("model") or llm.get("model"),
            },
            "parameters": _unit_parameters(ev.unit),
            "inputs": rec.inputs or {},
            "outputs": None if failed else p.get("output"),
            "error": p.get("error") if failed else None,
        }


def _unit_parameters(unit: str | None) -> dict[str, str]:
    """A matrix unit's values (``model=a,criteria=b``), as Buttermilk's variant parameters."""
    out: dict[str, str] = {}
    for part in (unit or "").split(","):
        k, sep, v = part.partition("=")
        if sep:
            out[k] = v
    return out
