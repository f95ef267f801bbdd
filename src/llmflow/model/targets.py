"""Where a flow is: a name in a config dir's ``flows/`` group, a flow file, or a directory
(``flow.yaml``, a ``conf/`` dir, a SuperOptiX agent's playbook) -> a :class:`Target` for
:func:`llmflow.model.compose.compose`. Reads the file system only when called."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from llmflow.errors import FlowNotFoundError
from llmflow.model.diagnostics import did_you_mean


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
