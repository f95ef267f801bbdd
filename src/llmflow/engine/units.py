"""The units of a step - for_each items x matrix variants x broadcast agents - and the cap
on how many one step may have, counted before any unit is built. Pure."""

from __future__ import annotations

import itertools
import math
from typing import Any

from llmflow.engine.context import template_context
from llmflow.engine.state import NodeState, RunState
from llmflow.errors import TemplateError
from llmflow.model.expressions import evaluate
from llmflow.model.spec import BroadcastStep

DEFAULT_MAX_UNITS = 10_000
"""Units one step may have (for_each items x matrix variants x agents) unless the
``max_units`` setting or flow option says otherwise."""


class UnitCapError(TemplateError):
    pass


def _unit_key(parts: list[str]) -> str:
    return "|".join(p for p in parts if p)


def _short(v: Any) -> str:
    s = str(v)
    return s if len(s) <= 40 else s[:37] + "..."


def unit_cap(st: RunState) -> int:
    """The most units one step of this run may have: the ``max_units`` setting (recorded with
    the run) and the flow's ``options.max_units``, whichever is lower."""
    cap = int(st.options.get("max_units") or DEFAULT_MAX_UNITS)
    own = getattr(st.flow.options, "max_units", None)
    return min(cap, int(own)) if own else cap


def compute_units(st: RunState, n: NodeState) -> list[dict[str, Any]]:
    """The units of a step: for_each items x matrix variants x broadcast agents. Raises
    TemplateError (UnitCapError past the cap: counted before any unit is built)."""
    spec = n.spec
    if spec.for_each is None and not spec.matrix and not isinstance(spec, BroadcastStep):
        if unit_cap(st) >= 1:  # most steps: one unit, nothing to evaluate or count
            return [{"key": "", "vars": {}}]
    ctx = template_context(st, n.id) if (isinstance(spec.for_each, str) or spec.matrix) else {}
    seq: Any = None
    if spec.for_each is not None:
        seq = evaluate(spec.for_each, ctx) if isinstance(spec.for_each, str) else spec.for_each
        if isinstance(seq, dict):
            seq = list(seq.items())
        if not isinstance(seq, list | tuple):
            raise TemplateError(f"for_each of step '{n.short_id}' must give a list, got {type(seq).__name__}")
    axes: list[tuple[str, list[Any]]] = []
    if spec.matrix:
        for k, v in spec.matrix.items():
            vals = evaluate(v, ctx) if isinstance(v, str) else v
            if not isinstance(vals, list | tuple):
                vals = [vals]
            axes.append((k, list(vals)))
    agents = list(spec.agents) if isinstance(spec, BroadcastStep) else []
    count = (len(seq) if seq is not None else 1) * math.prod(len(a[1]) for a in axes) * (len(agents) or 1)
    cap = unit_cap(st)
    if count > cap:
        what = " x ".join(
            w
            for w in (
                f"{len(seq)} for_each items" if seq is not None else "",
                f"{math.prod(len(a[1]) for a in axes)} matrix variants" if axes else "",
                f"{len(agents)} agents" if agents else "",
            )
            if w
        )
        raise UnitCapError(
            f"step '{n.short_id}' would run {count} units ({what}), more than the cap of {cap} units per step; "
            f"split the work, or raise the cap with options.max_units (at most the LLMFLOW_MAX_UNITS setting)"
        )
    items: list[tuple[str, dict[str, Any]]] = (
        [("", {})] if seq is None else [(str(i), {"item": v, "index": i}) for i, v in enumerate(seq)]
    )
    variants: list[tuple[str, dict[str, Any]]] = [("", {})]
    if axes:
        variants = []
        for combo in itertools.product(*[a[1] for a in axes]):
            m = {axes[i][0]: combo[i] for i in range(len(axes))}
            variants.append((",".join(f"{k}={_short(v)}" for k, v in m.items()), {"matrix": m}))
    agent_units: list[tuple[str, dict[str, Any]]] = [(a, {"agent": a}) for a in agents] or [("", {})]
    return [
        {"key": _unit_key([ik, mk, ak]), "vars": {**iv, **mv, **av}}
        for (ik, iv), (mk, mv), (ak, av) in itertools.product(items, variants, agent_units)
    ]
