"""Hydra-style composition of flow configs, with provenance.

We drive hydra-core's own config loader (defaults lists, ``_self_``, packages,
interpolation, the override grammar) step by step, as ``hydra.compose`` does, computing
the defaults list once and replaying it for provenance, so provenance follows exactly the
merge order Hydra used. This module reads the config files it is asked to compose; it
does nothing on import.

Two ways to point at a flow (see docs/composition.md):

- group mode: a config dir (``conf/``) with ``flows/<name>.yaml``; we compose the primary
  ``config.yaml`` (if any) plus ``+flows=<name>`` and take the flow from ``flows.<name>``;
- file mode: one YAML file composed on its own (its directory is the config dir).

Command-line overrides whose first key is a flow field (``model``, ``agents.x.model``,
``steps.0.llm.prompt``, ...) and that name neither a root key of the composed config nor
a config group apply to the flow: ``+model=x`` means ``+flows.<name>.model=x`` in group
mode, ``parameters.k=v`` means ``tox.parameters.k=v`` for a file wrapping its flow in
``tox:``. The full key always works too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from llmflow.errors import CompositionError, FlowNotFoundError, FlowValidationError, LlmflowError
from llmflow.model import limits
from llmflow.model.diagnostics import Diagnostic, Location, did_you_mean
from llmflow.model.sourcemap import (
    SourceMap,
    TooDeep,
    duplicate_keys,
    expanded_size,
    load_yaml,
    package_header,
    yaml_tree,
)

MAX_NODES = 200_000  # YAML values in one file, counting what aliases repeat

OVERRIDE_HINT = (
    "overrides use Hydra's grammar: key=value, +key=value (add), ++key=value (add or change), "
    "~key (delete), group=option, '+flows=[a,b]'"
)
# top-level keys of a flow (Flow's fields); overrides starting with one apply to the flow
FLOW_KEYS = frozenset(
    {
        "name", "description", "version", "inputs", "outputs", "agents", "model", "parameters",
        "options", "steps", "orchestrator", "data", "storage", "observers",
    }
)  # fmt: skip


@dataclass
class Target:
    """What to compose: a config dir and either a group flow name or a primary file."""

    config_dir: Path
    config_name: str | None  # primary config (None: no primary)
    flow_name: str | None  # a flow in the `flows/` group
    flow_file: Path

    @property
    def mode(self) -> str:
        return "group" if self.flow_name else "file"


@dataclass
class Composed:
    target: Target
    document: dict[str, Any]  # the flow mapping, resolved
    root: dict[str, Any]  # the whole composed config, unresolved
    sources: SourceMap  # key paths relative to the flow mapping
    files: list[str] = field(default_factory=list)
    overrides: list[str] = field(default_factory=list)  # as the user gave them
    root_sources: SourceMap = field(default_factory=SourceMap)  # key paths from the config root
    flow_path: tuple[str, ...] = ()  # where the flow sits in the composed config
    applied: list[str] = field(default_factory=list)  # the overrides given to Hydra


def display_path(path: Path | str) -> str:
    """A path as messages show it: relative to the working directory when inside it."""
    p = Path(path)
    try:
        return str(p.resolve().relative_to(Path.cwd()))
    except (ValueError, OSError):
        return str(p)


def _looks_like_conf_dir(d: Path) -> bool:
    return (d / "config.yaml").exists() or (d / "flows").is_dir() or (d / "agents").is_dir()


def find_target(name_or_path: str, config_dir: str | Path | None = None) -> Target:
    """Resolve a flow name (in ``<config_dir>/flows``), a flow file, or a directory holding
    ``flow.yaml`` or a ``conf/`` dir. Raises FlowNotFoundError with what is available."""
    if not name_or_path or "\x00" in name_or_path:
        raise FlowNotFoundError(
            f"{name_or_path!r} is not a flow name or path", hint="give a flow file (.yaml) or a flow name"
        )
    p = Path(name_or_path)
    try:
        exists = p.exists()
    except (OSError, ValueError):
        exists = False
    if p.suffix in (".yaml", ".yml") or exists:
        if exists and p.is_dir():
            if (p / "flow.yaml").exists():
                p = p / "flow.yaml"
            elif (p / "conf").is_dir():
                return _target_in_conf(name_or_path, p)
            elif _looks_like_conf_dir(p):
                return _target_in_conf(name_or_path, p, conf=p)
            elif len(books := sorted(p.glob("*_playbook.yaml"))) == 1:
                p = books[0]  # a SuperOptiX agent's directory (llmflow.model.playbook)
            else:
                raise FlowNotFoundError(
                    f"{name_or_path}: directory has no flow.yaml and no conf/ directory",
                    hint="give a flow file (.yaml), a directory with flow.yaml or conf/, or a flow name",
                )
        if not p.is_file():
            raise FlowNotFoundError(f"{name_or_path}: no such flow file", hint="check the path")
        p = p.resolve()
        if p.parent.name == "flows" and _looks_like_conf_dir(p.parent.parent):
            conf = p.parent.parent
            return Target(conf, "config" if (conf / "config.yaml").exists() else None, p.stem, p)
        return Target(p.parent, p.stem, None, p)
    conf = Path(config_dir or "conf").resolve()
    f = conf / "flows" / f"{name_or_path}.yaml"
    if "/" not in name_or_path and f.exists():
        return Target(conf, "config" if (conf / "config.yaml").exists() else None, name_or_path, f)
    available = list_flow_names(conf)
    hint = did_you_mean(name_or_path, available) or (
        f"available flows in {conf}: {', '.join(available)}"
        if available
        else f"no flows in {conf}/flows; give a path to a flow file or set --config-dir"
    )
    raise FlowNotFoundError(f"no flow named {name_or_path!r}", hint=hint)


def _target_in_conf(name_or_path: str, p: Path, conf: Path | None = None) -> Target:
    conf = (conf or p / "conf").resolve()
    flows = sorted((conf / "flows").glob("*.yaml")) if (conf / "flows").is_dir() else []
    chosen = [f for f in flows if f.stem == p.resolve().name] or flows
    if len(chosen) != 1:
        names = ", ".join(f.stem for f in flows) or "none"
        raise FlowNotFoundError(
            f"{name_or_path}: cannot tell which flow to use in {conf / 'flows'} (flows: {names})",
            hint=f"name the flow: llmflow ... NAME -C {conf}",
        )
    return Target(conf, "config" if (conf / "config.yaml").exists() else None, chosen[0].stem, chosen[0])


def list_flow_names(conf: Path) -> list[str]:
    d = Path(conf) / "flows"
    return sorted(f.stem for f in d.glob("*.yaml")) if d.is_dir() else []


# -- YAML problems become diagnostics -------------------------------------------------------


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


def _check_yaml(path: Path) -> None:
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


# -- composition ----------------------------------------------------------------------------


def compose(target: Target, overrides: list[str] | None = None) -> Composed:
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    overrides = [str(o) for o in (overrides or [])]
    for o in overrides:
        if not o.lstrip("+~").split("=")[0].strip():
            raise CompositionError(f"override {o!r} has no key", hint=OVERRIDE_HINT)
    _check_yaml(target.flow_file)
    shown: dict[str, str] = {}  # override given to Hydra -> as the user wrote it
    try:
        return _compose(target, overrides, shown)
    except LlmflowError:
        raise
    except (HydraException, OmegaConfBaseException) as exc:
        raise _composition_error(target, overrides, exc, shown) from None
    except yaml.YAMLError as exc:  # a group file that is not YAML
        raise FlowValidationError([yaml_error_diagnostic(exc, display_path(target.flow_file))]) from None
    except (
        AssertionError,
        OSError,
        RecursionError,
        UnicodeDecodeError,
        ValueError,
        TypeError,
        KeyError,
        IndexError,
        AttributeError,
    ) as exc:
        # Hydra and OmegaConf let a few plain errors (even assertions) escape on odd input;
        # they are still the user's input problem, so they get a message, not a traceback
        hint = (
            OVERRIDE_HINT
            if overrides
            else "check the config files the defaults lists name: each holds a mapping (or a list)"
        )
        raise CompositionError(
            f"cannot compose {_what(target)}: {type(exc).__name__}: {exc}".strip(), hint=hint
        ) from None


def _what(target: Target) -> str:
    return f"flow '{target.flow_name}'" if target.flow_name else target.flow_file.name


def _compose(target: Target, overrides: list[str], shown: dict[str, str]) -> Composed:
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    lone = _lone_file(target) if not overrides else None
    if lone is not None:
        cfg, sources, files, applied = lone
    else:
        GlobalHydra.instance().clear()
        try:
            with initialize_config_dir(config_dir=str(target.config_dir), version_base=None):
                cfg, defaults_list, config_overrides, applied = _hydra_compose(target, overrides, shown)
                sources, files = _provenance(target, defaults_list, config_overrides, applied, shown)
        finally:
            GlobalHydra.instance().clear()

    flow_path = _flow_path(cfg, target)
    try:
        if isinstance(cfg, dict):  # a lone file: nothing to resolve
            document, root = _select(cfg, flow_path), cfg
        else:
            node = OmegaConf.select(cfg, ".".join(flow_path)) if flow_path else cfg
            document = OmegaConf.to_container(node, resolve=True, throw_on_missing=True)
            root = OmegaConf.to_container(cfg, resolve=False)
    except OmegaConfBaseException as exc:
        key = str(getattr(exc, "full_key", "") or "")
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        where = ""
        if key:
            loc = sources.locate(_key_path(key))
            where = f"{loc.format()}: " if loc.file or loc.origin else ""
        hint = "check ${...} interpolations: the key must exist, or use ${oc.env:VAR,default}"
        if "Missing mandatory value" in msg:
            hint = f"give it a value, e.g. on the command line: {key.split('.', len(flow_path))[-1] if key else 'key'}=..."
        raise CompositionError(f"{where}cannot resolve {key or 'the config'}: {msg}", hint=hint) from None
    if not isinstance(document, dict):
        raise CompositionError(
            f"{display_path(target.flow_file)}: the flow must be a mapping, got {type(document).__name__}",
            hint="a flow file holds 'name:' and 'steps:' (or one key wrapping them)",
        )
    return Composed(
        target, document, root, sources.sub(flow_path), files, overrides,
        root_sources=sources, flow_path=flow_path, applied=applied,
    )  # fmt: skip


def _lone_file(target: Target) -> tuple[dict[str, Any], SourceMap, list[str], list[str]] | None:
    """A flow file composed on its own, without a defaults list, overrides, interpolations
    or a package header: Hydra's composition of it is the file itself. Read it once, with
    the C parser when there is one, instead of letting Hydra parse it three times with the
    pure-Python one (a 20,000-step flow: 15 s -> 2 s). None when Hydra has work to do."""
    if target.mode != "file":
        return None
    text = target.flow_file.read_text(encoding="utf-8")
    if "${" in text or package_header(text) is not None:
        return None
    data = load_yaml(text)
    if (
        not isinstance(data, dict)
        or "defaults" in data
        or "hydra" in data
        or not all(isinstance(k, str) for k in data)
    ):
        return None
    rel = display_path(target.flow_file)
    sm = SourceMap()
    tree = yaml_tree(text)
    if isinstance(tree, yaml.MappingNode):
        sm.merge_tree((), tree, rel, None, skip=("defaults",))
    return data, sm, [rel], []


def _select(cfg: dict[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = cfg
    for k in path:
        node = node[k]
    return node


def _hydra_compose(
    target: Target, overrides: list[str], shown: dict[str, str]
) -> tuple[Any, Any, list[Any], list[str]]:
    """Hydra's own composition, step by step as ``ConfigLoaderImpl`` does it, so that the
    defaults list is computed once and reused for provenance, and so that key=value
    overrides relative to the flow can be placed once the flow's position is known.
    (Hydra's internals are stable across 1.3.x; tests pin the behaviour.)

    Returns (config, defaults list, the config overrides applied, the override lines)."""
    import dataclasses

    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra._internal.defaults_list import create_defaults_list
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from hydra.types import RunMode
    from omegaconf import OmegaConf, open_dict

    # Hydra's ConfigLoaderImpl: composition one step at a time needs its private methods
    loader: Any = GlobalHydra.instance().config_loader()
    select = [] if _selects_flows(overrides) or not target.flow_name else [f"+flows={target.flow_name}"]

    def defaults_and_config(lines: list[str]) -> tuple[Any, Any]:
        parsed, repo = loader._parse_overrides_and_create_caching_repo(target.config_name, lines)
        loader.validate_sweep_overrides_legal(overrides=parsed, run_mode=RunMode.RUN, from_shell=True)
        dl = create_defaults_list(
            repo=repo,
            config_name=target.config_name,
            overrides_list=parsed,
            prepend_hydra=True,
            skip_missing=False,
        )
        return dl, loader._compose_config_from_defaults_list(defaults=dl.defaults, repo=repo)

    lines = select + overrides
    try:
        dl, cfg = defaults_and_config(lines)
    except HydraException as exc:
        # the primary config already picks a flow: replace it instead of adding one
        if not (select and "already at 'flows'" in str(exc)):
            raise
        lines = [f"flows={target.flow_name}", *overrides]
        dl, cfg = defaults_and_config(lines)
    OmegaConf.set_struct(cfg, True)

    prefix = ".".join(_flow_path(cfg, target))
    roots = {str(k) for k in cfg.keys()}
    config_overrides = []
    for o in dl.config_overrides:
        key = o.key_or_group
        if prefix and key.split(".")[0] not in roots and _relative_to_flow(o, target.config_dir):
            line = o.input_line or ""
            pos = line.find(key)
            new_line = f"{line[:pos]}{prefix}.{line[pos:]}"
            shown[new_line] = line
            lines = [new_line if x == line else x for x in lines]
            o = dataclasses.replace(o, key_or_group=f"{prefix}.{key}", input_line=new_line)
        config_overrides.append(o)
    ConfigLoaderImpl._apply_overrides_to_config(config_overrides, cfg)
    with open_dict(cfg):  # as hydra.compose(return_hydra_config=False) does
        cfg.pop("hydra", None)
    return cfg, dl, config_overrides, lines


def _selects_flows(overrides: list[str]) -> bool:
    return any(o.lstrip("+~").split("=")[0].split("@")[0] == "flows" for o in overrides)


def _relative_to_flow(o: Any, config_dir: Path) -> bool:
    """May this key=value override be meant relative to the flow? (Its first key is a flow
    field and it does not name a config group.)"""
    key = o.key_or_group
    if o.package is not None or "/" in key or key.split(".")[0] not in FLOW_KEYS:
        return False
    return "." in key or not (config_dir / key).is_dir()


def _key_path(key: str) -> tuple[str | int, ...]:
    """'a.b[0].c' or 'a.b.0.c' -> ('a', 'b', 0, 'c'): list indexes as ints, as in a SourceMap."""
    out: list[str | int] = []
    for part in key.replace("[", ".[").split("."):
        if not part:
            continue
        if part.startswith("[") and part.endswith("]") and part[1:-1].isdigit():
            out.append(int(part[1:-1]))
        elif part.isdigit():
            out.append(int(part))
        else:
            out.append(part)
    return tuple(out)


def _composition_error(
    target: Target, overrides: list[str], exc: Exception, shown: dict[str, str]
) -> CompositionError:
    text = str(exc).strip()
    for applied, original in shown.items():  # speak in the user's terms
        text = text.replace(applied.lstrip("+~"), original.lstrip("+~"))
        akey, okey = applied.lstrip("+~").split("=")[0], original.lstrip("+~").split("=")[0]
        text = text.replace(f"'{akey}'", f"'{okey}'")
    lines = []
    for line in text.splitlines():
        if line.startswith(("Config search path", "See https://")):
            break
        if line.strip() and "--multirun" not in line:
            lines.append(line.strip())
    msg = lines[0] if lines else type(exc).__name__
    cause = exc.__cause__
    if cause is not None and str(cause).strip():
        msg = f"{msg.rstrip('.')}: {str(cause).strip().splitlines()[0]}"
    rest = lines[1:]
    if rest and rest[0].startswith("Available options in"):
        hint = f"{rest[0].rstrip(':').lower()}: {', '.join(rest[1:])}"
    elif rest:
        hint = " ".join(rest)
    elif "mismatched input" in msg or "no viable alternative" in msg or "token recognition error" in msg:
        hint = "quote a value with spaces, braces or commas: key='Hi {{ inputs.text }}'; " + OVERRIDE_HINT
    else:
        hint = OVERRIDE_HINT
    bad = [o for o in overrides if o.lstrip("+~").split("=")[0] and o.lstrip("+~").split("=")[0] in text]
    if not bad:
        bad = [o for o in overrides if not _parses(o)]
    where = f" (override {bad[0]!r})" if bad else ""
    return CompositionError(f"cannot compose {_what(target)}{where}: {msg}", hint=hint)


def _parses(override: str) -> bool:
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        OverridesParser.create().parse_overrides([override])
    except (HydraException, ValueError):
        return False
    return True


def _flow_path(cfg: Any, target: Target) -> tuple[str, ...]:
    """Where the flow sits: ``flows.<name>`` (group mode) or the root or one wrapping key
    (file mode, Buttermilk's all-in-one ``tox: {...}``)."""
    from omegaconf import DictConfig

    mapping = (DictConfig, dict)

    def is_flow(node: Any) -> bool:
        return isinstance(node, mapping) and ("steps" in node or "orchestra" in node)

    def unwrap(node: Any, prefix: tuple[str, ...], name: str | None) -> tuple[str, ...]:
        if not isinstance(node, mapping) or is_flow(node):
            return prefix
        keys = [str(k) for k in node.keys() if k != "hydra"]
        if name and name in keys and isinstance(node[name], mapping):
            return (*prefix, name)
        flows = [k for k in keys if is_flow(node[k])]
        if len(flows) == 1:
            return (*prefix, flows[0])
        if len(keys) == 1 and isinstance(node[keys[0]], mapping):
            return (*prefix, keys[0])
        return prefix

    if target.flow_name:
        return unwrap(cfg.get("flows"), ("flows",), target.flow_name)
    return unwrap(cfg, (), target.flow_file.stem)


def _provenance(
    target: Target, dl: Any, config_overrides: list[Any], lines: list[str], shown: dict[str, str]
) -> tuple[SourceMap, list[str]]:
    """Replay Hydra's defaults list over the YAML nodes of each file, in merge order, then
    the command-line overrides."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    user_groups: set[str] = set()
    for o in OverridesParser.create().parse_overrides([x for x in lines if x not in shown]):
        user_groups.add(o.key_or_group.lstrip("/"))
    if target.flow_name and lines[:1] in ([f"+flows={target.flow_name}"], [f"flows={target.flow_name}"]):
        user_groups.discard("flows")
    sm = SourceMap()
    files: list[str] = []
    for d in dl.defaults:
        if d.config_path is None or d.config_path.startswith("hydra/") or d.config_path == "hydra/config":
            continue
        f = target.config_dir / f"{d.config_path}.yaml"
        if not f.is_file():
            continue
        text = f.read_text(encoding="utf-8")
        rel = display_path(f)
        files.append(rel)
        tree = yaml_tree(text)
        if tree is None:
            continue
        package = "" if package_header(text) == "_global_" else (d.package or "")
        group, _, option = d.config_path.rpartition("/")
        origin = None
        if group and not d.primary:
            origin = f"group option {group}={option}"
            if group in user_groups:
                origin += ", set on the command line"
        prefix = tuple(p for p in package.split(".") if p)
        if isinstance(tree, yaml.MappingNode):
            sm.merge_tree(prefix, tree, rel, origin, skip=("defaults",))
        elif prefix:
            sm.set_tree(prefix, tree, rel, origin)
    for ov in config_overrides:
        key = _key_path(ov.key_or_group)
        if ov.is_delete():
            sm.remove(key)
        else:
            sm.set_origin(key, f"command-line override {shown.get(ov.input_line, ov.input_line)!r}")
    return sm, files
