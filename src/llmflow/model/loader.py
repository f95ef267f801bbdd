"""Load a flow by name or path: compose -> validate -> Flow (:mod:`llmflow.model.reading`),
kept with its provenance and secrets (:class:`LoadedFlow`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmflow.errors import FlowValidationError
from llmflow.model.compose import Composed
from llmflow.model.diagnostics import Diagnostic, Location, format_path
from llmflow.model.flow_spec import dump_yaml
from llmflow.model.reading import read_flow_file, read_flow_text
from llmflow.model.sourcemap import SourceMap
from llmflow.model.spec import Flow
from llmflow.model.targets import list_flow_names

# an environment variable whose value is a secret: its value is used, never stored or shown
SECRET_NAME = re.compile(
    r"(?i)(key|token|secret|passw(or)?d|passwd|credential|auth|private|cookie|session|signature|dsn|database_url|conn(ection)?_?str)"
)
_INTERPOLATION = re.compile(r"\$\{([^{}]*)\}")
_ENV = re.compile(r"^\s*oc\.env\s*:\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:,(.*))?$", re.S)


def secret_interpolation(raw: str) -> str | None:
    """What to store instead of a value interpolated from ``raw`` when it reads a secret
    (``${oc.env:OPENAI_API_KEY}``): the interpolation itself, so the process that runs the
    step can read its own environment; None when ``raw`` reads no secret."""
    names = [m.group(1) for m in (_ENV.match(i) for i in _INTERPOLATION.findall(raw)) if m]
    if not any(SECRET_NAME.search(n) for n in names):
        return None
    only_env = all(_ENV.match(i) for i in _INTERPOLATION.findall(raw))
    return raw if only_env else "***"


def restore_secrets(
    flow: dict[str, Any], secrets: list[list[str | int]], env: dict[str, str]
) -> dict[str, Any]:
    """A stored flow with the values at ``secrets`` (their ``${oc.env:NAME}`` text, see
    :meth:`LoadedFlow.record`) read again from ``env``: the environment of the process that
    runs the flow. Only those paths are read: a posted flow's text is never interpolated."""
    import copy

    out = copy.deepcopy(flow)
    for path in secrets:
        node: Any = out
        for k in path[:-1]:
            if isinstance(node, dict):
                node = node[k]
            elif isinstance(node, list) and isinstance(k, int):
                node = node[k]
            else:
                node = None
            if node is None:
                break
        else:
            last = path[-1] if path else None
            if isinstance(node, dict | list) and isinstance(node[last], str):  # type: ignore[index]

                def sub(m: re.Match[str]) -> str:
                    e = _ENV.match(m.group(1))
                    if e is None:
                        return m.group(0)
                    return env.get(e.group(1), e.group(2) if e.group(2) is not None else m.group(0))

                node[last] = _INTERPOLATION.sub(sub, node[last])  # type: ignore[index]
    return out


@dataclass
class LoadedFlow:
    flow: Flow
    composed: Composed | None
    source: str  # the flow file (or "<text>")

    def provenance(self) -> list[dict[str, Any]]:
        """One row per leaf value of the resolved flow (as ``resolved_yaml`` prints it): key
        path, value, and where it was set (file:line:column, group option, command-line
        override); values that came through ``${...}`` also say from where. A secret's value
        is shown as ``***``."""
        if self.composed is None:
            return []
        c = self.composed
        secret = {tuple(p) for p in self.secret_paths()}
        rows = provenance_rows(self.flow.to_dict(), c.sources, c.root_sources, c.flow_path)
        for row, path in zip(rows, _leaf_paths(self.flow.to_dict()), strict=True):
            if path in secret:
                row["value"] = "***"
        return rows

    def secret_paths(self) -> list[list[str | int]]:
        """Key paths of the values that came from a secret (``${oc.env:*_API_KEY}`` ...)."""
        if self.composed is None:
            return []
        sources = self.composed.sources
        out = []
        for path in _leaf_paths(self.flow.to_dict()):
            found = _raw_for(sources, path)
            if found and secret_interpolation(found[0]) is not None:
                out.append(list(path))
        return out

    def public_dict(self) -> dict[str, Any]:
        """The flow as data with each secret replaced by the interpolation that read it:
        what is stored with a run, printed, or sent over the API."""
        d = self.flow.to_dict()
        if self.composed is None:
            return d
        sources = self.composed.sources
        for path in self.secret_paths():
            raw = _raw_for(sources, tuple(path))
            node: Any = d
            for k in path[:-1]:
                node = node[k]
            node[path[-1]] = secret_interpolation(raw[0]) if raw else "***"
        return d

    def resolved_yaml(self) -> str:
        return dump_yaml(self.public_dict())

    def record(self) -> dict[str, Any]:
        """What a run stores: the resolved spec (secrets as their ``${oc.env:...}``, listed
        under ``secrets`` for :func:`restore_secrets`) and where each value came from."""
        out: dict[str, Any] = {
            "flow": self.public_dict(),
            "source": self.source,
            "overrides": self.composed.overrides if self.composed else [],
            "files": self.composed.files if self.composed else [],
            "provenance": self.provenance(),
        }
        secrets = self.secret_paths()
        if secrets:
            out["secrets"] = secrets
        return out


def _leaf_paths(doc: Any) -> list[tuple[Any, ...]]:
    """The key path of every leaf, in the order provenance_rows walks them."""
    out: list[tuple[Any, ...]] = []
    stack: list[tuple[Any, tuple[Any, ...]]] = [(doc, ())]
    while stack:
        v, path = stack.pop()
        if isinstance(v, dict) and v:
            stack.extend((x, (*path, k)) for k, x in reversed(list(v.items())))
        elif isinstance(v, list) and v:
            stack.extend((x, (*path, i)) for i, x in reversed(list(enumerate(v))))
        else:
            out.append(path)
    return out


def provenance_rows(
    doc: Any, sources: SourceMap, root_sources: SourceMap | None = None, flow_path: tuple[str, ...] = ()
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []

    def walk(v: Any, path: tuple[Any, ...]) -> None:
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


def interpolation_target(raw: str, node_path: tuple[Any, ...]) -> tuple[Any, ...] | None:
    """The key path a plain ``${a.b}`` / ``${..a}`` interpolation reads; None for resolvers
    (``${oc.env:...}``) or text mixing several interpolations."""
    import re

    m = re.fullmatch(r"\$\{\s*(\.*)([A-Za-z_][\w.\[\]]*)\s*\}", raw.strip())
    if m is None:
        return None
    dots, rest = m.group(1), m.group(2)
    from llmflow.model.compose import _key_path

    base: tuple[Any, ...] = ()
    if dots:
        # '.' is the node's own container, every further '.' one level up
        base = tuple(node_path[: len(node_path) - len(dots)])
        if len(dots) > len(node_path):
            return None
    return (*base, *_key_path(rest))


def _raw_for(sources: SourceMap, path: tuple[Any, ...]) -> tuple[str, tuple[Any, ...]] | None:
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
    return LoadedFlow(*read_flow_file(Flow, name_or_path, overrides, config_dir))


def parse_flow_text(text: str, file: str = "<text>") -> Flow:
    """Validate a flow written as YAML text (no composition, no interpolation).
    Raises FlowValidationError with every problem."""
    return read_flow_text(Flow, text, file)


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
