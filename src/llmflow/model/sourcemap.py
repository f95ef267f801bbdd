"""Where each value came from: file:line:column of YAML nodes, keyed by key path."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import yaml

from llmflow.model.diagnostics import Location

PathKey = tuple[str | int, ...]


class PathDict(dict):  # type: ignore[type-arg]
    """A dict keyed by key paths that also knows each path's children, so "every key
    under this path" costs the size of the answer, not of the dict (composition and
    validation ask it for every step: scanning made them quadratic in a flow's size).
    Deleted keys may stay in the index; lookups check the dict."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__()
        self._kids: dict[PathKey, set[PathKey]] = {}
        for k, v in dict(*args, **kw).items():
            self[k] = v

    def __setitem__(self, key: PathKey, value: Any) -> None:
        if key not in self:
            kids = self._kids
            for i in range(len(key)):
                kids.setdefault(key[:i], set()).add(key[: i + 1])
        super().__setitem__(key, value)

    def setdefault(self, key: PathKey, default: Any = None) -> Any:
        if key not in self:
            self[key] = default
        return self[key]

    def update(self, *args: Any, **kw: Any) -> None:
        for k, v in dict(*args, **kw).items():
            self[k] = v

    def under(self, prefix: PathKey) -> list[PathKey]:
        """The keys strictly below ``prefix``."""
        out: list[PathKey] = []
        stack = list(self._kids.get(prefix, ()))
        while stack:
            k = stack.pop()
            if k in self:
                out.append(k)
            stack.extend(self._kids.get(k, ()))
        return out

    def __reduce__(self) -> Any:
        return (PathDict, (dict(self),))


@dataclass
class SourceMap:
    """Maps key paths (tuples) to the Location that last set them."""

    entries: PathDict = field(default_factory=PathDict)
    raw: PathDict = field(default_factory=PathDict)  # raw text of interpolations

    def __post_init__(self) -> None:
        if not isinstance(self.entries, PathDict):
            self.entries = PathDict(self.entries)
        if not isinstance(self.raw, PathDict):
            self.raw = PathDict(self.raw)

    def set_tree(self, prefix: PathKey, node: yaml.Node, file: str, origin: str | None) -> None:
        self.clear(prefix)
        self._walk(prefix, node, file, origin)

    def clear(self, prefix: PathKey) -> None:
        for k in self.entries.under(prefix):
            del self.entries[k]
            self.raw.pop(k, None)
        for k in self.raw.under(prefix):
            del self.raw[k]

    def _walk(self, path: PathKey, node: yaml.Node, file: str, origin: str | None) -> None:
        loc = Location(file, node.start_mark.line + 1, node.start_mark.column + 1, origin)
        self.entries[path] = loc
        if isinstance(node, yaml.MappingNode):
            self.merge_tree(path, node, file, origin)
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                self._walk((*path, i), v, file, origin)
        elif isinstance(node, yaml.ScalarNode) and "${" in str(node.value):
            self.raw[path] = str(node.value)

    def merge_tree(
        self,
        prefix: PathKey,
        node: yaml.MappingNode,
        file: str,
        origin: str | None,
        skip: tuple[str, ...] = (),
    ) -> None:
        """Merge a mapping at ``prefix`` the way OmegaConf merges configs: nested mappings
        merge, anything else replaces."""
        for k, v in node.value:
            key = k.value if isinstance(k, yaml.ScalarNode) else str(k)
            if key in skip:
                continue
            child = (*prefix, key)
            # a nested mapping merges; a scalar or a list replaces what was there
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
        for src, dst in ((self.entries, out.entries), (self.raw, out.raw)):
            keys = ([prefix] if prefix in src else []) + src.under(prefix)
            for k in sorted(keys, key=len):
                dst[k[n:]] = src[k]
        return out

    def locate(self, path: Iterable[str | int]) -> Location:
        """The best location for a key path: exact, or with one key inserted (step
        shorthand ``llm: {...}``), or the nearest ancestor."""
        p = tuple(path)
        entries: dict[PathKey, Location] = self.entries
        if p in entries:
            return entries[p]
        kids = self.entries._kids
        for i in range(len(p), 0, -1):
            head, tail = p[:i], p[i:]
            for child in kids.get(head, ()):  # head + one inserted key, then the rest
                k = (*child, *tail)
                if k in entries:
                    return entries[k]
            if head in entries and i < len(p):
                return entries[head]
        return entries.get((), Location())


