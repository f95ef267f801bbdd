"""Validation before anything runs: every problem at once, each located precisely.

:func:`validate_document` checks a flow document (a mapping, already composed) in three
passes, so one mistake does not hide the others:

1. steps, one by one (kind, keys, values), plus ids that are repeated anywhere;
2. the flow's own keys; entries that are invalid are set aside so that pass 3 can run;
3. references between parts: ``needs``, route targets, agents, names used in templates and
   conditions, cycles outside loops.

Diagnostic codes are stable (tests and tools match on them); see docs/flows.md.
"""

from __future__ import annotations

import re
import types
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from llmflow.model.diagnostics import Diagnostic, Location, did_you_mean, format_path
from llmflow.model.expressions import JINJA_GLOBALS, NAMESPACES, analyse
from llmflow.model.graph import Graph, build_graph
from llmflow.model.registry import normalise_step, registry
from llmflow.model.sourcemap import SourceMap
from llmflow.model.spec import (
    BroadcastStep,
    ConductorStep,
    Flow,
    LlmStep,
    LoopStep,
    ParallelStep,
    RouteStep,
    StepSpec,
)

_PLACEHOLDER = {"kind": "python", "id": "_placeholder", "function": "x"}
_ID_HINT = "ids start with a letter or '_' and use only letters, digits and '_'"


class _Collector:
    def __init__(self, sources: SourceMap | None, file: str | None) -> None:
        self.sources = sources or SourceMap()
        self.file = file
        self.items: list[Diagnostic] = []
        self.step_paths: dict[str, tuple] = {}  # id of a valid step -> its key path
        self.obj_paths: dict[int, tuple] = {}  # id(StepSpec) -> its key path
        self.all_ids: dict[str, tuple] = {}  # every step id in the document -> first key path
        self.written: dict[tuple, tuple[str, Any, set]] = {}  # step path -> (kind, body, its own keys) of a shorthand step

    def alias_shorthand(self, path: tuple, kind: str, shorthand: str | None, body: Any, keys: set) -> None:
        """`{llm: {prompt: x}}` was flattened: make `path.prompt` point where `path.llm.prompt` is."""
        head = (*path, kind)
        n = len(head)
        self.written[path] = (kind, body, keys)
        for src in (self.sources.entries, self.sources.raw):
            if isinstance(body, dict):
                for k in [k for k in src if k[:n] == head and len(k) > n]:
                    src.setdefault((*path, *k[n:]), src[k])
            elif isinstance(body, list) and src is self.sources.entries:
                for k in [k for k in src if k[:n] == head and len(k) > n]:
                    src.setdefault((*path, "steps", *k[n:]), src[k])
            elif shorthand and head in src:
                src.setdefault((*path, shorthand), src[head])

    def as_written(self, path: tuple) -> tuple:
        """A normalised key path (`steps[0].prompt`) as the document spells it (`steps[0].llm.prompt`)."""
        for i in range(len(path), 0, -1):
            found = self.written.get(path[:i])
            if found is None or i == len(path):
                continue
            kind, body, keys = found
            rest = path[i:]
            if isinstance(body, dict) and (rest[0] in body or rest[0] not in keys):
                return (*self.as_written(path[:i]), kind, *rest)
            if isinstance(body, list) and rest[0] == "steps":
                return (*self.as_written(path[:i]), kind, *rest[1:])
            if not isinstance(body, dict | list) and len(rest) == 1 and rest[0] != "id" and rest[0] not in ("needs", "when"):
                cls = registry.kind(kind)
                if cls is not None and rest[0] == cls.SHORTHAND:
                    return (*self.as_written(path[:i]), kind)
            return (*self.as_written(path[:i]), *rest)
        return path

    def add(self, code: str, message: str, path: tuple[str | int, ...], hint: str | None = None) -> None:
        loc = self.sources.locate(path)
        if loc.file is None and loc.origin is None and self.file:
            loc = Location(self.file)
        self.items.append(Diagnostic(code, message, format_path(self.as_written(path)), hint, loc))


