"""Source maps: where each key path was written, merged the way OmegaConf merges."""

from __future__ import annotations

from llmflow.model.diagnostics import Location, did_you_mean, format_path
from llmflow.model.sourcemap import SourceMap, duplicate_keys, expanded_size, package_header, yaml_tree


def test_keys_point_at_the_key_and_list_items_at_the_item():
    sm = SourceMap()
    sm.set_tree((), yaml_tree("a:\n  b: 1\n  c: [x, y]\n"), "f.yaml", None)
    assert sm.locate(("a", "b")) == Location("f.yaml", 2, 3)
    assert sm.locate(("a", "c")) == Location("f.yaml", 3, 3)
    assert sm.locate(("a", "c", 1)) == Location("f.yaml", 3, 10)
    assert sm.locate(("a", "zz")) == Location("f.yaml", 1, 1)  # the nearest ancestor


def test_merging_replaces_scalars_and_lists_and_merges_mappings():
    sm = SourceMap()
    sm.set_tree((), yaml_tree("a: {b: 1, c: [1, 2], d: 4}\n"), "base.yaml", None)
    sm.merge_tree((), yaml_tree("a:\n  c: [9]\n  e: 5\n"), "over.yaml", "group option x=y")
    assert sm.locate(("a", "b")).file == "base.yaml"
    assert sm.locate(("a", "c", 0)) == Location("over.yaml", 2, 7, "group option x=y")
    assert ("a", "c", 1) not in sm.entries
    assert sm.locate(("a", "e")).file == "over.yaml"


def test_overrides_and_interpolations_are_recorded():
    sm = SourceMap()
    sm.set_tree((), yaml_tree("m: ${llms.x}\nn: 1\n"), "f.yaml", None)
    assert sm.raw == {("m",): "${llms.x}"}
    sm.set_origin(("n",), "command-line override 'n=2'")
    assert sm.locate(("n",)).format() == "command-line override 'n=2'"
    sm.remove(("m",))
    assert ("m",) not in sm.entries
    assert sm.sub(("n",)).entries == {(): Location(origin="command-line override 'n=2'")}


def test_shorthand_paths_are_found_with_one_key_inserted():
    sm = SourceMap()
    sm.set_tree((), yaml_tree("steps:\n  - id: a\n    llm: {prompt: hi}\n"), "f.yaml", None)
    assert sm.locate(("steps", 0, "prompt")) == Location("f.yaml", 3, 11)


def test_duplicate_keys_and_alias_bombs_are_found():
    assert duplicate_keys(yaml_tree("a: 1\nb: {x: 1, x: 2}\na: 3\n")) == [("x", 2, 11, 2), ("a", 3, 1, 1)]
    bomb = "a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n" + "".join(
        f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
        for p, c in zip("abcdefg", "bcdefgh", strict=True)
    )
    assert expanded_size(yaml_tree(bomb)) > 10**8
    assert expanded_size(yaml_tree("a: [1, 2]\n")) == 5  # mapping, key, list, 2 items
    assert expanded_size(yaml_tree("a: &x [*x]\n")) >= 10**9


def test_package_headers_and_helpers():
    assert package_header("# @package _global_\nrun: {}\n") == "_global_"
    assert package_header("run: {}\n") is None
    assert format_path(("steps", 0, "llm", "prompt")) == "steps[0].llm.prompt"
    assert did_you_mean("stpes", ["steps", "name"]) == "did you mean 'steps'?"
    assert did_you_mean("zzz", ["steps"]) is None
