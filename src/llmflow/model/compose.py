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

Finding the flow to compose is :mod:`llmflow.model.targets`; checking a file's YAML before
Hydra reads it, :mod:`llmflow.model.yaml_checks`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from llmflow.errors import CompositionError, FlowValidationError, LlmflowError
from llmflow.model.sourcemap import SourceMap, load_yaml, package_header, yaml_tree
from llmflow.model.targets import Target, display_path
from llmflow.model.yaml_checks import check_yaml_file, yaml_error_diagnostic

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


# -- composition ----------------------------------------------------------------------------


def compose(target: Target, overrides: list[str] | None = None) -> Composed:
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    overrides = [str(o) for o in (overrides or [])]
    for o in overrides:
        if not o.lstrip("+~").split("=")[0].strip():
            raise CompositionError(f"override {o!r} has no key", hint=OVERRIDE_HINT)
    check_yaml_file(target.flow_file)
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