# -- pydantic errors -> diagnostics ---------------------------------------------------------


def _strip_optional(tp: Any) -> Any:
    for _ in range(10):
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
            continue
        if origin is typing.Union or origin is types.UnionType:
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(args) == 1:
                tp = args[0]
                continue
        return tp
    return tp


def _member_for_tag(members: list[Any], tag: Any) -> Any:
    for m in members:
        if isinstance(m, type) and issubclass(m, BaseModel) and tag == m.__name__:
            return m
        origin = typing.get_origin(m)
        if origin is not None and isinstance(tag, str) and tag.startswith(origin.__name__ + "["):
            return m
    return None


_TAG_WORDS = {"str": "a string", "int": "an integer", "float": "a number", "bool": "true or false", "list": "a list", "dict": "a mapping"}


def _describe_tag(tag: Any) -> str:
    t = str(tag)
    base = t.split("[")[0]
    return _TAG_WORDS.get(base, "a mapping" if t[:1].isupper() else t)


def _split_loc(cls: type[BaseModel], loc: tuple) -> tuple[tuple, list[Any], type[BaseModel] | None, int | None]:
    """Clean an error location: drop pydantic's union member tags. Returns (path, tags,
    the model owning the last key, the length of the path where the first tag was)."""
    clean: list[Any] = []
    tags: list[Any] = []
    at_tag: int | None = None
    owner: type[BaseModel] | None = cls
    tp: Any = cls
    for part in loc:
        tp = _strip_optional(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            owner = tp
            clean.append(part)
            tp = tp.model_fields[part].annotation if isinstance(part, str) and part in tp.model_fields else None
            continue
        origin = typing.get_origin(tp)
        if origin is typing.Union or origin is types.UnionType:
            if at_tag is None:
                at_tag = len(clean)
            tags.append(part)
            tp = _member_for_tag([a for a in typing.get_args(tp) if a is not type(None)], part)
            continue
        clean.append(part)
        if origin is list:
            tp = typing.get_args(tp)[0] if typing.get_args(tp) else None
        elif origin is dict:
            tp = typing.get_args(tp)[1] if typing.get_args(tp) else None
        else:
            tp = None
    return tuple(clean), tags, owner, at_tag


def _short(v: Any) -> str:
    s = repr(v)
    return s if len(s) <= 60 else s[:57] + "..."


def _got(v: Any) -> str:
    return f"got {type(v).__name__} {_short(v)}" if v is not None else "got null"


_TYPE_WORDS = {
    "string_type": "a string",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}


def _pydantic_errors(c: _Collector, exc: ValidationError, cls: type[BaseModel], prefix: tuple, skip: set[str]) -> None:
    unions: dict[tuple, tuple[list[str], Any]] = {}  # path at a union -> (alternatives, input)
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        if loc and loc[0] in skip:
            continue
        rel, tags, owner, at_tag = _split_loc(cls, loc)
        etype = err["type"]
        given = err.get("input")
        if tags and at_tag is not None and etype in _TYPE_WORDS:
            key = (*prefix, *rel[:at_tag])
            alts, first_input = unions.setdefault(key, ([], given if len(rel) == at_tag else None))
            word = _describe_tag(tags[0])
            if word not in alts:
                alts.append(word)
            continue
        path = (*prefix, *rel)
        _one_error(c, err, etype, given, rel, path, owner)
    for path, (alts, given) in unions.items():
        expected = " or ".join(alts)
        where = format_path(path) or "the flow"
        c.add("invalid-value", f"{where} must be {expected}, {_got(given) if given is not None else 'got something else'}", path, f"give {expected}")


def _one_error(c: _Collector, err: Any, etype: str, given: Any, rel: tuple, path: tuple, owner: type[BaseModel] | None) -> None:
    ctx = err.get("ctx") or {}
    name = format_path(path) or "the flow"
    if etype == "extra_forbidden":
        key = str(rel[-1]) if rel else "?"
        fields = [f for f in (owner.model_fields if owner else {}) if f != "kind"]
        hint = did_you_mean(key, fields) or (f"known keys: {', '.join(fields)}" if fields else "remove it")
        c.add("unknown-key", f"unknown key '{key}' in {_owner_name(c, path[:-1])}", path, hint)
    elif etype == "missing":
        c.add("missing-key", f"missing required key '{rel[-1] if rel else '?'}' in {_owner_name(c, path[:-1])}", path, "add it")
    elif etype == "literal_error":
        options = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        hint = (did_you_mean(str(given), options) if isinstance(given, str) else None) or f"expected {ctx.get('expected', '')}"
        c.add("invalid-value", f"invalid value {_short(given)} for {name}", path, hint)
    elif etype == "string_pattern_mismatch" and rel and rel[-1] == "id":
        c.add("invalid-value", f"invalid step id {_short(given)}", path, _ID_HINT)
    elif etype == "value_error":
        c.add("invalid-value", str(err["msg"]).removeprefix("Value error, "), path)
    elif etype in _TYPE_WORDS:
        c.add("invalid-value", f"{name} must be {_TYPE_WORDS[etype]}, {_got(given)}", path, f"give {_TYPE_WORDS[etype]}")
    elif etype in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        op = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}[etype]
        bound = next(iter(ctx.values()), "?")
        c.add("invalid-value", f"{name} must be {op} {bound}, got {_short(given)}", path)
    elif etype == "too_short":
        n = ctx.get("min_length", 1)
        c.add("invalid-value", f"{name} needs at least {n} item{'s' if n != 1 else ''}", path)
    elif etype == "too_long":
        c.add("invalid-value", f"{name} has too many items (at most {ctx.get('max_length', '?')})", path)
    else:
        c.add("invalid-value", f"{name}: {err['msg']} ({_got(given)})", path)


