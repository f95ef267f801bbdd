"""The plugin path, end to end: a real package (tests/plugins/echo_plugin) installed by pip
adds a step kind through the ``llmflow.plugins`` entry point, and a flow using that kind
validates and runs; the built-ins register through the same hook."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from llmflow.model.registry import PluginError, Registry

PLUGIN = Path(__file__).parent / "echo_plugin"


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The echo plugin installed by pip into a directory of its own (no index, no build
    isolation: hatchling comes from the dev extra)."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            "--no-build-isolation",
            "--target",
            str(target),
            str(PLUGIN),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert list(target.glob("llmflow_echo-*.dist-info/entry_points.txt"))
    return target


def _llmflow(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [sys.executable, "-m", "llmflow", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_plugin_step_kind_validates_and_runs(plugin_site: Path, tmp_path: Path) -> None:
    flow = tmp_path / "echo.yaml"
    flow.write_text(
        textwrap.dedent(
            """\
            name: echoes
            inputs: {word: string}
            steps:
              - id: twice
                echo: {text: "{{ inputs.word }}", times: 2}
              - id: plain
                kind: shell
                command: echo "{{ steps.twice.output }}"
            outputs: plain
            """
        )
    )
    checked = _llmflow(plugin_site, tmp_path, "validate", str(flow))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    ran = _llmflow(plugin_site, tmp_path, "run", str(flow), "-i", "word=hello")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "hello hello" in ran.stdout


def test_without_the_plugin_the_kind_is_reported_by_validate(tmp_path: Path) -> None:
    flow = tmp_path / "echo.yaml"
    flow.write_text("name: echoes\nsteps:\n  - id: twice\n    kind: echo\n    text: hi\n")
    checked = subprocess.run(
        [sys.executable, "-m", "llmflow", "validate", str(flow)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert checked.returncode != 0
    assert "echo" in checked.stdout + checked.stderr


def test_a_plugin_adds_tools_and_metrics_to_the_same_registry(plugin_site: Path, tmp_path: Path) -> None:
    probe = "from llmflow.runtime.plugins import build_registry; r = build_registry(); print(r.plugins, r.tool('echo_shout')('hi'), r.metric('echo_nonempty')('x'))"
    env = {**os.environ, "PYTHONPATH": str(plugin_site)}
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "['llmflow.steps.builtin:register', 'llmflow_echo.plugin:register'] HI 1.0" in out.stdout


def test_the_built_in_kinds_register_through_the_plugin_hook() -> None:
    reg = Registry()
    assert reg.kind("shell") is not None  # a miss loads the plugins
    assert reg.plugins[0] == "llmflow.steps.builtin:register"
    from llmflow.steps.shell import execute

    assert reg.executors["shell"] is execute
    assert "loop" in reg.kinds and "loop" not in reg.executors  # the scheduler runs loops


def test_llmflow_declares_its_built_ins_as_an_entry_point() -> None:
    from importlib.metadata import entry_points

    values = {ep.value for ep in entry_points(group="llmflow.plugins")}
    assert "llmflow.steps.builtin:register" in values


def test_a_broken_plugin_is_named_in_the_error() -> None:
    reg = Registry()
    with pytest.raises(PluginError, match="llmflow plugin no_such_module:register"):
        reg.register_plugin("no_such_module:register")


def test_a_step_kind_needs_a_kind_name() -> None:
    class Nameless:
        KIND = ""

    with pytest.raises(PluginError, match="Nameless.KIND must be set"):
        Registry().add_step_kind(Nameless)
