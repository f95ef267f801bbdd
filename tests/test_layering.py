"""The layering of DESIGN.md, enforced; and imports that do no I/O and stay light.

    model <- engine <- steps / tools / providers / store <- runtime <- batch / evals / observe / sdk
          <- server / cli

A static walk over every module of src/llmflow: module-level and function-level imports
both count (a lazy import is still a dependency); imports under ``if TYPE_CHECKING:`` do
not (they never run). Top-level modules are placed explicitly in COMPONENT, so a new one
has to be given a layer.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "llmflow"

# top-level module or package -> its component
COMPONENT = {
    "errors": "errors",
    "model": "model",
    "engine": "engine",
    "steps": "steps",
    "tools": "tools",
    "providers": "providers",
    "store": "store",
    # the composition root and the run service (llmflow/runtime/), and the process settings
    # and run-view helpers they share with the interfaces
    "runtime": "runtime",
    "settings": "runtime",
    "stats": "runtime",
    "isotime": "runtime",
    "batch": "batch",
    # evaluation and optimisation: over batch mode and the runtime
    "evals": "evals",
    # OpenTelemetry export and metrics: observers of the runtime's events (entry points)
    "observe": "observe",
    # the Python facades (run / start, Runner, Orchestra): over the runtime; run_batch over batch/
    "sdk": "sdk",
    # old import paths, kept as re-exports: `llmflow.app` (earlier docs) and `llmflow.orchestra`
    # (runs recorded before the move name llmflow.orchestra:aggregate_answers as a step function)
    "app": "runtime",
    "orchestra": "sdk",
    "server": "server",
    "cli": "cli",
    "web": "web",
    "__main__": "main",
    "__init__": "root",
}

_CORE = {"errors", "root"}  # root: `from llmflow import __version__` (its exports resolve to their homes)
_RUNTIME = _CORE | {"model", "engine", "steps", "tools", "providers", "store", "runtime"}
ALLOWED = {
    "errors": {"errors"},
    "model": _CORE | {"model"},
    "engine": _CORE | {"model", "engine"},
    "steps": _CORE | {"model", "engine", "steps", "tools"},
    # tool calling: the llm step runs the tool loop (steps -> tools); tools reach models' message
    # types and embeddings (providers) and reuse the workspace and human-answer helpers of steps
    "tools": _CORE | {"model", "engine", "providers", "steps", "tools"},
    "providers": _CORE | {"model", "engine", "providers"},
    "store": _CORE | {"model", "engine", "store"},
    "runtime": _RUNTIME,
    "batch": _RUNTIME | {"batch"},
    "evals": _RUNTIME | {"batch", "evals"},
    "observe": _RUNTIME | {"observe"},
    "sdk": _RUNTIME | {"batch", "sdk"},
    "server": _RUNTIME | {"batch", "evals", "observe", "sdk", "server", "web"},  # never cli
    "cli": _RUNTIME | {"batch", "evals", "observe", "sdk", "server", "cli", "web"},
    "web": {"web"},
    "main": {"cli"},
    "root": set(),  # llmflow/__init__.py exports lazily, by name
}


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__" and len(parts) > 2:
        parts = parts[:-1]
    return ".".join(parts)


def component(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "llmflow":
        return None
    if len(parts) == 1:
        return "root"
    return COMPONENT.get(parts[1], f"<unplaced: llmflow.{parts[1]}>")


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            t = node.test
            name = t.id if isinstance(t, ast.Name) else t.attr if isinstance(t, ast.Attribute) else None
            if name == "TYPE_CHECKING":
                for child in node.body:
                    for sub in ast.walk(child):
                        if hasattr(sub, "lineno"):
                            lines.add(sub.lineno)
    return lines


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, imported module) for every llmflow import in a file, relative ones resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    skip = _type_checking_lines(tree)
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "llmflow"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.split(".")[0] != "llmflow":
                continue
            if node.module is None or mod.count(".") < 1:
                # `from llmflow import x` / `from . import x`: x is a module, or a name
                out += [(node.lineno, _from_package(mod, a.name)) for a in node.names]
            else:
                out.append((node.lineno, mod))
    return out


def _root_exports() -> dict[str, str]:
    """llmflow/__init__.py's lazy exports: name -> the module it comes from."""
    if not (SRC / "__init__.py").exists():
        return {}
    tree = ast.parse((SRC / "__init__.py").read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "_EXPORTS" for t in node.targets
        ):
            return ast.literal_eval(node.value)
    return {}


def _from_package(package: str, name: str) -> str:
    base = SRC.parent.joinpath(*package.split("."))
    if (base / f"{name}.py").exists() or (base / name).is_dir():
        return f"{package}.{name}"
    if package == "llmflow":
        return _root_exports().get(name, "llmflow")
    return package


def violations() -> list[str]:
    found = []
    for path in sorted(SRC.rglob("*.py")):
        me = module_name(path)
        src_comp = component(me)
        for line, target in sorted(imports_of(path)):
            dst_comp = component(target)
            if dst_comp is None or dst_comp == src_comp:
                continue
            rel = Path("src") / path.relative_to(SRC.parent)
            if src_comp not in ALLOWED:
                found.append(
                    f"{rel}:{line}: {me} is not placed in the layering (add it to COMPONENT in tests/test_layering.py)"
                )
            elif dst_comp not in ALLOWED[src_comp]:
                found.append(
                    f"{rel}:{line}: {me} ({src_comp}) imports {target} ({dst_comp}); {src_comp} may import only {', '.join(sorted(ALLOWED[src_comp] - {src_comp})) or 'nothing from llmflow'}"
                )
    return found