def _owner_name(c: _Collector, path: tuple) -> str:
    """'step 'x'' for a step's key path, else the key path."""
    for sid, p in c.all_ids.items():
        if p == path:
            return f"step '{sid}'"
    return format_path(path) or "the flow"


# -- pass 1: steps --------------------------------------------------------------------------


def _collect_ids(c: _Collector, raw: Any, prefix: tuple) -> None:
    """Every step id in the document (valid steps or not), and repeated ids."""
    if not isinstance(raw, list):
        return
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
                c.add("duplicate-id", f"duplicate step id '{sid}'", (*path, "id"), f"first used at {first}; ids must be unique in a flow")
            else:
                c.all_ids[sid] = path
        kind = step.get("kind")
        cls = registry.kind(kind) if isinstance(kind, str) else None
        for f in cls.NESTED if cls else ():
            _collect_ids(c, step.get(f), (*path, f))


def _check_steps(c: _Collector, raw: Any, prefix: tuple, bad_ids: set[str]) -> list[StepSpec] | None:
    """Validate a list of step documents. Returns the valid steps, or None when the list
    itself is unusable. Ids of invalid steps go to ``bad_ids`` so later checks skip them."""
    if not isinstance(raw, list):
        got = f"got {type(raw).__name__}" if raw is not None else "got nothing"
        c.add("invalid-value", f"{format_path(prefix)} must be a list of steps, {got}", prefix, "write steps as a YAML list: '- id: ...'")
        return None
    if not raw:
        c.add("invalid-value", f"{format_path(prefix)} needs at least one step", prefix, "add a step, e.g. '- id: hello' with 'llm: \"Say hello\"'")
        return None
    out: list[StepSpec] = []
    kinds = sorted(registry.kinds)
    for i, item in enumerate(raw):
        path = (*prefix, i)
        step = normalise_step(item)  # shorthand paths were aliased by _collect_ids
        if not isinstance(step, dict):
            c.add("invalid-step", f"step {i + 1} must be a mapping with 'id' and a kind, got {type(item).__name__} {_short(item)}", path, "write '- id: NAME' and a kind, e.g. 'llm: \"...\"'")
            continue
        sid = step.get("id")
        label = f"step '{sid}'" if isinstance(sid, str) else f"step {i + 1}"
        if isinstance(sid, str):
            bad_ids.add(sid)
        kind = step.get("kind")
        if kind is None:
            present = [k for k in step if isinstance(k, str) and registry.kind(k)]
            if len(present) > 1:
                c.add("ambiguous-kind", f"{label} has several kinds: {', '.join(present)}", path, "a step does one thing; keep one kind, or split it into steps")
            else:
                close = [did_you_mean(str(k), kinds) for k in step if k != "id"]
                hint = next((h for h in close if h), None) or f"add one of: {', '.join(kinds)}"
                c.add("unknown-kind", f"{label} has no kind", path, hint)
            continue
        cls = registry.kind(kind) if isinstance(kind, str) else None
        if cls is None:
            c.add("unknown-kind", f"unknown step kind {_short(kind)} in {label}", (*path, "kind"), (did_you_mean(str(kind), kinds) if isinstance(kind, str) else None) or f"known kinds: {', '.join(kinds)}")
            continue
        data = dict(step)
        nested_bad: set[str] = set()
        for f in cls.NESTED:
            if f in data:
                n_before = len(c.items)
                sub = _check_steps(c, data[f], (*path, f), bad_ids)
                if sub is None or len(c.items) > n_before:
                    nested_bad.add(f)
                data[f] = sub or [dict(_PLACEHOLDER)]
        try:
            spec = cls.model_validate(data)
        except ValidationError as exc:
            _pydantic_errors(c, exc, cls, path, nested_bad)
            continue
        c.obj_paths[id(spec)] = path
        c.step_paths.setdefault(spec.id, path)
        if not nested_bad:
            bad_ids.discard(spec.id)
        out.append(spec)
    return out


