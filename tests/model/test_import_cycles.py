"""No import cycle among the modules of ``llmflow.model``.

An import here is every ``import`` / ``from ... import`` statement in the module's source,
read with ``ast``: at module level, inside a function, and under ``if TYPE_CHECKING:``
alike (DESIGN.md: "No import cycles, not even inside functions"). ``from llmflow.model
import limits`` names the module ``llmflow.model.limits``; relative imports are resolved.
Imports made by ``importlib`` are not seen; the model uses none between its own modules
(the second test keeps it so).
"""

from __future__ import annotations

import ast
from pathlib import Path

import llmflow.model

MODEL_DIR = Path(llmflow.model.__file__).parent
PACKAGE = "llmflow.model"


def _module_name(path: Path) -> str:
    return f"{PACKAGE}.{path.stem}" if path.stem != "__init__" else PACKAGE


def _imports_of(path: Path, known: set[str]) -> dict[str, int]:
    """The model modules ``path`` imports, each with the line of its first import."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: dict[str, int] = {}
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package llmflow.model
                parts = PACKAGE.split(".")
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join([*parts, base] if base else parts)
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        for name in targets:
            if name in known and name != PACKAGE:
                found.setdefault(name, node.lineno)
    return found


def model_import_graph() -> dict[str, dict[str, int]]:
    """module -> {model module it imports: line}, for every module of llmflow.model."""
    paths = sorted(MODEL_DIR.glob("*.py"))
    known = {_module_name(p) for p in paths}
    return {_module_name(p): _imports_of(p, known) for p in paths}


def find_cycle(graph: dict[str, dict[str, int]]) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None (an iterative depth-first search)."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    for root in sorted(graph):
        if state.get(root):
            continue
        path = [root]
        stack = [iter(sorted(graph[root]))]
        state[root] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph.get(nxt, {}))))
    return None


def test_no_import_cycle_among_model_modules() -> None:
    graph = model_import_graph()
    assert f"{PACKAGE}.spec" in graph and f"{PACKAGE}.loader" in graph  # it read the package
    cycle = find_cycle(graph)
    if cycle is not None:
        steps = [f"{a} imports {b} (line {graph[a][b]})" for a, b in zip(cycle, cycle[1:], strict=False)]
        raise AssertionError(
            "import cycle inside llmflow.model:\n  "
            + "\n  ".join(steps)
            + "\nmove the shared part down, or hand the class in as a parameter (see model/spec.py)"
        )


def test_the_flow_spec_stack_is_layered_one_way() -> None:
    """The modules that used to form a cycle (spec <-> loader <-> validate <-> references
    <-> graph) now stand in one order, each importing only modules below it."""
    graph = model_import_graph()
    order = [
        "step_specs",
        "flow_spec",
        "graph",
        "scopes",
        "references",
        "checks",
        "reading",
        "spec",
        "validate",
        "loader",
    ]
    names = [f"{PACKAGE}.{n}" for n in order]
    for i, mod in enumerate(names):
        above = set(names[i + 1 :])
        assert not (set(graph[mod]) & above), f"{mod} imports {sorted(set(graph[mod]) & above)}, above it"


def test_model_modules_do_not_import_each_other_through_importlib() -> None:
    """``importlib.import_module("llmflow.model.x")`` / ``__import__`` would hide an edge
    from the check above. (A ``"module:function"`` string handed to a step is no import.)"""
    for path in sorted(MODEL_DIR.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            fn = node.func
            name = fn.attr if isinstance(fn, ast.Attribute) else fn.id if isinstance(fn, ast.Name) else ""
            arg = node.args[0]
            if name in ("import_module", "__import__") and isinstance(arg, ast.Constant):
                assert not str(arg.value).startswith(PACKAGE), (
                    f"{path.name}:{node.lineno} imports {arg.value!r} by name; write an import statement"
                )


def test_the_cycle_finder_finds_a_cycle_and_a_function_level_import() -> None:
    """The check can fail: a cycle closed by an import inside a function is found."""
    graph = {"a": {"b": 1}, "b": {"c": 3}, "c": {"a": 9}, "d": {"a": 1}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b": 1}, "b": {}, "c": {"a": 2}}) is None


def test_imports_inside_functions_and_type_checking_blocks_count(tmp_path: Path) -> None:
    src = tmp_path / "x.py"
    src.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from llmflow.model.graph import Graph\n"
        "def f():\n"
        "    from llmflow.model import loader\n"
        "    from . import spec\n"
    )
    known = {f"{PACKAGE}.{n}" for n in ("graph", "loader", "spec", "limits")}
    assert _imports_of(src, known) == {f"{PACKAGE}.graph": 3, f"{PACKAGE}.loader": 5, f"{PACKAGE}.spec": 6}
