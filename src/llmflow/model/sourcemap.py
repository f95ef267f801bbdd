"""Where each value came from: file:line:column of YAML nodes, keyed by key path."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import yaml

from llmflow.model.diagnostics import Location

PathKey = tuple[str | int, ...]


@dataclass
class SourceMap:
    """Maps key paths (tuples) to the Location that last set them."""

    entries: dict[PathKey, Location] = field(default_factory=dict)
    raw: dict[PathKey, str] = field(default_factory=dict)  # raw text of interpolations

    def set_tree(self, prefix: PathKey, node: yaml.Node, file: str, origin: str | None) -> None:
        self.clear(prefix)
        self._walk(prefix, node, file, origin)

    def clear(self, prefix: PathKey) -> None:
        n = len(prefix)
        for k in [k for k in self.entries if k[:n] == prefix and len(k) > n]:
            del self.entries[k]
            self.raw.pop(k, None)

    def _walk(self, path: PathKey, node: yaml.Node, file: str, origin: str | None) -> None:
        loc = Location(file, node.start_mark.line + 1, node.start_mark.column + 1, origin)
        self.entries[path] = loc
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                key = k.value if isinstance(k, yaml.ScalarNode) else str(k)
                child = (*path, key)
                # a nested mapping merges; a scalar or a list replaces what was there
                if not isinstance(v, yaml.MappingNode):
                    self.clear(child)
                self.entries[child] = Location(file, k.start_mark.line + 1, k.start_mark.column + 1, origin)
                self._walk_value(child, v, file, origin)
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                self._walk((*path, i), v, file, origin)
        elif isinstance(node, yaml.ScalarNode) and "${" in str(node.value):
            self.raw[path] = str(node.value)

    def merge_tree(
        self, prefix: PathKey, node: yaml.MappingNode, file: str, origin: str | None, skip: tuple[str, ...] = ()
    ) -> None:
        """Merge a mapping at ``prefix`` the way OmegaConf merges configs: nested mappings
        merge, anything else replaces."""
        for k, v in node.value:
            key = k.value if isinstance(k, yaml.ScalarNode) else str(k)
            if key in skip:
                continue
            child = (*prefix, key)
            if not isinstance(v, yaml.MappingNode):
                self.clear(child)
            self.entries[child] = Location(file, k.start_mark.line + 1, k.start_mark.column + 1, origin)
            self._walk_value(child, v, file, origin)

    def _walk_value(self, path: PathKey, node: yaml.Node, file: str, origin: str | None) -> None:
        key_loc = self.entries[path]
        self._walk(path, node, file, origin)
        # a key's location is the key itself: "key: value" reads best from the key's column
        self.entries[path] = key_loc

    def set_origin(self, path: PathKey, origin: str) -> None:
        self.clear(path)
        self.entries[path] = Location(None, None, None, origin)

    def remove(self, path: PathKey) -> None:
        self.clear(path)
        self.entries.pop(path, None)

    def sub(self, prefix: PathKey) -> SourceMap:
        n = len(prefix)
        out = SourceMap()
        for k, v in self.entries.items():
            if k[:n] == prefix:
                out.entries[k[n:]] = v
        for k, v in self.raw.items():
            if k[:n] == prefix:
                out.raw[k[n:]] = v
        return out

    def locate(self, path: Iterable[str | int]) -> Location:
        """The best location for a key path: exact, or with one key inserted (step
        shorthand ``llm: {...}``), or the nearest ancestor."""
        p = tuple(path)
        if p in self.entries:
            return self.entries[p]
        for i in range(len(p), 0, -1):
            head, tail = p[:i], p[i:]
            for k in self.entries:
                if len(k) == len(p) + 1 and k[:i] == head and k[i + 1 :] == tail:
                    return self.entries[k]
            if head in self.entries and i < len(p):
                return self.entries[head]
        return self.entries.get((), Location())


def yaml_tree(text: str) -> yaml.Node | None:
    return yaml.compose(text, Loader=yaml.SafeLoader)


def duplicate_keys(node: yaml.Node | None) -> list[tuple[str, int, int, int]]:
    """(key, line, column, line of the first use) for every repeated mapping key."""
    out: list[tuple[str, int, int, int]] = []
    stack = [node] if node is not None else []
    seen_nodes: set[int] = set()
    while stack:
        n = stack.pop()
        if id(n) in seen_nodes:  # aliases may share nodes
            continue
        seen_nodes.add(id(n))
        if isinstance(n, yaml.MappingNode):
            first: dict[str, int] = {}
            for k, v in n.value:
                if isinstance(k, yaml.ScalarNode) and k.tag != "tag:yaml.org,2002:merge":
                    if k.value in first:
                        out.append((k.value, k.start_mark.line + 1, k.start_mark.column + 1, first[k.value]))
                    else:
                        first[k.value] = k.start_mark.line + 1
                stack.append(v)
        elif isinstance(n, yaml.SequenceNode):
            stack.extend(n.value)
    return sorted(out, key=lambda d: (d[1], d[2]))


def package_header(text: str) -> str | None:
    for line in text.splitlines()[:5]:
        s = line.strip()
        if s.startswith("# @package"):
            return s[len("# @package") :].strip()
    return None


def expanded_size(node: yaml.Node | None, limit: int = 10**9) -> int:
    """How many values the document holds once aliases are expanded (a recursive document
    counts as ``limit``): guards the validators against "billion laughs" documents."""
    memo: dict[int, int] = {}
    active: set[int] = set()

    def size(n: yaml.Node) -> int:
        key = id(n)
        if key in memo:
            return memo[key]
        if key in active:
            return limit
        active.add(key)
        total = 1
        if isinstance(n, yaml.MappingNode):
            for k, v in n.value:
                total += size(k) + size(v)
                if total >= limit:
                    break
        elif isinstance(n, yaml.SequenceNode):
            for v in n.value:
                total += size(v)
                if total >= limit:
                    break
        active.discard(key)
        memo[key] = min(total, limit)
        return memo[key]

    if node is None:
        return 0
    try:
        return size(node)
    except RecursionError:
        return limit