# -- pass 2: the flow's own keys --------------------------------------------------------------


def _header(c: _Collector, doc: dict, steps: list[StepSpec] | None) -> tuple[Flow | None, set[str], set[str]]:
    """Validate the flow's own keys. When some are invalid they are reported, set aside, and
    the rest is validated again so the reference checks can still run. Returns the flow and
    the names of inputs and agents set aside ("*" = all of them)."""
    data = {k: v for k, v in doc.items() if isinstance(k, str)}
    for k in doc:
        if not isinstance(k, str):
            c.add("unknown-key", f"unknown key {_short(k)} in the flow", (str(k),), "keys are names")
    data["steps"] = steps or [dict(_PLACEHOLDER)]
    dropped_inputs: set[str] = set()
    dropped_agents: set[str] = set()
    for attempt in range(4):
        try:
            return Flow.model_validate(data), dropped_inputs, dropped_agents
        except ValidationError as exc:
            if attempt == 0:
                _pydantic_errors(c, exc, Flow, (), {"steps"})
            changed = False
            for err in exc.errors(include_url=False):
                loc = err["loc"]
                if not loc or loc[0] == "steps":
                    continue
                top = loc[0]
                if top in ("inputs", "agents") and len(loc) > 1 and isinstance(data.get(top), dict) and loc[1] in data[top]:
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


def validate_document(
    doc: Any, sources: SourceMap | None = None, file: str | None = None
) -> tuple[Flow | None, list[Diagnostic]]:
    """Validate a flow document. Returns (flow, []) when valid, else (None, diagnostics)
    sorted by file position. Never raises for bad input."""
    c = _Collector(sources, file)
    if not isinstance(doc, dict):
        c.add("invalid-value", f"a flow must be a mapping, got {type(doc).__name__ if doc is not None else 'an empty document'}", (), "start with 'name:' and 'steps:'")
        return None, c.items
    try:
        return _validate(c, _string_keys(doc))
    except RecursionError:
        c.add("invalid-value", "the flow is nested too deeply (or refers to itself through YAML aliases)", (), "flatten it")
        return None, _sorted(c.items)


