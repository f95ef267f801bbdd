"""Normalise a flow's steps into one dependency graph.

- A step without ``needs`` needs the step before it (a plain list is a pipeline).
- ``parallel`` groups are flattened: children need the group's predecessors and the group
  node becomes a barrier that needs every child.
- Steps named by a ``route`` need the route: without ``needs`` the route is their only
  need; with explicit ``needs`` the route is added, so a route always decides whether its
  targets run.
- ``loop`` bodies stay inside their loop node (they repeat); they form their own pipeline.

:func:`strongly_connected` finds the cycles of a graph (validation reports them).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from llmflow.model.flow_spec import FlowSpec
from llmflow.model.step_specs import LoopStep, ParallelStep, RouteStep, StepSpec


@dataclass(frozen=True)
class Node:
    id: str
    step: StepSpec
    needs: tuple[str, ...]
    group: str | None = None  # the parallel group this node belongs to
    explicit_needs: bool = False


@dataclass
class Graph:
    nodes: dict[str, Node] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)  # definition order

    def dependents(self, node_id: str) -> list[str]:
        return [n.id for n in self.nodes.values() if node_id in n.needs]

    def downstream(self, node_id: str) -> list[str]:
        """Every node that transitively depends on node_id, in definition order."""
        hit = {node_id}
        changed = True
        while changed:
            changed = False
            for n in self.nodes.values():
                if n.id not in hit and any(d in hit for d in n.needs):
                    hit.add(n.id)
                    changed = True
        return [i for i in self.order if i in hit and i != node_id]

    def find_cycle(self) -> list[str] | None:
        state: dict[str, int] = {}
        stack: list[str] = []

        def visit(n: str) -> list[str] | None:
            state[n] = 1
            stack.append(n)
            for d in self.nodes[n].needs:
                if d not in self.nodes:
                    continue
                if state.get(d) == 1:
                    return stack[stack.index(d) :] + [d]
                if d not in state:
                    found = visit(d)
                    if found:
                        return found
            stack.pop()
            state[n] = 2
            return None

        for n in self.order:
            if n not in state:
                found = visit(n)
                if found:
                    return found
        return None


def route_targets(steps: list[StepSpec]) -> dict[str, str]:
    """Step id -> the route that names it, for the steps of one scope (not loop bodies)."""
    out: dict[str, str] = {}

    def walk(step_list: list[StepSpec]) -> None:
        for s in step_list:
            if isinstance(s, RouteStep):
                for t in s.targets():
                    out.setdefault(t, s.id)
            if isinstance(s, ParallelStep):
                walk(s.steps)

    walk(steps)
    return out


def build_graph(steps: list[StepSpec]) -> Graph:
    g = Graph()
    targets = route_targets(steps)

    def needs_of(s: StepSpec, default: tuple[str, ...]) -> tuple[str, ...]:
        route = targets.get(s.id)
        if s.needs is not None:
            needs = tuple(s.needs)
            if route is not None and route not in needs and route != s.id:
                needs = (*needs, route)
            return needs
        if route is not None and route != s.id:
            return (route,)
        return default

    def add_parallel(s: ParallelStep, needs: tuple[str, ...], group: str | None) -> None:
        child_ids: list[str] = []
        for c in s.steps:
            cneeds = needs_of(c, needs)
            if isinstance(c, ParallelStep):
                add_parallel(c, cneeds, s.id)
            else:
                g.nodes[c.id] = Node(c.id, c, cneeds, group=s.id, explicit_needs=c.needs is not None)
                g.order.append(c.id)
            child_ids.append(c.id)
        g.nodes[s.id] = Node(s.id, s, tuple(child_ids), group=group, explicit_needs=s.needs is not None)
        g.order.append(s.id)

    prev: tuple[str, ...] = ()
    for s in steps:
        needs = needs_of(s, prev)
        if isinstance(s, ParallelStep):
            add_parallel(s, needs, None)
        else:
            g.nodes[s.id] = Node(s.id, s, needs, group=None, explicit_needs=s.needs is not None)
            g.order.append(s.id)
        prev = (s.id,)
    return g


def flow_graph(flow: FlowSpec) -> Graph:
    return build_graph(flow.steps)


def loop_body_graph(loop: LoopStep) -> Graph:
    return build_graph(loop.steps)


# words Mermaid reads as syntax; a step with such an id gets a different node id
_MERMAID_RESERVED = frozenset(
    {
        "end",
        "graph",
        "flowchart",
        "subgraph",
        "style",
        "class",
        "classdef",
        "click",
        "linkstyle",
        "direction",
        "call",
        "href",
        "default",
    }
)


def _mermaid_ids(ids: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    taken = set(ids)
    for i in ids:
        node = i
        if i.lower() in _MERMAID_RESERVED:
            node = f"{i}_step"
            while node in taken:
                node += "_"
            taken.add(node)
        out[i] = node
    return out


_STATUS_COLOURS = {
    "COMPLETED": "#b7eb8f",
    "RUNNING": "#91d5ff",
    "FAILED": "#ffa39e",
    "SKIPPED": "#d9d9d9",
    "CANCELED": "#ffd591",
    "STALE": "#fffb8f",
}


def to_mermaid(flow: FlowSpec, statuses: dict[str, str] | None = None) -> str:
    """The step graph as Mermaid ``flowchart`` text.

    Routes are hexagons with ``route`` edges to their targets, parallel groups are
    subroutines (``[[...]]``) their children flow into, loop bodies hang off their loop
    with dotted edges and an ``until`` edge back. ``statuses`` (step id -> status) colours
    the nodes."""
    g = flow_graph(flow)
    loops = [(nid, step) for nid in g.order if isinstance(step := g.nodes[nid].step, LoopStep)]
    loop_children = [f"{nid}__{c.id}" for nid, step in loops for c in step.steps]
    ids = _mermaid_ids([*g.order, *loop_children])
    targets = route_targets(flow.steps)
    lines = ["flowchart TD"]
    for nid in g.order:
        n = g.nodes[nid]
        label = f"{nid}<br/><small>{n.step.kind}</small>"
        shape = ("[", "]")
        if isinstance(n.step, RouteStep):
            shape = ("{{", "}}")
        elif isinstance(n.step, ParallelStep):
            shape = ("[[", "]]")
        lines.append(f'    {ids[nid]}{shape[0]}"{label}"{shape[1]}')
        if isinstance(n.step, LoopStep):
            prev = ids[nid]
            for c in n.step.steps:
                cid = ids[f"{nid}__{c.id}"]
                lines.append(f'    {cid}["{c.id}<br/><small>{c.kind} (loop)</small>"]')
                lines.append(f"    {prev} -.-> {cid}")
                prev = cid
            lines.append(f"    {prev} -. until .-> {ids[nid]}")
    for nid in g.order:
        for d in g.nodes[nid].needs:
            if d not in g.nodes:
                continue
            if targets.get(nid) == d:
                lines.append(f"    {ids[d]} -->|route| {ids[nid]}")
            else:
                lines.append(f"    {ids[d]} --> {ids[nid]}")
    for nid, st in (statuses or {}).items():
        colour = _STATUS_COLOURS.get(str(st).upper())
        if colour and nid in g.nodes:
            lines.append(f"    style {ids[nid]} fill:{colour}")
    return "\n".join(lines) + "\n"


def to_json(flow: FlowSpec) -> dict[str, list[dict[str, object]]]:
    """The step graph as plain nodes and edges, for a layout library to place (the web
    console feeds it to dagre). The same graph as :func:`to_mermaid`:

    - node ``{key, name, kind, shape, loop}``: ``shape`` is ``box``, ``route`` or ``group``
      (a parallel group); a loop body's steps have ``loop`` = their loop's id and a key of
      ``<loop>__<step>`` (a step id may repeat inside two loops)
    - edge ``{from, to, label, dotted, back}``: ``label`` is ``route`` or ``until``; a loop
      body's edges are dotted, and ``until`` runs back to the loop node."""
    g = flow_graph(flow)
    targets = route_targets(flow.steps)
    nodes: list[dict[str, object]] = []
    edges: list[dict[str, object]] = []

    def edge(a: str, b: str, label: str = "", dotted: bool = False, back: bool = False) -> None:
        edges.append({"from": a, "to": b, "label": label, "dotted": dotted, "back": back})

    for nid in g.order:
        step = g.nodes[nid].step
        shape = (
            "route" if isinstance(step, RouteStep) else "group" if isinstance(step, ParallelStep) else "box"
        )
        nodes.append({"key": nid, "name": nid, "kind": step.kind, "shape": shape, "loop": None})
        if isinstance(step, LoopStep):
            prev = nid
            for c in step.steps:
                key = f"{nid}__{c.id}"
                nodes.append({"key": key, "name": c.id, "kind": c.kind, "shape": "box", "loop": nid})
                edge(prev, key, dotted=True)
                prev = key
            edge(prev, nid, "until", dotted=True, back=True)
    for nid in g.order:
        for d in g.nodes[nid].needs:
            if d in g.nodes:
                edge(d, nid, "route" if targets.get(nid) == d else "")
    return {"nodes": nodes, "edges": edges}


def strongly_connected(g: Graph) -> list[list[str]]:
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
                members = set(comp)
                out.append(comp if len(comp) == 1 else [n for n in g.order if n in members])
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[v])
    return out
