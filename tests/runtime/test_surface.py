"""The runtime package's shape: lazy exports that type checkers see, and small modules."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import llmflow
import llmflow.runtime

SRC = Path(llmflow.__file__).parent


def _exports_and_type_checking_names(init: Path) -> tuple[dict[str, str], dict[str, str]]:
    tree = ast.parse(init.read_text(encoding="utf-8"))
    exports: dict[str, str] = {}
    seen: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "_EXPORTS" for t in node.targets
        ):
            exports = ast.literal_eval(node.value)
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            for imp in node.body:
                assert isinstance(imp, ast.ImportFrom)
                for a in imp.names:
                    seen[a.asname or a.name] = str(imp.module)
    return exports, seen


@pytest.mark.parametrize("package", ["llmflow", "llmflow.runtime"])
def test_every_lazy_export_is_also_imported_for_type_checkers(package: str) -> None:
    init = SRC.joinpath(*package.split(".")[1:], "__init__.py")
    exports, seen = _exports_and_type_checking_names(init)
    assert exports and set(seen) == set(exports)
    # the module a type checker sees is the one the name resolves from (or re-exports it)
    mod = __import__(package, fromlist=["_"])
    for name in exports:
        assert getattr(mod, name) is getattr(__import__(seen[name], fromlist=[name]), name)


@pytest.mark.parametrize("package", ["runtime", "sdk"])
def test_no_module_of_the_runtime_and_the_facades_is_over_400_lines_without_a_reason(package: str) -> None:
    long = {}
    for p in (SRC / package).glob("*.py"):
        text = p.read_text(encoding="utf-8")
        reason = "Over 400 lines:" in (ast.get_docstring(ast.parse(text)) or "")
        if len(text.splitlines()) > 400 and not reason:
            long[p.name] = len(text.splitlines())
    assert long == {}, f"split these (or say why in their docstring, 'Over 400 lines: ...'): {long}"


def test_the_old_import_paths_still_resolve() -> None:
    from llmflow.app import build_runtime
    from llmflow.orchestra import Orchestra, aggregate_answers

    assert build_runtime is llmflow.runtime.build_runtime
    assert Orchestra is llmflow.Orchestra
    assert aggregate_answers("first", {"a": "x", "b": "y"})["output"] == "x"