def _validate(c: _Collector, doc: dict) -> tuple[Flow | None, list[Diagnostic]]:
    bad_ids: set[str] = set()
    _collect_ids(c, doc.get("steps"), ("steps",))
    steps = _check_steps(c, doc["steps"], ("steps",), bad_ids) if "steps" in doc else None
    if "steps" not in doc:
        c.add("missing-key", "missing required key 'steps' in the flow", ("steps",), "add a list of steps, e.g. 'steps: [{id: hello, llm: \"Say hello\"}]'")
    flow, dropped_inputs, dropped_agents = _header(c, doc, steps)
    if flow is not None and steps:
        _semantic(c, flow, bad_ids, dropped_inputs, dropped_agents)
    return (flow if not c.items else None), _sorted(c.items)


def _string_keys(v: Any) -> Any:
    """Mapping keys as strings, as YAML wrote them and as JSON (the event log) keeps them."""
    if isinstance(v, dict):
        return {k if isinstance(k, str) else _key_text(k): _string_keys(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_string_keys(x) for x in v]
    return v


def _key_text(k: Any) -> str:
    if k is None:
        return "null"
    if isinstance(k, bool):
        return "true" if k else "false"
    return str(k)


def _sorted(items: list[Diagnostic]) -> list[Diagnostic]:
    return sorted(items, key=lambda d: (d.location.file or "", d.location.line or 0, d.location.column or 0))


# -- pass 3: references -------------------------------------------------------------------------


class _Scopes:
    """Which loop body each step belongs to, and every step's enclosing groups."""

    def __init__(self, flow: Flow) -> None:
        self.loop_of: dict[str, str | None] = {}  # step id -> innermost loop (None: top level)
        self.loops: dict[str, LoopStep] = {}
        self.members: dict[str, list[str]] = {}  # parallel/loop id -> every step inside it
        self.graphs: dict[str | None, Graph] = {None: build_graph(flow.steps)}

        def walk(steps: list[StepSpec], loop: str | None) -> list[str]:
            ids: list[str] = []
            for s in steps:
                self.loop_of[s.id] = loop
                ids.append(s.id)
                if isinstance(s, LoopStep):
                    self.loops[s.id] = s
                    self.graphs[s.id] = build_graph(s.steps)
                    self.members[s.id] = walk(s.steps, s.id)
                    ids += self.members[s.id]
                elif isinstance(s, ParallelStep):
                    self.members[s.id] = walk(s.steps, loop)
                    ids += self.members[s.id]
            return ids

        walk(flow.steps, None)
        self._anc: dict[str, set[str]] = {}

    def enclosing_loops(self, sid: str) -> set[str]:
        out: set[str] = set()
        loop = self.loop_of.get(sid)
        while loop is not None and loop not in out:
            out.add(loop)
            loop = self.loop_of.get(loop)
        return out

    def ancestors(self, sid: str) -> set[str]:
        """Steps that have finished whenever ``sid`` runs (members of finished groups too)."""
        if sid in self._anc:
            return self._anc[sid]
        self._anc[sid] = set()  # cycle guard
        loop = self.loop_of.get(sid)
        g = self.graphs.get(loop)
        res: set[str] = set()
        stack = list(g.nodes[sid].needs) if g is not None and sid in g.nodes else []
        while stack:
            d = stack.pop()
            if d in res:
                continue
            res.add(d)
            stack += self.members.get(d, [])  # a finished group's steps have finished too
            if g is not None and d in g.nodes:
                stack += list(g.nodes[d].needs)
        if loop is not None:
            res |= set(self.members[loop]) - {sid}  # earlier body steps, and last iteration's
            res |= self.ancestors(loop)
        self._anc[sid] = res
        return res


def _semantic(c: _Collector, flow: Flow, bad_ids: set[str], dropped_inputs: set[str], dropped_agents: set[str]) -> None:
    paths: dict[str, tuple] = dict(c.all_ids)
    ids = [i for i in c.all_ids if i not in bad_ids]
    known = list(c.all_ids)
    scopes = _Scopes(flow)

    def known_hint(name: str) -> str:
        return did_you_mean(name, known) or f"known steps: {', '.join(known)}"

    def loop_name(loop: str | None) -> str:
        return f"loop '{loop}'" if loop else "the top level of the flow"

    for s in flow.all_steps():
        p = c.obj_paths.get(id(s), paths.get(s.id, ("steps",)))
        here = scopes.loop_of.get(s.id)
        for j, n in enumerate(s.needs or []):
            if n not in paths:
                c.add("unknown-step", f"step '{s.id}' needs unknown step '{n}'", (*p, "needs", j), known_hint(n))
            elif n == s.id:
                c.add("cycle", f"step '{s.id}' needs itself", (*p, "needs", j), "remove it from needs")
            elif n in scopes.loop_of and scopes.loop_of[n] != here:
                there = scopes.loop_of[n]
                hint = (
                    f"a step inside a loop can only need steps of the same loop; to wait for '{n}', add it to the needs of loop '{here}'"
                    if here
                    else f"steps inside a loop repeat; need the loop '{there}' instead"
                )
                c.add("unknown-step", f"step '{s.id}' needs '{n}', which is inside {loop_name(there)}, not in {loop_name(here)}", (*p, "needs", j), hint)
        if isinstance(s, RouteStep):
            for r_i, r in enumerate(s.routes):
                for t_i, t in enumerate(r.to):
                    _check_route_target(c, s, t, (*p, "routes", r_i, "to", t_i), paths, scopes, known_hint)
            for t_i, t in enumerate(s.default):
                _check_route_target(c, s, t, (*p, "default", t_i), paths, scopes, known_hint)
        _check_agents(c, flow, s, p, dropped_agents)
        if isinstance(s, LlmStep) and s.model and "{{" in s.model:
            c.add("invalid-value", f"step '{s.id}': 'model' is not a template ({s.model!r})", (*p, "model"), "to run one variant per model, use 'matrix: {model: [provider:a, provider:b]}'")
        elif isinstance(s, LlmStep) and s.model:
            _check_model(c, s.model, f"step '{s.id}'", (*p, "model"))
        models = (s.matrix or {}).get("model")
        if isinstance(models, list):
            for k, m in enumerate(models):
                _check_model(c, m, f"step '{s.id}'", (*p, "matrix", "model", k))
    for name, a in flow.agents.items():
        if a.model and "{{" in a.model:
            c.add("invalid-value", f"agent '{name}': 'model' is not a template ({a.model!r})", ("agents", name, "model"), "write provider:model, or use ${...} to take it from the config")
        elif a.model:
            _check_model(c, a.model, f"agent '{name}'", ("agents", name, "model"))
    if flow.model:
        _check_model(c, flow.model, f"flow '{flow.name}'", ("model",))

    _check_cycles(c, scopes, paths)

    for s in flow.all_steps():
        p = c.obj_paths.get(id(s), paths.get(s.id, ("steps",)))
        for field, text, is_cond in _templates_of(s):
            _check_template(c, flow, s, scopes, text, (*p, *field), is_cond, paths, ids, dropped_inputs)
    for k, text in (flow.outputs or {}).items():
        _check_template(c, flow, None, scopes, text, ("outputs", k), False, paths, ids, dropped_inputs)


def _check_model(c: _Collector, model: Any, owner: str, path: tuple) -> None:
    if not isinstance(model, str) or ":" not in model:
        c.add(
            "invalid-value",
            f"{owner}: model {_short(model)} does not name a provider",
            path,
            "write it as provider:model, e.g. openai:gpt-4o-mini, local:gemma3-270m or fake: (see docs/models.md)",
        )


def _check_route_target(c: _Collector, s: RouteStep, t: str, path: tuple, paths: dict, scopes: _Scopes, known_hint: Any) -> None:
    if t not in paths:
        c.add("unknown-step", f"route '{s.id}' goes to unknown step '{t}'", path, known_hint(t))
    elif t == s.id:
        c.add("cycle", f"route '{s.id}' goes to itself", path, "use a 'loop' step to repeat steps")
    elif t in scopes.loop_of and scopes.loop_of[t] != scopes.loop_of.get(s.id):
        c.add("unknown-step", f"route '{s.id}' goes to '{t}', which is in another loop body", path, "a route can only choose steps at its own level")


def _check_agents(c: _Collector, flow: Flow, s: StepSpec, p: tuple, dropped: set[str]) -> None:
    refs: list[tuple[str, tuple]] = []
    if isinstance(s, LlmStep) and s.agent:
        refs.append((s.agent, (*p, "agent")))
    if isinstance(s, BroadcastStep):
        refs += [(a, (*p, "agents", k)) for k, a in enumerate(s.agents)]
        for k in s.weights or {}:
            if k not in s.agents:
                c.add("unknown-agent", f"step '{s.id}' weighs agent '{k}', which it does not broadcast to", (*p, "weights", k), did_you_mean(k, s.agents) or f"agents: {', '.join(s.agents)}")
    if isinstance(s, ConductorStep):
        refs += [(a, (*p, "participants", k)) for k, a in enumerate(s.participants)]
        if s.host != "sequence":
            refs.append((s.host, (*p, "host")))
    for name, ap in refs:
        if name not in flow.agents and name not in dropped and "*" not in dropped:
            known = list(flow.agents)
            hint = did_you_mean(name, known) or (f"known agents: {', '.join(known)}" if known else "define it under 'agents:'")
            if isinstance(s, ConductorStep) and ap[-1] == "host":
                hint += "; or use host: sequence"
            c.add("unknown-agent", f"step '{s.id}' uses unknown agent '{name}'", ap, hint)


def _check_cycles(c: _Collector, scopes: _Scopes, paths: dict[str, tuple]) -> None:
    for g in scopes.graphs.values():
        for comp in _strongly_connected(g):
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
            c.add("cycle", f"steps form a cycle: {' -> '.join(cyc)}", (*paths.get(first, ("steps",)), "needs"), hint)


def _strongly_connected(g: Graph) -> list[list[str]]:
    """Tarjan's algorithm, iterative; components in definition order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for root in g.order:
        if root in index:
            continue
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            v, i = work.pop()
            if i == 0:
                index[v] = low[v] = counter
                counter += 1
                stack.append(v)
                on.add(v)
            needs = [d for d in g.nodes[v].needs if d in g.nodes]
            if i < len(needs):
                work.append((v, i + 1))
                w = needs[i]
                if w not in index:
                    work.append((w, 0))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            if low[v] == index[v]:
                comp: list[str] = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                out.append([n for n in g.order if n in comp])
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[v])
    return out


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


def _check_template(
    c: _Collector,
    flow: Flow,
    step: StepSpec | None,
    scopes: _Scopes,
    text: str,
    path: tuple,
    is_cond: bool,
    paths: dict[str, tuple],
    ids: list[str],
    dropped_inputs: set[str],
) -> None:
    if not is_cond and "{{" not in text and "{%" not in text:
        return
    a = analyse(text, condition=is_cond)
    what = "condition" if is_cond else "template"
    if a.error:
        code = "unsafe-expression" if "unsafe" in a.error else "bad-expression"
        c.add(code, f"{a.error} in {what} {_short(text)}", path, a.hint)
        return
    allowed: set[str] = set(paths)
    loop = scopes.loop_of.get(step.id) if step else None
    if step is not None:
        allowed = scopes.ancestors(step.id)
        if isinstance(step, LoopStep):
            allowed |= set(scopes.members.get(step.id, ()))
    has_jinja_for = "{%" in text and "for " in text
    for ref in a.references:
        ns, name = ref.namespace, ref.name
        if ns not in NAMESPACES:
            if ns in JINJA_GLOBALS:
                continue
            c.add("unknown-name", f"unknown name '{ns}' in {what} {_short(text)}", path, did_you_mean(ns, NAMESPACES) or f"available: {', '.join(NAMESPACES)}")
        elif ns == "inputs" and name is not None and name not in flow.inputs:
            if name in dropped_inputs or "*" in dropped_inputs:
                continue
            declared = list(flow.inputs)
            hint = did_you_mean(name, declared) or (f"declared inputs: {', '.join(declared)}" if declared else f"declare it under 'inputs:', e.g. 'inputs: {{{name}: string}}'")
            c.add("unknown-input", f"unknown input '{name}' in {what} {_short(text)}", path, hint)
        elif ns == "steps" and name is not None:
            body_of = scopes.loop_of.get(name)
            visible = scopes.enclosing_loops(step.id) | ({step.id} if isinstance(step, LoopStep) else set()) if step else set()
            if name not in paths:
                c.add("unknown-step", f"unknown step '{name}' in {what} {_short(text)}", path, did_you_mean(name, paths) or f"known steps: {', '.join(paths)}")
            elif body_of is not None and body_of not in visible and name in ids:
                reader = f"step '{step.id}'" if step else "the flow's outputs"
                c.add("not-upstream", f"{reader} reads step '{name}', which is inside loop '{body_of}'", path, f"outside a loop, read its result: steps.{body_of}.output (the last body step's output)")
            elif step is not None and name not in allowed and name in ids:
                if name == step.id:
                    msg, hint = f"step '{step.id}' reads its own output", "a step can read only steps that ran before it"
                else:
                    msg, hint = f"step '{step.id}' reads step '{name}', which does not run before it", f"add '{name}' to the needs of '{step.id}'"
                c.add("not-upstream", msg, path, hint)
        elif ns == "item" and step is not None and step.for_each is None:
            c.add("unknown-name", f"'item' used in step '{step.id}', which has no for_each", path, "add 'for_each:' or remove the reference")
        elif ns == "matrix" and step is not None and name is not None and name not in (step.matrix or {}):
            if not step.matrix:
                c.add("unknown-name", f"'matrix' used in step '{step.id}', which has no matrix", path, "add 'matrix:' or remove the reference")
            else:
                c.add("unknown-name", f"unknown matrix key '{name}' in {what} {_short(text)}", path, did_you_mean(name, step.matrix) or f"matrix keys: {', '.join(step.matrix)}")
        elif ns == "loop" and step is not None and loop is None and not isinstance(step, LoopStep) and not has_jinja_for:
            c.add("unknown-name", f"'loop' used in step '{step.id}', which is not inside a loop", path, "'loop' (id, iteration) exists only in the steps of a 'loop'")


# -- inputs ----------------------------------------------------------------------------------

_TYPES = {"string": str, "integer": int, "number": (int, float), "boolean": bool, "array": list, "object": dict}


def validate_inputs(flow: Flow, given: dict[str, Any], *, coerce_strings: bool = True) -> tuple[dict[str, Any], list[Diagnostic]]:
    """Check run inputs against the flow: unknown names, missing required, wrong types.
    With ``coerce_strings`` (command-line values), "3" becomes 3 for an integer input, etc."""
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
            diags.append(Diagnostic("wrong-type", f"input '{k}' must be {_A.get(spec.type, spec.type)}, got {type(v).__name__} {_short(v)}", f"inputs.{k}", f"give {_A.get(spec.type, spec.type)}"))
            continue
        if spec.enum is not None and v not in spec.enum:
            diags.append(Diagnostic("invalid-value", f"input '{k}' must be one of {spec.enum}, got {_short(v)}", f"inputs.{k}", did_you_mean(str(v), [str(e) for e in spec.enum])))
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


_A = {"string": "a string", "integer": "an integer", "number": "a number", "boolean": "a boolean", "array": "an array", "object": "an object"}

