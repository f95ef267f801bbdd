"""Validation before anything runs: every problem at once, each located precisely."""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from llmflow.model.diagnostics import Diagnostic, Location, did_you_mean, format_path
from llmflow.model.expressions import NAMESPACES, analyse
from llmflow.model.graph import build_graph
from llmflow.model.registry import normalise_step, registry
from llmflow.model.sourcemap import SourceMap
from llmflow.model.spec import (
    BroadcastStep,
    ConductorStep,
    Flow,
    LlmStep,
    LoopStep,
    ParallelStep,
    PythonStep,
    RouteStep,
    StepSpec,
)


class _Collector:
    def __init__(self, sources: SourceMap | None, file: str | None) -> None:
        self.sources = sources or SourceMap()
        self.file = file
        self.items: list[Diagnostic] = []
        self.step_paths: dict[str, tuple] = {}  # step id -> its key path in the document
        self.obj_paths: dict[int, tuple] = {}  # id(StepSpec) -> its key path

    def alias_shorthand(self, path: tuple, kind: str, shorthand: str | None, body: Any) -> None:
        """`{llm: {prompt: x}}` was flattened: make `path.prompt` point where `path.llm.prompt` is."""
        head = (*path, kind)
        n = len(head)
        for src in (self.sources.entries, self.sources.raw):
            if isinstance(body, dict):
                for k in [k for k in src if k[:n] == head and len(k) > n]:
                    src.setdefault((*path, *k[n:]), src[k])
            elif isinstance(body, list) and src is self.sources.entries:
                for k in [k for k in src if k[:n] == head and len(k) > n]:
                    src.setdefault((*path, "steps", *k[n:]), src[k])
            elif shorthand and head in src:
                src.setdefault((*path, shorthand), src[head])

    def add(self, code: str, message: str, path: tuple[str | int, ...], hint: str | None = None) -> None:
        loc = self.sources.locate(path)
        if loc.file is None and loc.origin is None and self.file:
            loc = Location(self.file)
        self.items.append(Diagnostic(code, message, format_path(path), hint, loc))


def _model_at(cls: type[BaseModel], loc: tuple[str | int, ...]) -> type[BaseModel] | None:
    """Walk a pydantic model's annotations along an error location."""
    current: Any = cls
    for part in loc:
        if isinstance(current, type) and issubclass(current, BaseModel):
            if not isinstance(part, str) or part not in current.model_fields:
                return current if part == loc[-1] else None
            current = current.model_fields[part].annotation
        current = _unwrap(current)
        if isinstance(part, int) or (isinstance(current, type) and not issubclass(current, BaseModel)):
            continue
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(tp: Any) -> Any:
    for _ in range(5):
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
            continue
        if origin in (list, dict) or origin is typing.Union or origin is types.UnionType:
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
            if models:
                tp = models[0]
                continue
            inner = [a for a in args if typing.get_origin(a) in (list, dict, typing.Annotated)]
            if inner:
                tp = inner[0]
                continue
            return tp
        return tp
    return tp


def _pydantic_errors(c: _Collector, exc: ValidationError, cls: type[BaseModel], prefix: tuple, skip: set[str]) -> None:
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        if loc and loc[0] in skip:
            continue
        path = (*prefix, *loc)
        etype = err["type"]
        if etype == "extra_forbidden":
            key = str(loc[-1])
            owner = _model_at(cls, loc[:-1]) or cls
            fields = list(owner.model_fields) if owner else []
            hint = did_you_mean(key, fields) or (
                f"known keys: {', '.join(f for f in fields if f != 'kind')}" if fields else "remove it"
            )
            where = format_path(path[:-1]) or "the flow"
            c.add("unknown-key", f"unknown key '{key}' in {where}", path, hint)
        elif etype == "missing":
            c.add("missing-key", f"missing required key '{loc[-1]}'", path, "add it")
        elif etype == "literal_error":
            expected = err.get("ctx", {}).get("expected", "")
            c.add("invalid-value", f"invalid value {err.get('input')!r}", path, f"expected {expected}")
        elif etype == "value_error":
            msg = str(err["msg"]).removeprefix("Value error, ")
            c.add("invalid-value", msg, path)
        else:
            c.add("invalid-value", f"{err['msg']} (got {_short(err.get('input'))})", path)


def _short(v: Any) -> str:
    s = repr(v)
    return s if len(s) <= 60 else s[:57] + "..."


