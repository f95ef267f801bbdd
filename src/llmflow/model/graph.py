"""Normalise a flow's steps into one dependency graph.

- A step without ``needs`` needs the step before it (a plain list is a pipeline).
- ``parallel`` groups are flattened: children need the group's predecessors and the group
  node becomes a barrier that needs every child.
- Steps named by a ``route`` (and without explicit ``needs``) need the route.
- ``loop`` bodies stay inside their loop node (they repeat); they form their own pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from llmflow.model.spec import Flow, LoopStep, ParallelStep, RouteStep, StepSpec


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


def build_graph(steps: list[StepSpec]) -> Graph:
    g = Graph()
    route_targets: dict[str, str] = {}
    for s in steps:
        if isinstance(s, RouteStep):
            for t in s.targets():
                route_targets.setdefault(t, s.id)

    def add(step_list: list[StepSpec], entry: tuple[str, ...], group: str | None) -> tuple[str, ...]:
        prev = entry
        for s in step_list:
            explicit = s.needs is not None
            if explicit:
                needs = tuple(s.needs or ())
            elif s.id in route_targets:
                needs = (route_targets[s.id],)
            else:
                needs = prev
            if isinstance(s, ParallelStep):
                child_ids: list[str] = []
                for c in s.steps:
                    cneeds = tuple(c.needs) if c.needs is not None else needs
                    g.nodes[c.id] = Node(c.id, c, cneeds, group=s.id, explicit_needs=c.needs is not None)
                    g.order.append(c.id)
                    child_ids.append(c.id)
                g.nodes[s.id] = Node(s.id, s, tuple(child_ids), group=group, explicit_needs=explicit)
                g.order.append(s.id)
            else:
                g.nodes[s.id] = Node(s.id, s, needs, group=group, explicit_needs=explicit)
                g.order.append(s.id)
            prev = (s.id,)
        return prev

    add(steps, (), None)
    return g


def flow_graph(flow: Flow) -> Graph:
    return build_graph(flow.steps)


def loop_body_graph(loop: LoopStep) -> Graph:
    return build_graph(loop.steps)


def to_mermaid(flow: Flow, statuses: dict[str, str] | None = None) -> str:
    g = flow_graph(flow)
    lines = ["flowchart TD"]
    for nid in g.order:
        n = g.nodes[nid]
        label = f"{nid}<br/><small>{n.step.kind}</small>"
        shape = ("{{", "}}") if n.step.kind == "route" else ("[", "]")
        if n.step.kind == "parallel":
            shape = ("[[", "]]")
        lines.append(f'    {nid}{shape[0]}"{label}"{shape[1]}')
        if isinstance(n.step, LoopStep):
            prev = nid
            for c in n.step.steps:
                lines.append(f'    {nid}__{c.id}["{c.id}<br/><small>{c.kind} (loop)</small>"]')
                lines.append(f"    {prev} -.-> {nid}__{c.id}")
                prev = f"{nid}__{c.id}"
            lines.append(f"    {prev} -. until .-> {nid}")
    for nid in g.order:
        n = g.nodes[nid]
        for d in n.needs:
            if isinstance(g.nodes.get(d, None) and g.nodes[d].step, RouteStep):
                lines.append(f"    {d} -->|route| {nid}")
            else:
                lines.append(f"    {d} --> {nid}")
    if statuses:
        colours = {
            "COMPLETED": "#b7eb8f",
            "RUNNING": "#91d5ff",
            "FAILED": "#ffa39e",
            "SKIPPED": "#d9d9d9",
            "CANCELED": "#ffd591",
            "STALE": "#fffb8f",
        }
        for nid, st in statuses.items():
            if st in colours and nid in g.nodes:
                lines.append(f"    style {nid} fill:{colours[st]}")
    return "\n".join(lines) + "\n"
