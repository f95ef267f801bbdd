"""Validation before anything runs: every problem at once, each located precisely.

:func:`check_document` checks a flow document (a mapping, already composed) in three
passes, so one mistake does not hide the others:

1. steps, one by one (kind, keys, values), plus ids that are repeated anywhere;
2. the flow's own keys; entries that are invalid are set aside so that pass 3 can run;
3. references between parts: ``needs``, route targets, agents, names used in templates and
   conditions, cycles outside loops.

Pass 3 lives in :mod:`llmflow.model.references`, the wording of value errors in
:mod:`llmflow.model.value_errors`. Diagnostic codes are stable (tests and tools match on
them); see docs/flows.md.

The flow is built as the class it is given (``flow_class``): :class:`llmflow.model.spec.Flow`
for :func:`llmflow.model.validate.validate_document` and for ``Flow.check``, which both sit
above this module, so it imports no ``Flow`` back.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import ValidationError

from llmflow.model import limits
from llmflow.model.collector import Collector
from llmflow.model.diagnostics import Diagnostic, did_you_mean, format_path
from llmflow.model.flow_spec import FlowSpec
from llmflow.model.references import check_references
from llmflow.model.registry import normalise_step, registry
from llmflow.model.sourcemap import SourceMap
from llmflow.model.step_specs import StepSpec
from llmflow.model.value_errors import pydantic_errors, short

F = TypeVar("F", bound=FlowSpec)

_PLACEHOLDER = {"kind": "python", "id": "_placeholder", "function": "x"}


# -- pass 1: steps --------------------------------------------------------------------------


def _collect_ids(c: Collector, raw: Any, prefix: tuple[Any, ...], depth: int = 1) -> None:
    """Every step id in the document (valid steps or not), and repeated ids; steps nested
    past the depth limit are reported here, once, and not looked into."""
    if not isinstance(raw, list):
        return
    lim = limits.current()
    if depth > lim.flow_depth:
        c.add(
            "too-deep",
            f"steps nest more than {lim.flow_depth} levels deep (LLMFLOW_MAX_STEP_DEPTH)",
            prefix,
            "flatten the flow: fewer parallel / loop groups inside each other, or sub-flows",
        )
        return
    c.step_count += len(raw)
    for i, item in enumerate(raw):
        step = normalise_step(item)
        if not isinstance(step, dict):
            continue
        path = (*prefix, i)
        if isinstance(item, dict) and "kind" not in item and isinstance(step.get("kind"), str):
            k = step["kind"]
            cls_ = registry.kind(k)
            c.alias_shorthand(path, k, cls_.SHORTHAND if cls_ else None, item.get(k), set(item))
        sid = step.get("id")
        if isinstance(sid, str):
            if sid in c.all_ids:
                first = format_path(c.all_ids[sid])
                c.add(
                    "duplicate-id",
                    f"duplicate step id '{sid}'",
                    (*path, "id"),
                    f"first used at {first}; ids must be unique in a flow",
                )
            else:
                c.all_ids[sid] = path
        kind = step.get("kind")
        cls = registry.kind(kind) if isinstance(kind, str) else None
        for f in cls.NESTED if cls else ():
            _collect_ids(c, step.get(f), (*path, f), depth + 1)


def _check_steps(
    c: Collector, raw: Any, prefix: tuple[Any, ...], bad_ids: set[str], depth: int = 1
) -> list[StepSpec] | None:
    """Validate a list of step documents. Returns the valid steps, or None when the list
    itself is unusable. Ids of invalid steps go to ``bad_ids`` so later checks skip them."""
    if depth > limits.current().flow_depth:
        return None  # reported by _collect_ids
    if not isinstance(raw, list):
        got = f"got {type(raw).__name__}" if raw is not None else "got nothing"
        c.add(
            "invalid-value",
            f"{format_path(prefix)} must be a list of steps, {got}",
            prefix,
            "write steps as a YAML list: '- id: ...'",
        )
        return None
    if not raw:
        c.add(
            "invalid-value",
            f"{format_path(prefix)} needs at least one step",
            prefix,
            "add a step, e.g. '- id: hello' with 'llm: \"Say hello\"'",
        )
        return None
    out: list[StepSpec] = []
    kinds = registry.kind_names()
    for i, item in enumerate(raw):
        path = (*prefix, i)
        step = normalise_step(item)  # shorthand paths were aliased by _collect_ids
        if not isinstance(step, dict):
            c.add(
                "invalid-step",
                f"step {i + 1} must be a mapping with 'id' and a kind, got {type(item).__name__} {short(item)}",
                path,
                "write '- id: NAME' and a kind, e.g. 'llm: \"...\"'",
            )
            continue
        sid = step.get("id")
        label = f"step '{sid}'" if isinstance(sid, str) else f"step {i + 1}"
        if isinstance(sid, str):
            bad_ids.add(sid)
        kind = step.get("kind")
        if kind is None:
            present = [k for k in step if isinstance(k, str) and registry.kind(k)]
            if len(present) > 1:
                c.add(
                    "ambiguous-kind",
                    f"{label} has several kinds: {', '.join(present)}",
                    path,
                    "a step does one thing; keep one kind, or split it into steps",
                )
            else:
                close = [did_you_mean(str(k), kinds) for k in step if k != "id"]
                hint = next((h for h in close if h), None) or f"add one of: {', '.join(kinds)}"
                c.add("unknown-kind", f"{label} has no kind", path, hint)
            continue
        cls = registry.kind(kind) if isinstance(kind, str) else None
        if cls is None:
            c.add(
                "unknown-kind",
                f"unknown step kind {short(kind)} in {label}",
                (*path, "kind"),
                (did_you_mean(str(kind), kinds) if isinstance(kind, str) else None)
                or f"known kinds: {', '.join(kinds)}",
            )
            continue
        data = dict(step)
        nested_bad: set[str] = set()
        for f in cls.NESTED:
            if f in data:
                n_before = len(c.items)
                sub = _check_steps(c, data[f], (*path, f), bad_ids, depth + 1)
                if sub is None or len(c.items) > n_before:
                    nested_bad.add(f)
                data[f] = sub or [dict(_PLACEHOLDER)]
        try:
            spec = cls.model_validate(data)
        except ValidationError as exc:
            pydantic_errors(c, exc, cls, path, nested_bad)
            continue
        c.obj_paths[id(spec)] = path
        c.step_paths.setdefault(spec.id, path)
        if not nested_bad:
            bad_ids.discard(spec.id)
        out.append(spec)
    return out


# -- pass 2: the flow's own keys --------------------------------------------------------------


def _header(
    c: Collector, doc: dict[str, Any], steps: list[StepSpec] | None, flow_class: type[F]
) -> tuple[F | None, set[str], set[str]]:
    """Validate the flow's own keys. When some are invalid they are reported, set aside, and
    the rest is validated again so the reference checks can still run. Returns the flow and
    the names of inputs and agents set aside ("*" = all of them)."""
    data = {k: v for k, v in doc.items() if isinstance(k, str)}
    for k in doc:
        if not isinstance(k, str):
            c.add("unknown-key", f"unknown key {short(k)} in the flow", (str(k),), "keys are names")
    data["steps"] = steps or [dict(_PLACEHOLDER)]
    dropped_inputs: set[str] = set()
    dropped_agents: set[str] = set()
    for attempt in range(4):
        try:
            return flow_class.model_validate(data), dropped_inputs, dropped_agents
        except ValidationError as exc:
            if attempt == 0:
                pydantic_errors(c, exc, flow_class, (), {"steps"})
            changed = False
            for err in exc.errors(include_url=False):
                loc = err["loc"]
                if not loc or loc[0] == "steps":
                    continue
                top = loc[0]
                if (
                    top in ("inputs", "agents")
                    and len(loc) > 1
                    and isinstance(data.get(top), dict)
                    and loc[1] in data[top]
                ):
                    data[top] = {k: v for k, v in data[top].items() if k != loc[1]}
                    (dropped_inputs if top == "inputs" else dropped_agents).add(str(loc[1]))
                    changed = True
                elif top in data:
                    if top in ("inputs", "agents"):
                        (dropped_inputs if top == "inputs" else dropped_agents).add("*")
                    data.pop(top)
                    changed = True
                elif top == "name":
                    data["name"] = "_"
                    changed = True
            if not changed:
                break
    return None, dropped_inputs, dropped_agents


def check_document(
    doc: Any, flow_class: type[F], sources: SourceMap | None = None, file: str | None = None
) -> tuple[F | None, list[Diagnostic]]:
    """Validate a flow document into a ``flow_class``. Returns (flow, []) when valid, else
    (None, diagnostics) sorted by file position. Never raises for bad input."""
    c = Collector(sources, file)
    if not isinstance(doc, dict):
        c.add(
            "invalid-value",
            f"a flow must be a mapping, got {type(doc).__name__ if doc is not None else 'an empty document'}",
            (),
            "start with 'name:' and 'steps:'",
        )
        return None, c.items
    try:
        return _validate(c, _string_keys(doc, c.sources), flow_class)
    except RecursionError:
        c.add(
            "invalid-value",
            "the flow is nested too deeply (or refers to itself through YAML aliases)",
            (),
            "flatten it",
        )
        return None, _sorted(c.items)


def _validate(c: Collector, doc: dict[str, Any], flow_class: type[F]) -> tuple[F | None, list[Diagnostic]]:
    bad_ids: set[str] = set()
    _collect_ids(c, doc.get("steps"), ("steps",))
    lim = limits.current()
    if c.step_count > lim.flow_steps:
        c.add(
            "too-large",
            f"the flow has {c.step_count} steps, more than {lim.flow_steps} (LLMFLOW_MAX_STEPS)",
            ("steps",),
            "split it into flows that call each other (a 'flow' step), or raise LLMFLOW_MAX_STEPS",
        )
    steps = _check_steps(c, doc["steps"], ("steps",), bad_ids) if "steps" in doc else None
    if "steps" not in doc:
        c.add(
            "missing-key",
            "missing required key 'steps' in the flow",
            ("steps",),
            "add a list of steps, e.g. 'steps: [{id: hello, llm: \"Say hello\"}]'",
        )
    flow, dropped_inputs, dropped_agents = _header(c, doc, steps, flow_class)
    if flow is not None and steps:
        check_references(c, flow, bad_ids, dropped_inputs, dropped_agents)
    return (flow if not c.items else None), _sorted(c.items)


_YAML11_BOOLS = {
    True: ("on", "On", "ON", "yes", "Yes", "YES", "true", "True", "TRUE"),
    False: ("off", "Off", "OFF", "no", "No", "NO", "false", "False", "FALSE"),
}


def _string_keys(v: Any, sources: SourceMap | None = None, path: tuple[Any, ...] = ()) -> Any:
    """Mapping keys as strings, as YAML wrote them and as JSON (the event log) keeps them.
    Hydra reads YAML 1.1, where a key ``on`` is the boolean true: the source map, built
    from the text, says which word was written (``retry: {on: [...]}``)."""
    if isinstance(v, dict):
        out = {}
        for k, x in v.items():
            key = k if isinstance(k, str) else _key_text(k, sources, path)
            out[key] = _string_keys(x, sources, (*path, key))
        return out
    if isinstance(v, list):
        return [_string_keys(x, sources, (*path, i)) for i, x in enumerate(v)]
    return v


def _key_text(k: Any, sources: SourceMap | None = None, path: tuple[Any, ...] = ()) -> str:
    if k is None:
        return "null"
    if isinstance(k, bool):
        if sources is not None:
            written = [w for w in _YAML11_BOOLS[k] if (*path, w) in sources.entries]
            if len(written) == 1:
                return written[0]
        return "true" if k else "false"
    return str(k)


def _sorted(items: list[Diagnostic]) -> list[Diagnostic]:
    return sorted(items, key=lambda d: (d.location.file or "", d.location.line or 0, d.location.column or 0))