def test_every_module_respects_the_layering():
    problems = violations()
    assert not problems, "layering violations (see DESIGN.md 'Shape of the code'):\n  " + "\n  ".join(
        problems
    )


def test_the_layering_check_sees_lazy_relative_and_type_checking_imports(tmp_path, monkeypatch):
    pkg = tmp_path / "llmflow"
    (pkg / "model").mkdir(parents=True)
    (pkg / "model" / "__init__.py").write_text("")
    (pkg / "model" / "bad.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from llmflow.engine import state\n"
        "def f():\n    from llmflow.cli import main\n"
        "from ..server import app\n"
        "from . import good\n"
    )
    monkeypatch.setattr(sys.modules[__name__], "SRC", pkg)
    found = violations()
    assert [p.split(": ", 1)[0] for p in found] == [
        "src/llmflow/model/bad.py:5",
        "src/llmflow/model/bad.py:6",
    ]
    assert "llmflow.model.bad (model) imports llmflow.cli (cli); model may import only errors" in found[0]


# -- import-time behaviour ---------------------------------------------------------------------

_ALL_MODULES = sorted(module_name(p) for p in SRC.rglob("*.py") if p.name != "__main__.py")

_IMPORT_PROBE = r"""
import json, logging, os, sys, sysconfig, site

allowed_roots = {os.path.realpath(p) for p in {sys.prefix, sys.base_prefix, sys.exec_prefix, *sysconfig.get_paths().values(), *site.getsitepackages()} if p}
src = os.path.realpath(sys.argv[1])
events = {"open": [], "connect": [], "env": []}

def audit(event, args):
    if event == "open" and args and isinstance(args[0], (str, bytes)):
        path = os.path.realpath(os.fsdecode(args[0]))
        mode = args[1] if len(args) > 1 else "r"
        if path.startswith(src) or any(path.startswith(r) for r in allowed_roots):
            return
        if path.startswith("/dev/") or path.startswith("/proc/") or path.startswith("/sys/"):
            return
        events["open"].append(f"{path} ({mode})")
    elif event == "socket.connect":
        events["connect"].append(repr(args[1:]))

_orig_getitem = type(os.environ).__getitem__
_orig_contains = type(os.environ).__contains__
_orig_get = type(os.environ).get

def _who():
    # the nearest caller outside this probe and the os / collections plumbing
    f = sys._getframe(1)
    while f is not None:
        mod = f.f_globals.get("__name__", "")
        if mod.split(".")[0] == "llmflow":
            return mod
        if mod not in ("__main__", "os", "_collections_abc", "typing"):
            return None
        f = f.f_back
    return None

def _rec(name, key):
    who = _who()
    if who:
        events["env"].append(f"{who} reads os.environ[{key!r}] ({name})")

class Recording(type(os.environ)):
    def __getitem__(self, key):
        _rec("getitem", key)
        return _orig_getitem(self, key)
    def __contains__(self, key):
        _rec("in", key)
        return _orig_contains(self, key)
    def get(self, key, default=None):
        _rec("get", key)
        return _orig_get(self, key, default)

os.environ.__class__ = Recording
real_getenv = os.getenv
def getenv(key, default=None):
    who = _who()
    if who:
        events["env"].append(f"{who} calls os.getenv({key!r})")
    return real_getenv(key, default)
os.getenv = getenv

handlers_before = list(logging.root.handlers)
level_before = logging.root.level
sys.addaudithook(audit)
import importlib
failed = {}
for name in json.loads(sys.argv[2]):
    try:
        importlib.import_module(name)
    except ImportError as exc:  # an optional extra that is not installed
        failed[name] = str(exc)
events["logging"] = [] if (logging.root.handlers == handlers_before and logging.root.level == level_before) else [f"root handlers {logging.root.handlers} level {logging.root.level}"]
events["import_errors"] = failed
print("RESULT " + json.dumps(events))
"""


def _probe(modules: list[str]) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", _IMPORT_PROBE, str(SRC), json.dumps(modules)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


@pytest.fixture(scope="module")
def import_events() -> dict:
    return _probe(_ALL_MODULES)


def test_importing_every_module_opens_no_files_outside_the_installation(import_events):
    assert import_events["open"] == [], import_events["open"]


def test_importing_every_module_connects_nowhere(import_events):
    assert import_events["connect"] == []


def test_importing_every_module_reads_no_environment(import_events):
    assert import_events["env"] == []


def test_importing_every_module_configures_no_logging(import_events):
    assert import_events["logging"] == []


def test_every_module_imports(import_events):
    missing = {k: v for k, v in import_events["import_errors"].items() if "No module named 'llmflow" in v}
    assert missing == {}


_HELP_PROBE = r"""
import io, contextlib, sys, json
from llmflow.cli.main import main
out = io.StringIO()
with contextlib.redirect_stdout(out):
    try:
        main(["--help"])
    except SystemExit as exc:
        code = exc.code
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {"hydra", "omegaconf", "pydantic_ai", "llama_cpp", "fastapi", "uvicorn", "sqlalchemy", "ray", "jinja2", "httpx", "pydantic"})
print("RESULT " + json.dumps({"code": code, "heavy": heavy, "help": out.getvalue()}))
"""


def test_llmflow_help_does_not_import_heavy_modules():
    proc = subprocess.run([sys.executable, "-c", _HELP_PROBE], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))[len("RESULT ") :])
    assert res["code"] == 0
    assert "validate" in res["help"] and "config" in res["help"]
    tops = sorted({m.split(".")[0] for m in res["heavy"]})
    forbidden = [m for m in tops if m in {"hydra", "omegaconf", "pydantic_ai", "llama_cpp", "fastapi"}]
    assert forbidden == [], (
        f"`llmflow --help` imports {forbidden}; import them inside the commands that need them"
    )