def _check_steps(c: _Collector, raw: Any, prefix: tuple, bad_ids: set[str] | None = None) -> list[StepSpec] | None:
    """Validate a list of step documents. Returns the valid steps, or None when the list
    itself is unusable. Ids of invalid steps go to ``bad_ids`` so later checks skip them."""
    bad_ids = bad_ids if bad_ids is not None else set()
    if not isinstance(raw, list):
        c.add("invalid-value", "steps must be a list of steps", prefix, "write steps as a YAML list: '- id: ...'")
        return None
    if not raw:
        c.add("invalid-value", "a flow needs at least one step", prefix)
        return None
    out: list[StepSpec] = []
    kinds = sorted(registry.kinds)
    for i, item in enumerate(raw):
        path = (*prefix, i)
        step = normalise_step(item)
        if isinstance(item, dict) and isinstance(step, dict) and "kind" not in item and isinstance(step.get("kind"), str):
            k = step["kind"]
            cls_ = registry.kind(k)
            c.alias_shorthand(path, k, cls_.SHORTHAND if cls_ else None, item.get(k))
        if isinstance(step, dict) and isinstance(step.get("id"), str):
            bad_ids.add(step["id"])
        if not isinstance(step, dict):
            c.add("invalid-step", f"step {i + 1} must be a mapping, got {type(item).__name__}", path)
            continue
        kind = step.get("kind")
        if kind is None:
            present = [k for k in step if isinstance(k, str) and registry.kind(k)]
            close = [did_you_mean(str(k), kinds) for k in step if k not in ("id",)]
            hint = next((h for h in close if h), None) or f"add one of: {', '.join(kinds)}"
            if len(present) > 1:
                c.add("ambiguous-kind", f"step has several kinds: {', '.join(present)}", path, "keep one")
            else:
                c.add("unknown-kind", "step has no kind", path, hint)
            continue
        cls = registry.kind(kind) if isinstance(kind, str) else None
        if cls is None:
            c.add(
                "unknown-kind",
                f"unknown step kind {kind!r}",
                (*path, "kind"),
                did_you_mean(str(kind), kinds) or f"known kinds: {', '.join(kinds)}",
            )
            continue
        data = dict(step)
        nested_bad: set[str] = set()
        for f in cls.NESTED:
            if f in data:
                n_before = len(c.items)
                sub = _check_steps(c, data[f], (*path, f), bad_ids)
                if sub is None or len(c.items) > n_before:
                    nested_bad.add(f)
                data[f] = sub or [{"kind": "python", "id": "_placeholder", "function": "x"}]
        try:
            spec = cls.model_validate(data)
            if spec.id in c.step_paths:
                first = format_path(c.step_paths[spec.id])
                c.add("duplicate-id", f"duplicate step id '{spec.id}'", (*path, "id"), f"first used at {first}; ids must be unique")
            else:
                c.step_paths[spec.id] = path
            c.obj_paths[id(spec)] = path
            if not nested_bad:
                bad_ids.discard(spec.id)
            out.append(spec)
        except ValidationError as exc:
            _pydantic_errors(c, exc, cls, path, nested_bad)
    return out


def validate_document(
    doc: Any, sources: SourceMap | None = None, file: str | None = None
) -> tuple[Flow | None, list[Diagnostic]]:
    c = _Collector(sources, file)
    if not isinstance(doc, dict):
        c.add("invalid-flow", f"a flow must be a mapping, got {type(doc).__name__}", (), "start with 'name:' and 'steps:'")
        return None, c.items
    bad_ids: set[str] = set()
    steps = _check_steps(c, doc.get("steps"), ("steps",), bad_ids) if "steps" in doc else None
    if "steps" not in doc:
        c.add("missing-key", "missing required key 'steps'", ("steps",), "add a list of steps")
    data = dict(doc)
    data["steps"] = steps or [{"kind": "python", "id": "_placeholder", "function": "x"}]
    flow: Flow | None = None
    try:
        flow = Flow.model_validate(data)
    except ValidationError as exc:
        _pydantic_errors(c, exc, Flow, (), {"steps"})
        return None, c.items  # step references are checked once the flow's header is valid
    if steps:
        _semantic(c, flow, bad_ids)
    return (flow if not c.items else None), c.items


