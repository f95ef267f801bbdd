"""Pass 3 of validation: how the parts of a valid flow refer to each other.

``needs`` and route targets name existing steps of the same scope (top level or one loop
body), agents exist, there are no cycles outside loops, and every template or condition
parses, is safe, and reads only names that exist and steps that run before it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from llmflow.model.diagnostics import did_you_mean
from llmflow.model.expressions import JINJA_GLOBALS, NAMESPACES
from llmflow.model.flow_spec import FlowSpec
from llmflow.model.graph import Graph, strongly_connected
from llmflow.model.scopes import Scopes
from llmflow.model.step_specs import (
    BroadcastStep,
    ConductorStep,
    LlmStep,
    LoopStep,
    RouteStep,
    StepSpec,
)
from llmflow.model.template_analysis import analyse
from llmflow.model.value_errors import short

if TYPE_CHECKING:
    from llmflow.model.collector import Collector


def check_references(
    c: Collector, flow: FlowSpec, bad_ids: set[str], dropped_inputs: set[str], dropped_agents: set[str]
) -> None:
    paths: dict[str, tuple[Any, ...]] = dict(c.all_ids)
    ids = {i for i in c.all_ids if i not in bad_ids}
    known = list(c.all_ids)
    scopes = Scopes(flow)

    def known_hint(name: str) -> str:
        return did_you_mean(name, known) or f"known steps: {', '.join(known)}"

    def loop_name(loop: str | None) -> str:
        return f"loop '{loop}'" if loop else "the top level of the flow"

    for s in flow.all_steps():
        p = c.obj_paths.get(id(s), paths.get(s.id, ("steps",)))
        here = scopes.loop_of.get(s.id)
        for j, n in enumerate(s.needs or []):
            if n not in paths:
                c.add(
                    "unknown-step", f"step '{s.id}' needs unknown step '{n}'", (*p, "needs", j), known_hint(n)
                )
            elif n == s.id:
                c.add("cycle", f"step '{s.id}' needs itself", (*p, "needs", j), "remove it from needs")
            elif n in scopes.loop_of and scopes.loop_of[n] != here:
                there = scopes.loop_of[n]
                hint = (
                    f"a step inside a loop can only need steps of the same loop; to wait for '{n}', add it to the needs of loop '{here}'"
                    if here
                    else f"steps inside a loop repeat; need the loop '{there}' instead"
                )
                c.add(
                    "unknown-step",
                    f"step '{s.id}' needs '{n}', which is inside {loop_name(there)}, not in {loop_name(here)}",
                    (*p, "needs", j),
                    hint,
                )
        if isinstance(s, RouteStep):
            for r_i, r in enumerate(s.routes):
                for t_i, t in enumerate(r.to):
                    _check_route_target(c, s, t, (*p, "routes", r_i, "to", t_i), paths, scopes, known_hint)
            for t_i, t in enumerate(s.default):
                _check_route_target(c, s, t, (*p, "default", t_i), paths, scopes, known_hint)
        _check_agents(c, flow, s, p, dropped_agents)
        if isinstance(s, LlmStep) and s.model and "{{" in s.model:
            c.add(
                "invalid-value",
                f"step '{s.id}': 'model' is not a template ({s.model!r})",
                (*p, "model"),
                "to run one variant per model, use 'matrix: {model: [provider:a, provider:b]}'",
            )
        elif isinstance(s, LlmStep) and s.model:
            _check_model(c, s.model, f"step '{s.id}'", (*p, "model"))
        models = (s.matrix or {}).get("model")
        if isinstance(models, list):
            for k, m in enumerate(models):
                _check_model(c, m, f"step '{s.id}'", (*p, "matrix", "model", k))
    for name, a in flow.agents.items():
        if a.model and "{{" in a.model:
            c.add(
                "invalid-value",
                f"agent '{name}': 'model' is not a template ({a.model!r})",
                ("agents", name, "model"),
                "write provider:model, or use ${...} to take it from the config",
            )
        elif a.model:
            _check_model(c, a.model, f"agent '{name}'", ("agents", name, "model"))
    if flow.model:
        _check_model(c, flow.model, f"flow '{flow.name}'", ("model",))

    _check_cycles(c, scopes, paths)

    for s in flow.all_steps():
        p = c.obj_paths.get(id(s), paths.get(s.id, ("steps",)))
        for field, text, is_cond in _templates_of(s):
            _check_template(c, flow, s, scopes, text, (*p, *field), is_cond, paths, ids, dropped_inputs)
    for out_name, text in (flow.outputs or {}).items():
        _check_template(c, flow, None, scopes, text, ("outputs", out_name), False, paths, ids, dropped_inputs)


def _check_model(c: Collector, model: Any, owner: str, path: tuple[Any, ...]) -> None:
    if not isinstance(model, str) or ":" not in model:
        c.add(
            "invalid-value",
            f"{owner}: model {short(model)} does not name a provider",
            path,
            "write it as provider:model, e.g. openai:gpt-4o-mini, local:gemma3-270m or fake: (see docs/models.md)",
        )


def _check_route_target(
    c: Collector,
    s: RouteStep,
    t: str,
    path: tuple[Any, ...],
    paths: dict[str, Any],
    scopes: Scopes,
    known_hint: Any,
) -> None:
    if t not in paths:
        c.add("unknown-step", f"route '{s.id}' goes to unknown step '{t}'", path, known_hint(t))
    elif t == s.id:
        c.add("cycle", f"route '{s.id}' goes to itself", path, "use a 'loop' step to repeat steps")
    elif t in scopes.loop_of and scopes.loop_of[t] != scopes.loop_of.get(s.id):
        c.add(
            "unknown-step",
            f"route '{s.id}' goes to '{t}', which is in another loop body",
            path,
            "a route can only choose steps at its own level",
        )


def _check_agents(c: Collector, flow: FlowSpec, s: StepSpec, p: tuple[Any, ...], dropped: set[str]) -> None:
    refs: list[tuple[str, tuple[Any, ...]]] = []
    if isinstance(s, LlmStep) and s.agent:
        refs.append((s.agent, (*p, "agent")))
    if isinstance(s, BroadcastStep):
        refs += [(a, (*p, "agents", k)) for k, a in enumerate(s.agents)]
        for k in s.weights or {}:
            if k not in s.agents:
                c.add(
                    "unknown-agent",
                    f"step '{s.id}' weighs agent '{k}', which it does not broadcast to",
                    (*p, "weights", k),
                    did_you_mean(k, s.agents) or f"agents: {', '.join(s.agents)}",
                )
    if isinstance(s, ConductorStep):
        refs += [(a, (*p, "participants", k)) for k, a in enumerate(s.participants)]
        if s.host != "sequence":
            refs.append((s.host, (*p, "host")))
    for name, ap in refs:
        if name not in flow.agents and name not in dropped and "*" not in dropped:
            known = list(flow.agents)
            hint = did_you_mean(name, known) or (
                f"known agents: {', '.join(known)}" if known else "define it under 'agents:'"
            )
            if isinstance(s, ConductorStep) and ap[-1] == "host":
                hint += "; or use host: sequence"
            c.add("unknown-agent", f"step '{s.id}' uses unknown agent '{name}'", ap, hint)


def _check_cycles(c: Collector, scopes: Scopes, paths: dict[str, tuple[Any, ...]]) -> None:
    for g in scopes.graphs.values():
        for comp in strongly_connected(g):
            if len(comp) < 2:
                continue  # a step needing itself is reported with its needs
            sub = Graph({n: g.nodes[n] for n in comp}, [n for n in g.order if n in comp])
            cyc = sub.find_cycle() or [*comp, comp[0]]
            implicit = [
                (cyc[i], cyc[i + 1]) for i in range(len(cyc) - 1)
                if not g.nodes[cyc[i]].explicit_needs and g.nodes[cyc[i]].group is None
            ]  # fmt: skip
            hint = "use a 'loop' step to repeat steps"
            if implicit:
                a, b = implicit[0]
                hint = f"'{a}' has no 'needs', so it runs after the step before it ('{b}'); give '{a}' its own 'needs', or use a 'loop' step"
            first = cyc[0]
            c.add(
                "cycle",
                f"steps form a cycle: {' -> '.join(cyc)}",
                (*paths.get(first, ("steps",)), "needs"),
                hint,
            )


def _templates_of(s: StepSpec) -> list[tuple[tuple[Any, ...], str, bool]]:
    out: list[tuple[tuple[Any, ...], str, bool]] = []
    if s.when:
        out.append((("when",), s.when, True))
    if isinstance(s.for_each, str):
        out.append((("for_each",), s.for_each, True))
    for k, v in (s.matrix or {}).items():
        if isinstance(v, str):
            out.append((("matrix", k), v, True))
    if isinstance(s, RouteStep):
        out += [(("routes", i, "when"), r.when, True) for i, r in enumerate(s.routes)]
    if isinstance(s, LoopStep):
        out.append((("until",), s.until, True))

    def strings(v: Any, path: tuple[Any, ...]) -> None:
        if isinstance(v, str):
            out.append((path, v, False))
        elif isinstance(v, list):
            for i, x in enumerate(v):
                strings(x, (*path, i))
        elif isinstance(v, dict):
            for k, x in v.items():
                strings(x, (*path, k))
        elif isinstance(v, BaseModel):
            strings(v.model_dump(), path)

    for f in s.TEMPLATE_FIELDS:
        strings(getattr(s, f, None), (f,))
    return out


def _check_template(
    c: Collector,
    flow: FlowSpec,
    step: StepSpec | None,
    scopes: Scopes,
    text: str,
    path: tuple[Any, ...],
    is_cond: bool,
    paths: dict[str, tuple[Any, ...]],
    ids: set[str],
    dropped_inputs: set[str],
) -> None:
    if not is_cond and "{{" not in text and "{%" not in text:
        return
    a = analyse(text, condition=is_cond)
    what = "condition" if is_cond else "template"
    if a.error:
        code = "unsafe-expression" if "unsafe" in a.error else "bad-expression"
        c.add(code, f"{a.error} in {what} {short(text)}", path, a.hint)
        return
    loop = scopes.loop_of.get(step.id) if step else None

    def upstream(name: str) -> bool:
        assert step is not None
        return scopes.runs_before(step.id, name) or (
            isinstance(step, LoopStep) and scopes.in_group(step.id, name)
        )

    has_jinja_for = "{%" in text and "for " in text
    for ref in a.references:
        ns, name = ref.namespace, ref.name
        if ns not in NAMESPACES:
            if ns in JINJA_GLOBALS:
                continue
            c.add(
                "unknown-name",
                f"unknown name '{ns}' in {what} {short(text)}",
                path,
                did_you_mean(ns, NAMESPACES) or f"available: {', '.join(NAMESPACES)}",
            )
        elif ns == "inputs" and name is not None and name not in flow.inputs:
            if name in dropped_inputs or "*" in dropped_inputs:
                continue
            declared = list(flow.inputs)
            hint = did_you_mean(name, declared) or (
                f"declared inputs: {', '.join(declared)}"
                if declared
                else f"declare it under 'inputs:', e.g. 'inputs: {{{name}: string}}'"
            )
            c.add("unknown-input", f"unknown input '{name}' in {what} {short(text)}", path, hint)
        elif ns == "steps" and name is not None:
            body_of = scopes.loop_of.get(name)
            visible = (
                scopes.enclosing_loops(step.id) | ({step.id} if isinstance(step, LoopStep) else set())
                if step
                else set()
            )
            if name not in paths:
                c.add(
                    "unknown-step",
                    f"unknown step '{name}' in {what} {short(text)}",
                    path,
                    did_you_mean(name, paths) or f"known steps: {', '.join(paths)}",
                )
            elif body_of is not None and body_of not in visible and name in ids:
                reader = f"step '{step.id}'" if step else "the flow's outputs"
                c.add(
                    "not-upstream",
                    f"{reader} reads step '{name}', which is inside loop '{body_of}'",
                    path,
                    f"outside a loop, read its result: steps.{body_of}.output (the last body step's output)",
                )
            elif step is not None and name in ids and not upstream(name):
                if name == step.id:
                    msg, hint = (
                        f"step '{step.id}' reads its own output",
                        "a step can read only steps that ran before it",
                    )
                else:
                    msg, hint = (
                        f"step '{step.id}' reads step '{name}', which does not run before it",
                        f"add '{name}' to the needs of '{step.id}'",
                    )
                c.add("not-upstream", msg, path, hint)
        elif ns == "item" and step is not None and step.for_each is None:
            c.add(
                "unknown-name",
                f"'item' used in step '{step.id}', which has no for_each",
                path,
                "add 'for_each:' or remove the reference",
            )
        elif ns == "matrix" and step is not None and name is not None and name not in (step.matrix or {}):
            if not step.matrix:
                c.add(
                    "unknown-name",
                    f"'matrix' used in step '{step.id}', which has no matrix",
                    path,
                    "add 'matrix:' or remove the reference",
                )
            else:
                c.add(
                    "unknown-name",
                    f"unknown matrix key '{name}' in {what} {short(text)}",
                    path,
                    did_you_mean(name, step.matrix) or f"matrix keys: {', '.join(step.matrix)}",
                )
        elif (
            ns == "loop"
            and step is not None
            and loop is None
            and not isinstance(step, LoopStep)
            and not has_jinja_for
        ):
            c.add(
                "unknown-name",
                f"'loop' used in step '{step.id}', which is not inside a loop",
                path,
                "'loop' (id, iteration) exists only in the steps of a 'loop'",
            )
