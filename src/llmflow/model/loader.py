"""Load a flow by name or path: compose -> validate -> Flow, with provenance."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from llmflow.errors import FlowValidationError
from llmflow.model.compose import Composed, compose, display_path, find_target, list_flow_names
from llmflow.model.diagnostics import Diagnostic, Location, format_path
from llmflow.model.sourcemap import SourceMap, yaml_tree
from llmflow.model.spec import Flow, dump_yaml
from llmflow.model.validate import validate_document


@dataclass
class LoadedFlow:
    flow: Flow
    composed: Composed | None
    source: str  # the flow file (or "<text>")

    def provenance(self) -> list[dict[str, Any]]:
        """One row per leaf value of the resolved flow (as ``resolved_yaml`` prints it): key
        path, value, and where it was set (file:line:column, group option, command-line
        override); values that came through ``${...}`` also say from where."""
        if self.composed is None:
            return []
        c = self.composed
        return provenance_rows(self.flow.to_dict(), c.sources, c.root_sources, c.flow_path)

    def resolved_yaml(self) -> str:
        return dump_yaml(self.flow.to_dict())

    def record(self) -> dict[str, Any]:
        """What a run stores: the resolved spec and where each value came from."""
        return {
            "flow": self.flow.to_dict(),
            "source": self.source,
            "overrides": self.composed.overrides if self.composed else [],
            "files": self.composed.files if self.composed else [],
            "provenance": self.provenance(),
        }


def provenance_rows(
    doc: Any, sources: SourceMap, root_sources: SourceMap | None = None, flow_path: tuple[str, ...] = ()
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []

    def walk(v: Any, path: tuple) -> None:
        if isinstance(v, dict) and v:
            for k, x in v.items():
                walk(x, (*path, k))
        elif isinstance(v, list) and v:
            for i, x in enumerate(v):
                walk(x, (*path, i))
        else:
            loc = sources.locate(path)
            row = {"path": format_path(path), "value": v, "source": loc.format(), "origin": loc.origin}
            found = _raw_for(sources, path)
            if found:
                raw, at = found
                row["interpolated_from"] = raw
                target = interpolation_target(raw, (*flow_path, *at))
                if target is not None:
                    target = (*target, *path[len(at) :])
                if target is not None and root_sources is not None:
                    tloc = root_sources.locate(target)
                    if tloc.file or tloc.origin:
                        row["interpolation_source"] = tloc.format()
                        if tloc.origin and tloc.file:
                            row["interpolation_source"] += f" ({tloc.origin})"
            rows.append(row)

    walk(doc, ())
    return rows


def interpolation_target(raw: str, node_path: tuple) -> tuple | None:
    """The key path a plain ``${a.b}`` / ``${..a}`` interpolation reads; None for resolvers
    (``${oc.env:...}``) or text mixing several interpolations."""
    import re

    m = re.fullmatch(r"\$\{\s*(\.*)([A-Za-z_][\w.\[\]]*)\s*\}", raw.strip())
    if m is None:
        return None
    dots, rest = m.group(1), m.group(2)
    from llmflow.model.compose import _key_path

    base: tuple = ()
    if dots:
        # '.' is the node's own container, every further '.' one level up
        base = tuple(node_path[: len(node_path) - len(dots)])
        if len(dots) > len(node_path):
            return None
    return (*base, *_key_path(rest))


def _raw_for(sources: SourceMap, path: tuple) -> tuple[str, tuple] | None:
    """The interpolation that produced the value at ``path`` and the key path holding it."""
    for i in range(len(path), -1, -1):
        if path[:i] in sources.raw:
            return sources.raw[path[:i]], path[:i]
    return None


def load_flow(
    name_or_path: str | Path,
    overrides: list[str] | None = None,
    config_dir: str | Path | None = None,
) -> LoadedFlow:
    """Compose and validate a flow; raises FlowValidationError with every problem."""
    target = find_target(str(name_or_path), config_dir)
    composed = compose(target, overrides or [])
    doc = composed.document
    if "orchestra" in doc and "steps" not in doc:
        from llmflow.model.orchestra import orchestra_to_flow

        doc = orchestra_to_flow(doc, default_name=target.flow_file.stem)
    doc = _from_playbook(doc, target.flow_file.stem)
    if "name" not in doc:
        # named after the key wrapping it (`tox: {...}`, `flows.judges`), else the file
        if composed.flow_path:
            name, origin = composed.flow_path[-1], f"default: the key '{'.'.join(composed.flow_path)}'"
        else:
            name, origin = target.flow_name or target.flow_file.stem, f"default: named after {target.flow_file.name}"
        doc = {"name": name, **doc}
        composed.sources.entries[("name",)] = Location(origin=origin)
    flow, diags = validate_document(doc, composed.sources, display_path(target.flow_file))
    if diags or flow is None:
        raise FlowValidationError(diags)
    return LoadedFlow(flow, composed, display_path(target.flow_file))


def _from_playbook(doc: Any, default_name: str) -> Any:
    """A SuperOptiX playbook (``kind: AgentSpec``) is read as the flow it describes."""
    from llmflow.model.playbook import is_playbook, playbook_to_flow

    return playbook_to_flow(doc, default_name=default_name) if is_playbook(doc) else doc


def parse_flow_text(text: str, file: str = "<text>") -> Flow:
    """Validate a flow written as YAML text (no composition, no interpolation).
    Raises FlowValidationError with every problem."""
    from llmflow.model.compose import check_yaml_text, yaml_error_diagnostic

    if not isinstance(text, str):
        raise TypeError(f"parse_flow_text takes YAML text, got {type(text).__name__}")
    diags = check_yaml_text(text, file)
    if diags:
        raise FlowValidationError(diags)
    try:
        tree = yaml_tree(text)
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise FlowValidationError([yaml_error_diagnostic(exc, file)]) from None
    except (ValueError, TypeError, OverflowError) as exc:  # e.g. a date YAML cannot build
        raise FlowValidationError([Diagnostic("yaml-syntax", f"invalid YAML value: {exc}", "", "quote the value", Location(file))]) from None
    sm = SourceMap()
    if tree is not None:
        sm.set_tree((), tree, file, None)
    if isinstance(doc, dict) and "orchestra" in doc and "steps" not in doc:
        from llmflow.model.orchestra import orchestra_to_flow

        doc = orchestra_to_flow(doc)
    doc = _from_playbook(doc, "agent")
    flow, diags = validate_document(doc, sm, file)
    if diags or flow is None:
        raise FlowValidationError(diags)
    return flow


def validate_flow(
    name_or_path: str | Path | Flow, overrides: list[str] | None = None, config_dir: str | Path | None = None
) -> list[Diagnostic]:
    """Every problem of a flow (a name, a path, or a Flow built in Python), [] when it is
    valid. Never raises for bad definitions."""
    from llmflow.errors import CompositionError, FlowNotFoundError

    if isinstance(name_or_path, Flow):
        return name_or_path.check()
    try:
        load_flow(name_or_path, overrides, config_dir)
    except FlowValidationError as exc:
        return exc.diagnostics
    except (CompositionError, FlowNotFoundError) as exc:
        code = "not-found" if isinstance(exc, FlowNotFoundError) else "composition"
        return [Diagnostic(code, exc.message, "", exc.hint, Location(str(name_or_path)))]
    return []


def list_flows(config_dir: str | Path | None = None) -> list[str]:
    return list_flow_names(Path(config_dir or "conf"))