def _semantic(c: _Collector, flow: Flow, bad_ids: set[str]) -> None:
    # paths of every step, for locating diagnostics
    paths: dict[str, tuple] = dict(c.step_paths)
    ids = list(paths)
    for b in bad_ids:  # invalid steps are reported already; don't report references to them
        paths.setdefault(b, ("steps",))
    graph = build_graph(flow.steps)
    loop_members: dict[str, LoopStep] = {}
    for s in flow.all_steps():
        if isinstance(s, LoopStep):
            for b in s.steps:
                loop_members[b.id] = s

    # needs, route targets, agents, functions
    for s in flow.all_steps():
        p = c.obj_paths.get(id(s), paths.get(s.id, ("steps",)))
        for j, n in enumerate(s.needs or []):
            if n not in paths:
                c.add("unknown-step", f"step '{s.id}' needs unknown step '{n}'", (*p, "needs", j), did_you_mean(n, ids) or f"known steps: {', '.join(ids)}")
            elif n == s.id:
                c.add("cycle", f"step '{s.id}' needs itself", (*p, "needs", j), "remove it from needs")
        if isinstance(s, RouteStep):
            for r_i, r in enumerate(s.routes):
                for t in r.to:
                    if t not in paths:
                        c.add("unknown-step", f"route '{s.id}' goes to unknown step '{t}'", (*p, "routes", r_i, "to"), did_you_mean(t, ids))
            for t in s.default:
                if t not in paths:
                    c.add("unknown-step", f"route '{s.id}' defaults to unknown step '{t}'", (*p, "default"), did_you_mean(t, ids))
        agent_refs: list[tuple[str, tuple]] = []
        if isinstance(s, LlmStep) and s.agent:
            agent_refs.append((s.agent, (*p, "agent")))
        if isinstance(s, BroadcastStep):
            agent_refs += [(a, (*p, "agents", k)) for k, a in enumerate(s.agents)]
        if isinstance(s, ConductorStep):
            agent_refs += [(a, (*p, "participants", k)) for k, a in enumerate(s.participants)]
            if s.host != "sequence":
                agent_refs.append((s.host, (*p, "host")))
        for name, ap in agent_refs:
            if name not in flow.agents:
                known = list(flow.agents)
                c.add("unknown-agent", f"step '{s.id}' uses unknown agent '{name}'", ap, did_you_mean(name, known) or (f"known agents: {', '.join(known)}" if known else "define it under 'agents:'"))
        if isinstance(s, PythonStep) and ":" not in s.function and "." not in s.function and s.function not in registry.functions:
            pass  # registered at run time by user code; checked when the step runs

    # cycles (outside loops)
    dupes = any(x.code == "duplicate-id" for x in c.items)
    cyc = None if dupes else graph.find_cycle()
    if cyc:
        first = cyc[0]
        c.add("cycle", f"steps form a cycle: {' -> '.join(cyc)}", (*paths.get(first, ("steps",)), "needs"), "use a 'loop' step to repeat steps")

    # templates and conditions
    ancestors = _ancestors(flow)
    for s in flow.all_steps():
        p = c.obj_paths.get(id(s), paths.get(s.id, ("steps",)))
        for field, text, is_cond in _templates_of(s):
            _check_template(c, flow, s, ancestors, loop_members, text, (*p, *field), is_cond, paths)
    for k, text in (flow.outputs or {}).items():
        _check_template(c, flow, None, ancestors, loop_members, text, ("outputs", k), False, paths)


def _templates_of(s: StepSpec) -> list[tuple[tuple, str, bool]]:
    out: list[tuple[tuple, str, bool]] = []
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

    def strings(v: Any, path: tuple) -> None:
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


def _ancestors(flow: Flow) -> dict[str, set[str]]:
    g = build_graph(flow.steps)
    memo: dict[str, set[str]] = {}

    def anc(n: str, stack: frozenset[str] = frozenset()) -> set[str]:
        if n in memo:
            return memo[n]
        res: set[str] = set()
        node = g.nodes.get(n)
        if node is None or n in stack:
            return res
        for d in node.needs:
            res.add(d)
            res |= anc(d, stack | {n})
            dn = g.nodes.get(d)
            if dn is not None and isinstance(dn.step, ParallelStep):
                res |= {c.id for c in dn.step.steps}
            if dn is not None and isinstance(dn.step, LoopStep):
                res |= {c.id for c in dn.step.steps}
        memo[n] = res
        return res

    for n in g.nodes:
        anc(n)
    return memo


