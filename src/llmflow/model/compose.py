"""Hydra-style composition of flow configs, with provenance.

We use hydra-core's own ``compose`` (defaults lists, ``_self_``, packages, interpolation,
the override grammar) and ask its config loader for the defaults list, so provenance
follows exactly the merge order Hydra used. This module reads the config files it is
asked to compose; it does nothing on import.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from llmflow.errors import CompositionError, FlowNotFoundError, FlowValidationError
from llmflow.model.diagnostics import Diagnostic, Location
from llmflow.model.sourcemap import SourceMap, package_header, yaml_tree

OVERRIDE_HINT = (
    "overrides use Hydra's grammar: key=value, +key=value (add), ~key (delete), "
    "group=option, '+flows=[a,b]'"
)


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
    root: dict[str, Any]  # the whole composed config, resolved
    sources: SourceMap  # key paths relative to the flow mapping
    files: list[str] = field(default_factory=list)
    overrides: list[str] = field(default_factory=list)


def _looks_like_conf_dir(d: Path) -> bool:
    return (d / "config.yaml").exists() or (d / "flows").is_dir() or (d / "agents").is_dir()


def find_target(name_or_path: str, config_dir: str | Path | None = None) -> Target:
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists():
        if p.is_dir():
            if (p / "flow.yaml").exists():
                p = p / "flow.yaml"
            elif (p / "conf").is_dir():
                conf = (p / "conf").resolve()
                flows = sorted((conf / "flows").glob("*.yaml")) if (conf / "flows").is_dir() else []
                chosen = [f for f in flows if f.stem == p.resolve().name] or flows
                if len(chosen) != 1:
                    raise FlowNotFoundError(
                        f"{name_or_path}: cannot tell which flow to run in {conf / 'flows'}",
                        hint="name the flow file, e.g. " + str(conf / "flows" / "NAME.yaml"),
                    )
                return Target(conf, "config" if (conf / "config.yaml").exists() else None, chosen[0].stem, chosen[0])
            else:
                raise FlowNotFoundError(
                    f"{name_or_path}: directory has no flow.yaml and no conf/ directory",
                    hint="give a flow file (.yaml), a directory with flow.yaml, or a flow name",
                )
        if not p.exists():
            raise FlowNotFoundError(f"{name_or_path}: no such flow file", hint="check the path")
        p = p.resolve()
        if p.parent.name == "flows" and _looks_like_conf_dir(p.parent.parent):
            conf = p.parent.parent
            return Target(conf, "config" if (conf / "config.yaml").exists() else None, p.stem, p)
        return Target(p.parent, p.stem, None, p)
    conf = Path(config_dir or "conf").resolve()
    f = conf / "flows" / f"{name_or_path}.yaml"
    if f.exists():
        return Target(conf, "config" if (conf / "config.yaml").exists() else None, name_or_path, f)
    available = list_flow_names(conf)
    from llmflow.model.diagnostics import did_you_mean

    hint = did_you_mean(name_or_path, available) or (
        f"available flows in {conf}: {', '.join(available)}" if available else
        f"no flows in {conf}/flows; give a path to a flow file or set --config-dir"
    )
    raise FlowNotFoundError(f"no flow named {name_or_path!r}", hint=hint)


def list_flow_names(conf: Path) -> list[str]:
    d = Path(conf) / "flows"
    return sorted(f.stem for f in d.glob("*.yaml")) if d.is_dir() else []


def _check_yaml(path: Path) -> None:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise FlowNotFoundError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        loc = Location(str(path), mark.line + 1 if mark else None, mark.column + 1 if mark else None)
        raise FlowValidationError(
            [Diagnostic("yaml-syntax", f"invalid YAML: {exc.problem}", "", "fix the YAML syntax", loc)]
        ) from None
    except yaml.YAMLError as exc:
        raise FlowValidationError([Diagnostic("yaml-syntax", f"invalid YAML: {exc}", "", None, Location(str(path)))]) from None


def compose(target: Target, overrides: list[str] | None = None) -> Composed:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    overrides = list(overrides or [])
    _check_yaml(target.flow_file)
    all_overrides = list(overrides)
    if target.flow_name and not any(o.lstrip("+~").startswith("flows=") for o in overrides):
        all_overrides.insert(0, f"+flows={target.flow_name}")
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(target.config_dir), version_base=None):
            try:
                cfg = hydra_compose(config_name=target.config_name, overrides=all_overrides)
            except HydraException as exc:
                if target.flow_name and "already at 'flows'" in str(exc):
                    all_overrides[0] = f"flows={target.flow_name}"
                    cfg = hydra_compose(config_name=target.config_name, overrides=all_overrides)
                else:
                    raise
            sources, files = _provenance(target, all_overrides)
    except (HydraException, OmegaConfBaseException) as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        bad = [o for o in overrides if o.split("=")[0].lstrip("+~") in str(exc)]
        where = f" (override {bad[0]!r})" if bad else ""
        raise CompositionError(f"cannot compose {target.flow_file.name}{where}: {msg}", hint=OVERRIDE_HINT) from None
    finally:
        GlobalHydra.instance().clear()

    flow_path = _flow_path(cfg, target)
    try:
        node = OmegaConf.select(cfg, ".".join(str(p) for p in flow_path)) if flow_path else cfg
        document = OmegaConf.to_container(node, resolve=True, throw_on_missing=True)
        root = OmegaConf.to_container(cfg, resolve=False)
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None)
        msg = str(exc).strip().splitlines()[0]
        raise CompositionError(
            f"cannot resolve {('key ' + repr(key) + ': ') if key else ''}{msg}",
            hint="check ${...} interpolations: the key must exist, or use ${oc.env:VAR,default}",
        ) from None
    if not isinstance(document, dict):
        raise CompositionError(f"{target.flow_file}: the flow must be a mapping, got {type(document).__name__}")
    return Composed(target, document, root, sources.sub(flow_path), files, overrides)


def _flow_path(cfg: Any, target: Target) -> tuple[str, ...]:
    from omegaconf import DictConfig

    def unwrap(node: Any, prefix: tuple[str, ...], name: str | None) -> tuple[str, ...]:
        if not isinstance(node, DictConfig):
            return prefix
        if "steps" in node or "orchestra" in node:
            return prefix
        keys = [k for k in node.keys() if k != "hydra"]
        if name and name in keys and isinstance(node[name], DictConfig):
            return (*prefix, name)
        if len(keys) == 1 and isinstance(node[keys[0]], DictConfig):
            return (*prefix, str(keys[0]))
        return prefix

    if target.flow_name:
        return unwrap(cfg.get("flows"), ("flows",), target.flow_name)
    return unwrap(cfg, (), target.flow_file.stem)


def _provenance(target: Target, overrides: list[str]) -> tuple[SourceMap, list[str]]:
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode

    loader = GlobalHydra.instance().config_loader()
    dl = loader.compute_defaults_list(config_name=target.config_name, overrides=overrides, run_mode=RunMode.RUN)
    sm = SourceMap()
    files: list[str] = []
    choices = dl.overrides.override_choices
    for d in dl.defaults:
        if d.config_path is None or d.config_path.startswith("hydra/") or d.config_path == "hydra/config":
            continue
        f = target.config_dir / f"{d.config_path}.yaml"
        if not f.exists():
            continue
        text = f.read_text(encoding="utf-8")
        header = package_header(text)
        package = d.package or ""
        if header == "_global_":
            package = ""
        tree = yaml_tree(text)
        group, _, option = d.config_path.rpartition("/")
        origin = None
        if group and not d.primary:
            origin = f"group option {group}={option}"
            if group in choices:
                origin += " (set on the command line)"
        rel = str(f)
        files.append(rel)
        if tree is None:
            continue
        prefix = tuple(p for p in package.split(".") if p)
        if hasattr(tree, "value") and isinstance(tree.value, list):
            from yaml import MappingNode

            if isinstance(tree, MappingNode):
                for k, v in tree.value:
                    if getattr(k, "value", None) == "defaults" and not prefix:
                        continue
                    if getattr(k, "value", None) == "defaults":
                        continue
                    key = (*prefix, k.value)
                    if not isinstance(v, MappingNode):
                        sm.clear(key)
                    sm.entries[key] = Location(rel, k.start_mark.line + 1, k.start_mark.column + 1, origin)
                    sm._walk_value(key, v, rel, origin)
    for ov in dl.overrides.config_overrides:
        key = tuple(ov.key_or_group.split("."))
        if ov.is_delete():
            sm.remove(key)
        else:
            sm.set_origin(key, f"command-line override {ov.input_line!r}")
    return sm, files