_BOOL_TAG = "tag:yaml.org,2002:bool"
_STR_TAG = "tag:yaml.org,2002:str"
# libyaml's parser when PyYAML has it: five times faster on a big flow
_Base: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class FlowLoader(_Base):  # type: ignore[misc, valid-type]
    """How flow files are read, everywhere: PyYAML's safe loader with the value rules
    OmegaConf (and so Hydra composition) applies, so a flow means the same whether it is
    composed or posted as text, and with one fix. The rules: ``1e3`` is a float, dates stay
    text. The fix: a mapping key written as a plain word is never a boolean; YAML 1.1 reads
    ``on``, ``off``, ``yes`` and ``no`` as booleans, so ``retry: {on: [timeout]}`` had a
    key ``true``."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        for key, _ in node.value:
            if (
                isinstance(key, yaml.ScalarNode) and key.tag == _BOOL_TAG and not key.style
            ):  # plain (libyaml: "")
                key.tag = _STR_TAG
        mapping: dict[Any, Any] = super().construct_mapping(node, deep)
        return mapping


# OmegaConf's float rule (omegaconf._utils.get_yaml_loader), and no timestamps
FlowLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:
         [-+]?[0-9]+(?:_[0-9]+)*\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?[0-9]+(?:_[0-9]+)*(?:[eE][-+]?[0-9]+)
        |\.[0-9]+(?:_[0-9]+)*(?:[eE][-+][0-9]+)?
        |[-+]?[0-9]+(?:_[0-9]+)*(?::[0-5]?[0-9])+\.[0-9_]*
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)
FlowLoader.yaml_implicit_resolvers = {
    key: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for key, resolvers in FlowLoader.yaml_implicit_resolvers.items()
}


class TooDeep(yaml.MarkedYAMLError):
    """The document nests more deeply than the limit (checked before building any tree:
    the tree builders recurse, libyaml's in C)."""


def check_depth(text: str) -> None:
    """Raise TooDeep when ``text`` nests past ``limits.document_depth``; counts the parser's
    events, which libyaml produces without recursion."""
    from llmflow.model import limits

    limit = limits.current().document_depth
    depth = 0
    for ev in yaml.parse(text, Loader=FlowLoader):
        if isinstance(ev, yaml.CollectionStartEvent):
            depth += 1
            if depth > limit:
                raise TooDeep(
                    None,
                    None,
                    f"the document nests more than {limit} levels deep (LLMFLOW_MAX_DOCUMENT_DEPTH)",
                    _mark(ev),
                )
        elif isinstance(ev, yaml.CollectionEndEvent):
            depth -= 1


@functools.lru_cache(maxsize=16)
def yaml_tree(text: str) -> yaml.Node | None:
    """The YAML node tree of ``text`` (cached: composing a flow reads each file's tree up to
    three times, and parsing is the slow part). The tree is shared: read it, never change it.
    Raises TooDeep (a YAMLError) past the nesting limit."""
    check_depth(text)
    return yaml.compose(text, Loader=FlowLoader)


def load_yaml(text: str) -> Any:
    """A flow file's YAML as data (see :class:`FlowLoader`), built from the cached tree (the
    only change it makes to the tree is retagging boolean-looking keys as text, which
    readers of the tree never look at); TooDeep past the nesting limit."""
    node = yaml_tree(text)
    if node is None:
        return None
    loader = FlowLoader("")
    try:
        return loader.construct_document(node)
    finally:
        loader.dispose()


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


def _mark(event: Any) -> Any:
    """An event's start mark (libyaml's and PyYAML's Mark types differ only for the checker)."""
    return event.start_mark
