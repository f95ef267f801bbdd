"""A flow file's YAML checked before anything reads it: syntax errors, duplicate keys
(which YAML would silently drop), size and nesting limits, each as a located diagnostic."""

from __future__ import annotations

from pathlib import Path

import yaml

from llmflow.errors import FlowNotFoundError, FlowValidationError
from llmflow.model import limits
from llmflow.model.diagnostics import Diagnostic, Location
from llmflow.model.sourcemap import TooDeep, duplicate_keys, expanded_size, yaml_tree
from llmflow.model.targets import display_path

MAX_NODES = 200_000  # YAML values in one file, counting what aliases repeat


def yaml_error_diagnostic(exc: yaml.YAMLError, file: str) -> Diagnostic:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    where = (
        display_path(mark.name) if mark is not None and mark.name and not mark.name.startswith("<") else file
    )
    loc = Location(where, mark.line + 1 if mark else None, mark.column + 1 if mark else None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    context = getattr(exc, "context", None)
    if context and "duplicate key" not in str(problem):
        problem = f"{problem} ({context})"
    return Diagnostic("yaml-syntax", f"invalid YAML: {problem}", "", "fix the YAML syntax", loc)


def check_yaml_text(text: str, file: str) -> list[Diagnostic]:
    """YAML syntax errors, duplicate keys (which YAML would silently drop), and documents
    past the size and nesting limits (:mod:`llmflow.model.limits`)."""
    lim = limits.current()
    if len(text) > lim.flow_bytes:
        return [
            Diagnostic(
                "too-large",
                f"the flow document is {len(text)} characters long, more than {lim.flow_bytes} (LLMFLOW_MAX_FLOW_BYTES)",
                "",
                "split it into flows that call each other",
                Location(file),
            )
        ]
    try:
        tree = yaml_tree(text)
    except TooDeep as exc:
        mark = exc.problem_mark
        return [
            Diagnostic(
                "too-deep",
                str(exc.problem),
                "",
                "flatten it: nest steps in fewer groups, values in fewer levels",
                Location(file, mark.line + 1 if mark else None, mark.column + 1 if mark else None),
            )
        ]
    except yaml.YAMLError as exc:
        return [yaml_error_diagnostic(exc, file)]
    if expanded_size(tree) > MAX_NODES:
        return [
            Diagnostic(
                "yaml-syntax",
                f"the document is too large: more than {MAX_NODES} values once YAML aliases are expanded, or an alias refers to itself",
                "",
                "write the values out without '&' anchors and '*' aliases, or use ${...} interpolation",
                Location(file),
            )
        ]
    out = []
    for key, line, col, first in duplicate_keys(tree):
        out.append(
            Diagnostic(
                "yaml-syntax",
                f"duplicate key '{key}' (first at line {first})",
                "",
                "keep one; YAML would silently use the last",
                Location(file, line, col),
            )
        )
    return out


def check_yaml_file(path: Path) -> None:
    """The checks of :func:`check_yaml_text` on a file, which must also hold a mapping;
    raises FlowValidationError (or FlowNotFoundError when it cannot be read)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise FlowNotFoundError(f"{path}: cannot read ({reason})") from None
    diags = check_yaml_text(text, display_path(path))
    if not diags:
        tree = yaml_tree(text)
        if tree is not None and not isinstance(tree, yaml.MappingNode):
            kind = "a list" if isinstance(tree, yaml.SequenceNode) else f"the value {tree.value!r}"
            diags = [
                Diagnostic(
                    "invalid-value",
                    f"a flow file must hold a mapping, got {kind}",
                    "",
                    "start with 'name:' and 'steps:' (or one key wrapping them)",
                    Location(display_path(path), tree.start_mark.line + 1, tree.start_mark.column + 1),
                )
            ]
    if diags:
        raise FlowValidationError(diags)
