"""Scopes of a flow's steps, for the reference checks (:mod:`llmflow.model.references`):
which loop body each step belongs to, the steps inside each group, and whether one step
has always finished when another runs (upstream sets as bitsets over the step ids)."""

from __future__ import annotations

from llmflow.model.flow_spec import FlowSpec
from llmflow.model.graph import Graph, build_graph
from llmflow.model.step_specs import LoopStep, ParallelStep, StepSpec


class Scopes:
    """Which loop body each step belongs to, and every step's enclosing groups."""

    def __init__(self, flow: FlowSpec) -> None:
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
        # upstream sets as bitsets over the step ids: a flow of n steps costs O(n^2 / 64)
        # word operations at worst (a chain), not O(n^2) set insertions
        self._bit: dict[str, int] = {sid: 1 << i for i, sid in enumerate(self.loop_of)}
        self._closure: dict[tuple[str | None, str], int] = {}
        self._anc: dict[str, int] = {}
        self._members: dict[str, int] = {}

    def enclosing_loops(self, sid: str) -> set[str]:
        out: set[str] = set()
        loop = self.loop_of.get(sid)
        while loop is not None and loop not in out:
            out.add(loop)
            loop = self.loop_of.get(loop)
        return out

    def _closure_of(self, scope: str | None, start: str) -> int:
        """``start`` and every step reachable from it through needs (in the graph of
        ``scope``) and group membership (a finished group's steps have finished too).
        Iterative, memoised; a cycle (reported elsewhere) only makes the sets smaller."""
        g = self.graphs.get(scope)
        memo = self._closure
        stack: list[tuple[str, bool]] = [(start, False)]
        busy: set[str] = set()
        while stack:
            d, expanded = stack.pop()
            if (scope, d) in memo:
                continue
            nexts = [*self.members.get(d, ()), *(g.nodes[d].needs if g is not None and d in g.nodes else ())]
            if not expanded:
                if d in busy:
                    continue  # a cycle
                busy.add(d)
                stack.append((d, True))
                stack.extend((n, False) for n in nexts if (scope, n) not in memo and n in self._bit)
                continue
            bits = self._bit.get(d, 0)
            for n in nexts:
                bits |= memo.get((scope, n), self._bit.get(n, 0))
            memo[(scope, d)] = bits
        return memo.get((scope, start), self._bit.get(start, 0))

    def _ancestor_bits(self, sid: str) -> int:
        if sid in self._anc:
            return self._anc[sid]
        self._anc[sid] = 0  # cycle guard
        loop = self.loop_of.get(sid)
        g = self.graphs.get(loop)
        bits = 0
        for d in g.nodes[sid].needs if g is not None and sid in g.nodes else ():
            bits |= self._closure_of(loop, d)
        if loop is not None:  # earlier body steps, and last iteration's
            bits |= self._members_bits(loop) & ~self._bit.get(sid, 0)
            bits |= self._ancestor_bits(loop)
        self._anc[sid] = bits
        return bits

    def _members_bits(self, group: str) -> int:
        if group not in self._members:
            bits = 0
            for m in self.members.get(group, ()):
                bits |= self._bit.get(m, 0)
            self._members[group] = bits
        return self._members[group]

    def in_group(self, group: str, sid: str) -> bool:
        return bool(self._members_bits(group) & self._bit.get(sid, 0))

    def runs_before(self, sid: str, other: str) -> bool:
        """Whether ``other`` has finished whenever ``sid`` runs."""
        return bool(self._ancestor_bits(sid) & self._bit.get(other, 0))
