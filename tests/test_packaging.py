"""llmflow builds as a wheel and an sdist, and the wheel installed into a fresh environment
is a working `llmflow` (CLI, flows on the fake model, the web console's files)."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("build")
    pytest.importorskip("hatchling")
    out = tmp_path_factory.mktemp("dist")
    # --no-isolation: the build backend is the one installed (no download)
    p = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    return out


def test_the_wheel_and_sdist_hold_what_a_user_needs(dist: Path):
    (wheel,) = dist.glob("llmflow-*.whl")
    (sdist,) = dist.glob("llmflow-*.tar.gz")
    names = zipfile.ZipFile(wheel).namelist()
    assert "llmflow/web/assets/index.html" in names and "llmflow/web/assets/js/app.js" in names
    assert "llmflow/cli/main.py" in names and not [n for n in names if n.startswith(("tests/", ".venv"))]
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "llmflow = llmflow.cli.main:main" in zipfile.ZipFile(wheel).read(entry).decode()
    members = tarfile.open(sdist).getnames()
    top = members[0].split("/")[0]
    for needed in (
        "pyproject.toml",
        "README.md",
        "src/llmflow/__init__.py",
        "src/llmflow/web/assets/index.html",
    ):
        assert f"{top}/{needed}" in members, needed
    assert not [m for m in members if "/.venv/" in m or "/.llmflow/" in m]


def test_the_installed_wheel_runs_a_flow(dist: Path, tmp_path: Path):
    (wheel,) = dist.glob("llmflow-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    # the dependencies come from this environment (no download); llmflow only from the wheel
    (site / "zz_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    p = subprocess.run(
        [str(py), "-m", "pip", "install", "--no-deps", "--no-index", str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMFLOW_")}
    env.update(LLMFLOW_HOME=str(tmp_path), LLMFLOW_BLOCK_REAL_MODELS="1")
    where = subprocess.run(
        [
            str(py),
            "-c",
            "import llmflow, llmflow.web.mount as m; print(llmflow.__file__); print(m.ASSETS.joinpath('index.html').is_file())",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    installed, assets = where.stdout.split()
    assert installed.startswith(str(site)) and assets == "True"  # the wheel's copy, not the checkout's
    llmflow = venv / "bin" / "llmflow"
    assert subprocess.run(
        [str(llmflow), "--version"], capture_output=True, text=True, env=env, timeout=60
    ).stdout.startswith("llmflow ")
    (tmp_path / "f.yaml").write_text("name: f\nsteps:\n  - id: a\n    llm: hi\n")
    p = subprocess.run(
        [str(llmflow), "run", "f.yaml", "--model", "fake:", "--json"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert p.returncode == 0 and '"status": "COMPLETED"' in p.stdout, p.stderr