def _check_template(
    c: _Collector,
    flow: Flow,
    step: StepSpec | None,
    ancestors: dict[str, set[str]],
    loop_members: dict[str, LoopStep],
    text: str,
    path: tuple,
    is_cond: bool,
    paths: dict[str, tuple],
) -> None:
    if not is_cond and "{{" not in text and "{%" not in text:
        return
    a = analyse(text, condition=is_cond)
    if a.error:
        code = "unsafe-expression" if "unsafe" in a.error else "bad-expression"
        c.add(code, f"{a.error} in {text!r}", path, a.hint)
        return
    allowed: set[str] = set()
    loop = loop_members.get(step.id) if step else None
    if step is not None:
        allowed = set(ancestors.get(step.id, set()))
        if loop is not None:
            allowed |= {b.id for b in loop.steps} | ancestors.get(loop.id, set())
        if isinstance(step, LoopStep):
            allowed |= {b.id for b in step.steps}
    else:
        allowed = set(paths)
    for ref in a.references:
        ns, name = ref.namespace, ref.name
        if ns not in NAMESPACES:
            if ns in ("range", "lipsum", "dict", "cycler", "joiner", "namespace", "true", "false", "none", "True", "False", "None"):
                continue
            c.add("unknown-name", f"unknown name '{ns}' in {text!r}", path, did_you_mean(ns, NAMESPACES) or f"available: {', '.join(NAMESPACES)}")
        elif ns == "inputs" and name is not None and name not in flow.inputs:
            c.add("unknown-input", f"unknown input '{name}' in {text!r}", path, did_you_mean(name, flow.inputs) or ("declare it under 'inputs:'" if not flow.inputs else f"declared inputs: {', '.join(flow.inputs)}"))
        elif ns == "steps" and name is not None:
            if name not in paths:
                c.add("unknown-step", f"unknown step '{name}' in {text!r}", path, did_you_mean(name, paths) or f"known steps: {', '.join(paths)}")
            elif step is not None and name not in allowed and not (isinstance(step, LoopStep) and path[-1] != "until" and False):
                c.add("not-upstream", f"step '{step.id}' reads step '{name}', which does not run before it", path, f"add '{name}' to the needs of '{step.id}'")
        elif ns == "item" and step is not None and step.for_each is None and loop is None:
            c.add("unknown-name", f"'item' used in step '{step.id}', which has no for_each", path, "add 'for_each:' or remove the reference")
        elif ns == "matrix" and step is not None and name is not None and name not in (step.matrix or {}):
            c.add("unknown-name", f"unknown matrix key '{name}' in {text!r}", path, did_you_mean(name, step.matrix or {}) or "add it under 'matrix:'")


# -- inputs ----------------------------------------------------------------------------------

_TYPES = {"string": str, "integer": int, "number": (int, float), "boolean": bool, "array": list, "object": dict}


def validate_inputs(flow: Flow, given: dict[str, Any], *, coerce_strings: bool = True) -> tuple[dict[str, Any], list[Diagnostic]]:
    """Check run inputs against the flow: unknown names, missing required, wrong types."""
    import json

    out: dict[str, Any] = {}
    diags: list[Diagnostic] = []
    for k, v in given.items():
        if k not in flow.inputs:
            known = list(flow.inputs)
            diags.append(Diagnostic("unknown-input", f"flow '{flow.name}' has no input '{k}'", f"inputs.{k}", did_you_mean(k, known) or (f"inputs: {', '.join(known)}" if known else "this flow takes no inputs")))
            continue
        spec = flow.inputs[k]
        if coerce_strings and isinstance(v, str) and spec.type not in ("string", "any"):
            try:
                if spec.type == "boolean":
                    low = v.strip().lower()
                    if low in ("true", "yes", "1", "on"):
                        v = True
                    elif low in ("false", "no", "0", "off"):
                        v = False
                else:
                    v = json.loads(v)
                if spec.type == "number" and isinstance(v, int) and not isinstance(v, bool):
                    v = float(v)
            except ValueError:
                pass
        expected = _TYPES.get(spec.type)
        bad = expected is not None and (not isinstance(v, expected) or (spec.type in ("integer", "number") and isinstance(v, bool)))
        if bad:
            diags.append(Diagnostic("wrong-type", f"input '{k}' must be {spec.type}, got {type(v).__name__} {_short(v)}", f"inputs.{k}", f"give a {spec.type} value"))
            continue
        if spec.enum is not None and v not in spec.enum:
            diags.append(Diagnostic("invalid-value", f"input '{k}' must be one of {spec.enum}, got {_short(v)}", f"inputs.{k}"))
            continue
        out[k] = v
    for k, spec in flow.inputs.items():
        if k in out or any(d.path == f"inputs.{k}" for d in diags):
            continue
        if spec.is_required:
            diags.append(Diagnostic("missing-input", f"missing required input '{k}' ({spec.type})", f"inputs.{k}", f"pass it with --input {k}=..."))
        else:
            out[k] = spec.default
    return out, diags
