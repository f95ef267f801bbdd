"""Reading a flow: YAML text, or a file or flow name composed with its config dir, then
validated into the flow class it is given.

``Flow.from_yaml`` reads through here with its own class, and :mod:`llmflow.model.loader`
(which keeps the provenance, as :class:`~llmflow.model.loader.LoadedFlow`) with
:class:`~llmflow.model.spec.Flow`: both sit above this module, so it imports no ``Flow``
back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml

from llmflow.errors import FlowValidationError
from llmflow.model.checks import check_document
from llmflow.model.compose import Composed, compose
from llmflow.model.diagnostics import Diagnostic, Location
from llmflow.model.flow_spec import FlowSpec
from llmflow.model.sourcemap import SourceMap, load_yaml, yaml_tree
from llmflow.model.targets import display_path, find_target
from llmflow.model.yaml_checks import check_yaml_text, yaml_error_diagnostic

F = TypeVar("F", bound=FlowSpec)


def read_flow(flow_class: type[F], text_or_path: str | Path, overrides: list[str] | None = None) -> F:
    """A flow from YAML text, or from a file path or flow name (composition and overrides
    apply to files). Raises FlowValidationError."""
    if isinstance(text_or_path, Path) or _looks_like_path(text_or_path):
        return read_flow_file(flow_class, text_or_path, overrides or [])[0]
    if overrides:
        raise ValueError("overrides apply to flow files; YAML text has nothing to compose")
    return read_flow_text(flow_class, text_or_path)


def _looks_like_path(text: str) -> bool:
    if "\n" in text or len(text) > 4096:
        return False
    if text.strip().endswith((".yaml", ".yml")):
        return True
    try:
        return Path(text).exists()
    except (OSError, ValueError):
        return False


def read_flow_file(
    flow_class: type[F],
    name_or_path: str | Path,
    overrides: list[str] | None = None,
    config_dir: str | Path | None = None,
) -> tuple[F, Composed, str]:
    """Compose and validate a flow: (the flow, its composition, the file as displayed).
    Raises FlowValidationError with every problem."""
    target = find_target(str(name_or_path), config_dir)
    composed = compose(target, overrides or [])
    doc = composed.document
    if "orchestra" in doc and "steps" not in doc:
        from llmflow.model.orchestra import orchestra_to_flow

        doc = orchestra_to_flow(doc, default_name=target.flow_file.stem)
    doc = _from_playbook(doc, target.flow_file.stem, display_path(target.flow_file))
    if "name" not in doc:
        # named after the key wrapping it (`tox: {...}`, `flows.judges`), else the file
        if composed.flow_path:
            name, origin = composed.flow_path[-1], f"default: the key '{'.'.join(composed.flow_path)}'"
        else:
            name, origin = (
                target.flow_name or target.flow_file.stem,
                f"default: named after {target.flow_file.name}",
            )
        doc = {"name": name, **doc}
        composed.sources.entries[("name",)] = Location(origin=origin)
    flow, diags = check_document(doc, flow_class, composed.sources, display_path(target.flow_file))
    if diags or flow is None:
        raise FlowValidationError(diags)
    return flow, composed, display_path(target.flow_file)


def read_flow_text(flow_class: type[F], text: str, file: str = "<text>") -> F:
    """Validate a flow written as YAML text (no composition, no interpolation).
    Raises FlowValidationError with every problem."""
    if not isinstance(text, str):
        raise TypeError(f"parse_flow_text takes YAML text, got {type(text).__name__}")
    diags = check_yaml_text(text, file)
    if diags:
        raise FlowValidationError(diags)
    try:
        tree = yaml_tree(text)
        doc = load_yaml(text)
    except yaml.YAMLError as exc:
        raise FlowValidationError([yaml_error_diagnostic(exc, file)]) from None
    except (ValueError, TypeError, OverflowError) as exc:  # e.g. a date YAML cannot build
        raise FlowValidationError(
            [Diagnostic("yaml-syntax", f"invalid YAML value: {exc}", "", "quote the value", Location(file))]
        ) from None
    sm = SourceMap()
    if tree is not None:
        sm.set_tree((), tree, file, None)
    if isinstance(doc, dict) and "orchestra" in doc and "steps" not in doc:
        from llmflow.model.orchestra import orchestra_to_flow

        doc = orchestra_to_flow(doc)
    doc = _from_playbook(doc, "agent", file)
    flow, diags = check_document(doc, flow_class, sm, file)
    if diags or flow is None:
        raise FlowValidationError(diags)
    return flow


def _from_playbook(doc: Any, default_name: str, file: str = "<text>") -> Any:
    """A SuperOptiX playbook (``kind: AgentSpec``) is read as the flow it describes; a
    FlowRunner flow file (steps of actions) is converted, with a provenance note;
    Buttermilk's agent shapes are expanded or refused (model/variants.py)."""
    from llmflow.model.flowrunner import flowrunner_to_flow, is_flowrunner
    from llmflow.model.playbook import is_playbook, playbook_to_flow

    if is_flowrunner(doc):
        return flowrunner_to_flow(doc, default_name=default_name, file=file)
    if is_playbook(doc):
        return playbook_to_flow(doc, default_name=default_name)
    from llmflow.model.variants import expand_buttermilk  # agents' variants, orchestrator -> conductor

    return expand_buttermilk(doc, file)
