"""The template context a step sees. Pure."""

from __future__ import annotations

from typing import Any

from llmflow.engine.state import NodeState, RunState
from llmflow.engine.states import StepStatus


def step_view(n: NodeState) -> dict[str, Any]:
    """The step as templates see it (``steps.<id>``): built once per change of the step
    (:func:`llmflow.engine.state.apply` drops it), shared by the contexts made until then,
    and never changed in place."""
    v = n.view
    if v is None:
        v = n.view = _build_view(n)
    return v


def _build_view(n: NodeState) -> dict[str, Any]:
    units = list(n.units.values())
    multi = len(units) > 1 or (units and units[0].key != "")
    outputs = [u.output for u in units] if multi else ([n.output] if n.status == StepStatus.COMPLETED else [])
    return {
        "output": n.output
        if n.status in (StepStatus.COMPLETED, StepStatus.STALE, StepStatus.FAILED)
        else None,
        "outputs": outputs,
        "status": str(n.status),
        "error": n.error,
        "units": [{"key": u.key, **u.vars, "output": u.output, "status": u.status} for u in units]
        if multi
        else [],
    }


def steps_namespace(st: RunState, node_id: str | None) -> dict[str, Any]:
    """Every step by its short id; inside a loop iteration, that iteration's body steps win."""
    top = st.top_views
    if top is None:
        top = st.top_views = {nid: step_view(n) for nid, n in st.nodes.items() if n.scope is None}
        st.stale_views.clear()
    elif st.stale_views:  # only the steps that changed since (contexts hold copies of top)
        nodes = st.nodes
        for nid in st.stale_views:
            top[nid] = step_view(nodes[nid])
        st.stale_views.clear()
    out = dict(top)  # each context its own namespace (the views are shared, never changed)
    scope = st.nodes[node_id].scope if node_id and node_id in st.nodes else None
    if scope:
        prefix = scope + "/"
        for nid, n in st.nodes.items():
            if nid.startswith(prefix):
                out[n.short_id] = step_view(n)
    return out


def template_context(
    st: RunState,
    node_id: str | None,
    unit_vars: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    unit_vars = unit_vars or {}
    n = st.nodes.get(node_id) if node_id else None
    ctx: dict[str, Any] = {
        "inputs": st.inputs,
        "steps": steps_namespace(st, node_id),
        "run": {
            "id": st.run_id,
            "flow": st.flow.name,
            "version": st.flow.version,
            **st.options.get("run_vars", {}),
        },
        "parameters": st.flow.parameters,
        "item": unit_vars.get("item"),
        "matrix": unit_vars.get("matrix") or {},
        "agent": unit_vars.get("agent_spec") or {},
    }
    if n is not None and n.scope:
        # the innermost loop: a nested loop's scope is "outer#1/inner#2"
        loop_id, _, it = n.scope.rpartition("#")
        ctx["loop"] = {"id": loop_id.rsplit("/", 1)[-1], "iteration": int(it)}
    if extra:
        ctx.update(extra)
    return ctx
