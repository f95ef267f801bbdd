"""Starting or resuming a batch, the same way from every surface: `llmflow batch` (the CLI
adds its progress view and signal handling), ``POST /api/v1/batches/{id}/resume`` and
``/retry-failed`` (the server runs the driver in its event loop) and the Python Runner.

:func:`prepare_batch` does everything that can refuse before a job runs — plan the batch
(new: recorded in the store; resume: read back), check the models its runs would use, pick
the executor — and returns the driver, ready for ``await driver.run()``. Refusals are
:class:`~llmflow.errors.BatchError` (or ``FlowValidationError`` for a model that cannot
work); a new batch that is refused is not recorded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llmflow.batch.plan import BatchRequest, plan_batch
from llmflow.batch.runner import BatchDriver
from llmflow.errors import BatchError
from llmflow.model.loader import LoadedFlow
from llmflow.model.spec import Flow
from llmflow.providers.preflight import check_run_models

if TYPE_CHECKING:
    from llmflow.runtime.ports import RunService


def _check_models(rt: RunService, loaded: Any, models: dict[str, str]) -> None:
    check_run_models(rt.gateway, loaded, models, rt.settings.env_models)


def prepare_batch(
    rt: RunService, req: BatchRequest, *, on_row: Any = None, local_only: bool = False
) -> BatchDriver:
    """The driver of the batch ``req`` asks for (see the module doc). ``local_only``: run
    the jobs on ``rt`` whatever engine the batch was started with (a server resuming it)."""
    if not req.resume and req.flow is not None:
        # before plan_batch records the batch: a refused start leaves nothing behind
        loaded = (
            req.flow
            if isinstance(req.flow, LoadedFlow)
            else LoadedFlow(req.flow, None, "<python>")
            if isinstance(req.flow, Flow)
            else rt.load(req.flow, req.overrides)
        )
        _check_models(rt, loaded, req.models)
    plan = plan_batch(rt, req)
    if plan.resumed:
        _check_models(rt, plan.loaded, dict(plan.batch.spec.get("models") or {}))
    executor = None
    if req.engine == "ray" and not local_only:
        try:
            from llmflow.batch.ray_executor import RayExecutor

            executor = RayExecutor(rt, address=req.ray_address, max_workers=req.max_workers, force=req.force)
        except BatchError as exc:
            rt.store.update_batch(
                plan.id, status="STOPPED", owner=None, metadata={**plan.batch.metadata, "reason": exc.message}
            )
            raise
    return BatchDriver(rt, plan, executor=executor, on_row=on_row)
