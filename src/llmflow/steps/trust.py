"""The trust boundaries of DESIGN.md, stated once and enforced here (docs/security.md).

1. **Config dirs are read-only to runs.** The places flows and agents are loaded from (the
   home's ``conf/``, ``LLMFLOW_CONFIG_DIR``, a server's ``--config-dir`` and ``--flows``)
   and the state dir (``<home>/.llmflow``: the store, every run's files) are *protected*:
   no step writes there.
2. **A run writes only inside its own workspace**: ``<home>/.llmflow/runs/<run id>/workspace``
   (a sub-flow shares its parent's), or its project, or a ``--workspace`` its user chose.
   Paths are resolved (symlinks included) before the check, at the moment of the write.
3. **Projects** are never at or above the home, never inside or around a protected dir,
   never the filesystem root or the user's home directory, never in a system directory
   (``/etc``, ``/usr``, ...) or on Python's import path (``site-packages``): files written
   there are run by other programs.
4. **A flow posted over HTTP runs no code** unless the server allows it (``--allow-shell``):
   only the step kinds in :data:`POSTED_KINDS`; sub-flows only by the name of a served flow
   that (with its own sub-flows) passes the same check; no agent naming code to import
   (``agent_obj: module.Class``); no tool that runs code, as the tool layer classifies
   tools (``tools/check.py``: importable functions, commands, stdio MCP servers the
   document declares; tools the operator registered are fine), passed in as
   ``tool_problems``; no workspace or storage location of its own.
5. **Without shell** (a posted run, or ``LLMFLOW_DISABLE_SHELL=1``) a run also writes no
   hidden files or ``.pth`` files (``.bashrc``, ``.git/hooks/*``, ``.ssh/*``: files other
   programs execute) and calls no importable ``module:function``.

Cross-site request checks (CSRF) live with the HTTP middleware in ``server/security.py``;
they use the server's CORS origins.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from llmflow.errors import WorkspaceError
from llmflow.model.diagnostics import Diagnostic
from llmflow.model.spec import AgentSpec, Flow, FlowStep, StepSpec

# step kinds a posted flow may use without --allow-shell: none of them runs code on the
# server (`flow` is checked further: see posted_flow_problems)
POSTED_KINDS = frozenset(
    {"llm", "broadcast", "write_file", "human", "parallel", "route", "loop", "conductor", "flow"}
)
ALLOW_HINT = "start the server with --allow-shell, or serve the flow from the config dir / --flows"
_IMPORTABLE = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_]\w*)*:[A-Za-z_][\w.]*$|^[A-Za-z_]\w*(\.[A-Za-z_]\w*)+$")


# where files are run or read as configuration by other programs
SYSTEM_DIRS = (
    "/etc",
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/boot",
    "/dev",
    "/proc",
    "/sys",
    "/run",
    "/var/spool",
    "/var/lib",
    "/var/run",
)


def code_dirs() -> list[Path]:
    """System directories and Python's own (stdlib, site-packages, the interpreter's
    scripts dir) as they resolve on this machine."""
    import sys
    import sysconfig

    out = [Path(d) for d in SYSTEM_DIRS]
    for key in ("stdlib", "platstdlib", "purelib", "platlib", "scripts"):
        found = sysconfig.get_paths().get(key)
        if found:
            out.append(Path(found))
    out += [Path(p) for p in sys.path if p and p.endswith(("site-packages", "dist-packages"))]
    resolved = []
    for p in out:
        try:
            resolved.append(p.resolve())
        except OSError:
            continue
    return list(dict.fromkeys(resolved))


def _resolve(p: str | Path) -> Path:
    return Path(p).expanduser().resolve()


def _inside(p: Path, d: Path) -> bool:
    return p == d or d in p.parents


def is_importable_reference(value: str) -> bool:
    """``pkg.mod:function`` or ``pkg.mod.function``: names code to import and call."""
    return bool(_IMPORTABLE.match(value.strip()))


@dataclass(frozen=True)
class TrustPolicy:
    """Where runs may write and where projects may live. Build it with :meth:`build`."""

    home: Path
    state_dir: Path
    config_dirs: tuple[Path, ...] = ()
    protected_files: tuple[Path, ...] = ()  # the SQLite database (and its -wal/-shm files)
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def build(
        cls,
        home: str | Path,
        *,
        config_dirs: Iterable[str | Path | None] = (),
        database_path: str | Path | None = None,
    ) -> TrustPolicy:
        h = _resolve(home)
        dirs = [h / "conf", *(_resolve(d) for d in config_dirs if d)]
        files = (_resolve(database_path),) if database_path and str(database_path) != ":memory:" else ()
        return cls(h, h / ".llmflow", tuple(dict.fromkeys(dirs)), files)

    def with_config_dirs(self, *dirs: str | Path) -> TrustPolicy:
        """The same policy protecting more config dirs (a server's catalog)."""
        more = [_resolve(d) for d in dirs if d]
        return replace(self, config_dirs=tuple(dict.fromkeys([*self.config_dirs, *more])))

    @property
    def protected_dirs(self) -> tuple[Path, ...]:
        return (*self.config_dirs, self.state_dir)

    def _protected_file(self, p: Path) -> bool:
        return any(p.parent == f.parent and p.name.startswith(f.name) for f in self.protected_files)

    # -- projects -------------------------------------------------------------------------------
    def project_problem(self, path: Path) -> str | None:
        """Why a (resolved) directory cannot be a project, or None."""
        if path == Path(path.anchor):
            return f"{path} is the filesystem root"
        if path == _resolve("~"):
            return f"{path} is the home directory of the server's user"
        if _inside(self.home, path):
            return f"{path} is the llmflow home or a directory above it ({self.home}), which holds its config and store"
        for d in self.protected_dirs:
            if _inside(path, d):
                return f"{path} is inside {d}, where llmflow keeps its {'store and run files' if d == self.state_dir else 'flow definitions'}"
            if _inside(d, path):
                return f"{path} contains {d}, where llmflow keeps its {'store and run files' if d == self.state_dir else 'flow definitions'}"
        for f in self.protected_files:
            if _inside(f, path):
                return f"{path} contains the store's database {f}"
        for d in code_dirs():  # (containing one is fine: a repo may hold its .venv)
            if _inside(path, d):
                return f"{path} is inside {d}, where files are run by other programs"
        return None

    # -- writes ---------------------------------------------------------------------------------
    def check_workspace(self, workspace: Path, run_id: str) -> Path:
        """The run's workspace, resolved; WorkspaceError if a run may not write there."""
        ws = workspace.resolve()
        runs = self.state_dir / "runs"
        if _inside(ws, runs) and ws != runs:
            parts = ws.relative_to(runs).parts
            owner = parts[0]
            # a run's own default workspace; a sub-flow (id "<parent>.<step>...") shares its parent's
            if (
                len(parts) >= 2
                and parts[1] == "workspace"
                and (run_id == owner or run_id.startswith(owner + "."))
            ):
                return ws
            raise WorkspaceError(
                f"the workspace {ws} belongs to another run",
                hint="a run writes only in its own workspace or project",
            )
        for d in self.protected_dirs:
            # a workspace around a config dir that does not exist is fine (`-w .` where no conf/ is):
            # check_write still refuses any write into it
            if _inside(ws, d) or (_inside(d, ws) and d.exists()):
                raise WorkspaceError(
                    f"the workspace {ws} {'is inside' if _inside(ws, d) else 'contains'} {d}, which runs may not write to",
                    hint="config dirs and llmflow's state dir are read-only to runs; choose another workspace or project directory",
                )
        return ws

    def check_write(self, target: Path, workspace: Path, run_id: str, *, allow_code: bool = True) -> Path:
        """``target`` (already confined to ``workspace``) if this run may write it; else
        WorkspaceError naming the boundary."""
        ws = self.check_workspace(workspace, run_id)
        t = target.resolve()
        if not _inside(t, ws):
            raise WorkspaceError(
                f"path {t} is outside the workspace {ws}", hint="use a path relative to the workspace"
            )
        for d in self.protected_dirs:
            if _inside(t, d) and not _inside(ws, self.state_dir / "runs"):
                raise WorkspaceError(
                    f"{t} is inside {d}, which runs may not write to",
                    hint="config dirs and llmflow's state dir are read-only to runs",
                )
        if self._protected_file(t):
            raise WorkspaceError(f"{t} is the store's database", hint="runs may not write to llmflow's store")
        if not allow_code:
            rel = t.relative_to(ws).parts if t != ws else ()
            if any(p.startswith(".") for p in rel) or t.suffix == ".pth":
                raise WorkspaceError(
                    f"{t.relative_to(ws) if t != ws else t} is a hidden or .pth file; without shell a run may not write files other programs execute",
                    hint="write visible files, or run the flow where shell is allowed (--allow-shell)",
                )
        return t


def policy_of(settings: dict[str, Any], artifacts_dir: Path | None = None) -> TrustPolicy | None:
    """The policy a step context carries (``ctx.settings["trust"]``), else one derived from
    the run's artifacts dir (``<home>/.llmflow/runs/<id>/artifacts``), else None."""
    p = settings.get("trust") if isinstance(settings, dict) else None
    if isinstance(p, TrustPolicy):
        return p
    if artifacts_dir is not None:
        a = Path(artifacts_dir)
        if len(a.parents) >= 3 and a.parents[1].name == "runs" and a.parents[2].name == ".llmflow":
            return TrustPolicy.build(a.parents[3])
    return None


def writable_path(ctx: Any, rel: str) -> Path:
    """``rel`` inside the step's workspace (no absolute paths, ``..`` or symlink escapes)
    and a place this run may write: what every writer uses (the ``write_file`` step, the
    ``write_file`` tool). ``ctx`` is the step's StepContext. WorkspaceError otherwise."""
    from llmflow.steps.workspace import safe_path

    path = safe_path(ctx.workspace, rel)
    policy = policy_of(ctx.settings, ctx.artifacts_dir)
    if policy is not None:
        path = policy.check_write(path, ctx.workspace, ctx.run_id, allow_code=ctx.allow_shell)
    return path


# -- posted flow documents ------------------------------------------------------------------------


ToolCheck = Callable[[Flow, bool], list[Diagnostic]]  # (flow, allow_code) -> the tool layer's problems


def posted_flow_problems(
    flow: Flow,
    *,
    allow_code: bool,
    served_flow: Callable[[str], Flow] | None = None,
    tool_problems: ToolCheck | None = None,
    root: str = "document",
) -> list[Diagnostic]:
    """What a flow posted over the API may not do (see the module docstring); [] when it
    may run. ``served_flow(name)`` loads a flow the server offers (for sub-flow steps); it
    raises LookupError / ValueError for a name it does not serve. ``tool_problems(flow,
    allow_code)`` is the tool layer's check, with paths under ``root`` for this flow."""
    out: list[Diagnostic] = []
    if flow.options.workspace:
        out.append(
            Diagnostic(
                "not-allowed",
                "a posted flow cannot choose its workspace",
                f"{root}.options.workspace",
                "run it in a project: options.project_id",
            )
        )
    # results files the storage observer appends to: `storage:` and Buttermilk's parameters.save
    save = flow.parameters.get("save") if isinstance(flow.parameters, dict) else None
    for where, given in (("storage", flow.storage), ("parameters.save", save)):
        if given:
            out.append(
                Diagnostic(
                    "not-allowed",
                    "a posted flow cannot choose where its results are stored",
                    f"{root}.{where}",
                    f"serve the flow from the config dir, or drop '{where}'",
                )
            )
    if tool_problems is not None:  # checked like any flow's tools, and for code without --allow-shell
        out += tool_problems(flow, allow_code)
    if allow_code:
        return out
    out += _code_problems(flow, root, served_flow, tool_problems, seen=set())
    return out


def _code_problems(
    flow: Flow,
    root: str,
    served_flow: Callable[[str], Flow] | None,
    tool_problems: ToolCheck | None,
    seen: set[str],
) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    for name, agent in flow.agents.items():
        out += _agent_problems(agent, f"{root}.agents.{name}")

    def walk(steps: list[StepSpec], path: str) -> None:
        for i, s in enumerate(steps):
            here = f"{path}[{i}]"
            if s.kind not in POSTED_KINDS:
                what = f"a {s.kind} step" if s.kind in ("shell", "python") else f"a step of kind {s.kind!r}"
                out.append(
                    Diagnostic(
                        "not-allowed",
                        f"step '{s.id}' is {what}; flows posted over the API may not run code on the server",
                        here,
                        ALLOW_HINT,
                    )
                )
            if isinstance(s, FlowStep):
                out.extend(_subflow_problems(s, here, served_flow, tool_problems, seen))
            for f in s.NESTED:
                walk(getattr(s, f), f"{here}.{f}")

    walk(flow.steps, f"{root}.steps")
    return out


def _agent_problems(agent: AgentSpec, path: str) -> list[Diagnostic]:
    if agent.agent_obj and is_importable_reference(agent.agent_obj):
        return [
            Diagnostic(
                "not-allowed",
                f"agent_obj {agent.agent_obj!r} names code to import",
                f"{path}.agent_obj",
                ALLOW_HINT,
            )
        ]
    return []


def _subflow_problems(
    s: FlowStep,
    here: str,
    served_flow: Callable[[str], Flow] | None,
    tool_problems: ToolCheck | None,
    seen: set[str],
) -> list[Diagnostic]:
    """A posted flow may run a sub-flow only by the literal name of a served flow, without
    overrides, and only if that flow (and its sub-flows) would pass as posted."""
    ref = s.flow.strip()
    if "{{" in ref or "{%" in ref or "/" in ref or ref.endswith((".yaml", ".yml")) or served_flow is None:
        return [
            Diagnostic(
                "not-allowed",
                f"step '{s.id}' runs the sub-flow {ref!r}; a posted flow may run only a flow this server serves, by its name",
                f"{here}.flow",
                ALLOW_HINT,
            )
        ]
    if s.overrides:
        return [
            Diagnostic(
                "not-allowed",
                f"step '{s.id}' changes its sub-flow with overrides; a posted flow may not",
                f"{here}.overrides",
                ALLOW_HINT,
            )
        ]
    if ref in seen:
        return []
    seen.add(ref)
    try:
        sub = served_flow(ref)
    except (LookupError, ValueError) as exc:
        return [
            Diagnostic(
                "unknown-flow",
                f"step '{s.id}' runs the sub-flow {ref!r}: {getattr(exc, 'message', exc)}",
                f"{here}.flow",
                "name a flow from GET /api/v1/flows",
            )
        ]
    inner = _code_problems(sub, f"flow '{ref}'", served_flow, tool_problems, seen)
    if tool_problems is not None:
        inner += [d for d in tool_problems(sub, False) if d.code == "not-allowed"]
    if inner:
        first = inner[0]
        return [
            Diagnostic(
                "not-allowed",
                f"step '{s.id}' runs the sub-flow {ref!r}, which runs code on the server ({first.path}: {first.message})",
                f"{here}.flow",
                ALLOW_HINT,
            )
        ]
    return []
