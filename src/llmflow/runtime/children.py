"""Child runs: a ``flow`` step (or a flow used as a tool) runs its flow as a run of its own,
with a stable id derived from the parent's, so a resumed parent finds the child a previous
process started (and reuses its outputs when it completed)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmflow.engine.events import EventType as E
from llmflow.engine.ports import StepContext
from llmflow.engine.states import RunStatus
from llmflow.errors import StepError
from llmflow.runtime.options import RunRequest, child_run_id

if TYPE_CHECKING:
    from llmflow.runtime.service import Runtime


async def run_child(
    rt: Runtime,
    ctx: StepContext,
    flow_ref: str,
    inputs: dict[str, Any],
    overrides: list[str],
    key: str | None = None,
) -> dict[str, Any]:
    """Run ``flow_ref`` as the child run of the step ``ctx`` runs; its outputs, or a
    StepError when it did not complete."""
    # store reads through rt.io: off the event loop where the store is shared (Postgres)
    parent = await rt.io(rt.get, ctx.run_id)
    base = child_run_id(ctx.run_id, ctx.node_id, ctx.unit) + (f".{key}" if key else "")
    existing = await rt.io(rt.store.get_run, base)
    child_id = base
    if existing is not None:
        if existing.status == RunStatus.COMPLETED:
            return existing.outputs or {}
        if existing.status in (RunStatus.FAILED, RunStatus.CANCELED):
            child_id = f"{base}.a{ctx.attempt}"
            existing = await rt.io(rt.store.get_run, child_id)
    if existing is None:
        ref = flow_ref
        src = parent.spec.get("source_path") or parent.spec.get("source")
        if src and not src.startswith("<") and not Path(flow_ref).is_absolute():
            cand = Path(src).parent / flow_ref
            if cand.exists():
                ref = str(cand)
        # a child never may do more than its parent: a posted flow's sub-flow runs without shell too
        request = RunRequest(
            models=dict(parent.options.get("models") or {}),
            parent_run_id=ctx.run_id,
            batch_id=parent.batch_id,
            run_id=child_id,
            workspace=str(ctx.workspace),
            disallow_shell=True if parent.options.get("disallow_shell") else None,
        )
        loaded = rt.load(ref, overrides)
        inherited = parent.options.get("choices")
        choices = (
            rt.run_flows.child_choices(loaded.flow, dict(request.models), inherited) if inherited else None
        )
        # written with its first events by the execute below, in the writer's group commit
        rt.create_run(loaded, inputs, request, choices=choices, claim=True, defer=True)
    ctx.event(
        E.CHILD_RUN_STARTED,
        f"Sub-flow {flow_ref} running as run {child_id}",
        child_run_id=child_id,
        flow=flow_ref,
    )
    st = await rt.execute(child_id)
    if st.status != RunStatus.COMPLETED:
        raise StepError(
            f"sub-flow {flow_ref} (run {child_id}) ended {st.status}: {st.error or ''}".strip(),
            retryable=False,
        )
    return st.outputs or {}
