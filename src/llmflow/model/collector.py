"""Diagnostics being gathered for one flow document, each located through its SourceMap
(used by :mod:`validate`, :mod:`references` and :mod:`value_errors`)."""

from __future__ import annotations

from typing import Any

from llmflow.model.diagnostics import Diagnostic, Location, format_path
from llmflow.model.registry import registry
from llmflow.model.sourcemap import SourceMap


class Collector:
    """Diagnostics being gathered for one document, located through its SourceMap."""

    def __init__(self, sources: SourceMap | None, file: str | None) -> None:
        self.sources = sources or SourceMap()
        self.file = file
        self.items: list[Diagnostic] = []
        self.step_paths: dict[str, tuple[Any, ...]] = {}  # id of a valid step -> its key path
        self.obj_paths: dict[int, tuple[Any, ...]] = {}  # id(StepSpec) -> its key path
        self.all_ids: dict[str, tuple[Any, ...]] = {}  # every step id in the document -> first key path
        self.written: dict[
            tuple[Any, ...], tuple[str, Any, set[str]]
        ] = {}  # step path -> (kind, body, its own keys) of a shorthand step
        self.step_count = 0  # steps in the document, nested ones included

    @staticmethod
    def _put(src: dict[tuple[Any, ...], Any], key: tuple[Any, ...], value: Any) -> None:
        if key not in src:
            src[key] = value

    def alias_shorthand(
        self, path: tuple[Any, ...], kind: str, shorthand: str | None, body: Any, keys: set[str]
    ) -> None:
        """`{llm: {prompt: x}}` was flattened: make `path.prompt` point where `path.llm.prompt` is."""
        head = (*path, kind)
        n = len(head)
        self.written[path] = (kind, body, keys)
        for src in (self.sources.entries, self.sources.raw):
            if isinstance(body, dict):
                for k in src.under(head):
                    self._put(src, (*path, *k[n:]), src[k])
            elif isinstance(body, list) and src is self.sources.entries:
                for k in src.under(head):
                    self._put(src, (*path, "steps", *k[n:]), src[k])
            elif shorthand and head in src:
                self._put(src, (*path, shorthand), src[head])

    def as_written(self, path: tuple[Any, ...]) -> tuple[Any, ...]:
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
            if (
                not isinstance(body, dict | list)
                and len(rest) == 1
                and rest[0] != "id"
                and rest[0] not in ("needs", "when")
            ):
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
