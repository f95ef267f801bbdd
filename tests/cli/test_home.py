"""The llmflow home is found like git finds a repository: the nearest directory at or above
the current one holding `.llmflow/` (LLMFLOW_HOME wins); `runs` and `stats` say which store
they read; a run says where its files went."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmflow.settings import Settings, find_home

from .terminal import env_for, in_terminal, piped

SAVE = 'name: save\nsteps:\n  - id: a\n    llm: hi\n  - id: save\n    write_file: {path: "reports/{{ run.id }}.md", content: "{{ steps.a.output }}"}\n'


def no_home_env(cwd: Path) -> dict[str, str]:
    env = env_for(cwd)
    del env["LLMFLOW_HOME"]
    return env


@pytest.fixture
def project(tmp_path: Path) -> Path:
    if any((d / ".llmflow").is_dir() for d in tmp_path.parents):
        pytest.skip("a parent of the temporary directory holds a .llmflow/ of its own")
    p = tmp_path / "project"
    (p / "src" / "deep").mkdir(parents=True)
    (p / "save.yaml").write_text(SAVE)
    return p


def test_find_home_walks_up_to_the_nearest_llmflow_directory(project):
    deep = project / "src" / "deep"
    assert find_home(deep) == deep  # nothing yet: the current directory
    (project / ".llmflow").mkdir()
    assert find_home(deep) == project
    (project / "src" / ".llmflow").mkdir()
    assert find_home(deep) == project / "src"  # the nearest wins


def test_llmflow_home_wins_over_the_walk(project, monkeypatch):
    (project / ".llmflow").mkdir()
    monkeypatch.chdir(project / "src" / "deep")
    s = Settings.from_env({})
    assert (s.home, s.home_source) == (project, "found .llmflow/ above the current directory")
    elsewhere = project / "other"
    s = Settings.from_env({"LLMFLOW_HOME": str(elsewhere)})
    assert (s.home, s.home_source) == (elsewhere, "LLMFLOW_HOME")


def test_runs_started_in_a_subdirectory_are_seen_from_the_project_root(project):
    first = piped(project, "run", "save.yaml", env=no_home_env(project))
    assert first.returncode == 0, first.stderr
    assert (project / ".llmflow" / "llmflow.db").is_file()
    deep = project / "src" / "deep"
    p = piped(deep, "run", "../../save.yaml", env=no_home_env(deep))
    assert p.returncode == 0, p.stderr
    assert f"(llmflow home {project}: found .llmflow/ above the current directory)" in p.stderr
    assert not (deep / ".llmflow").exists()
    listing = piped(project, "runs", "list", env=no_home_env(project))
    assert listing.stdout.splitlines()[0] == f"runs in {project / '.llmflow' / 'llmflow.db'}"
    assert len(json.loads(piped(project, "runs", "list", "--json", env=no_home_env(project)).stdout)) == 2
    stats = piped(deep, "stats", env=no_home_env(deep))
    assert stats.stdout.splitlines()[:2] == [
        f"store: {project / '.llmflow' / 'llmflow.db'}",
        "runs: 2 total, 2 completed, 0 failed, 0 canceled",
    ]


def test_a_run_says_where_its_files_went(project):
    p = piped(project, "run", "save.yaml", env=no_home_env(project))
    run_id = p.stderr.split()[1].rstrip(":")
    ws = project / ".llmflow" / "runs" / run_id / "workspace"
    assert (
        f"files: reports/{run_id}.md\n  in {ws}/\n  (the run's own workspace; pass -w DIR to write them somewhere else)"
        in p.stdout
    )
    assert (ws / "reports" / f"{run_id}.md").is_file()


def test_workspace_dot_means_here_even_below_the_home(project):
    (project / ".llmflow").mkdir()
    deep = project / "src" / "deep"
    p = piped(deep, "run", "../../save.yaml", "-w", ".", "--json", env=no_home_env(deep))
    run = json.loads(p.stdout)
    assert (deep / "reports" / f"{run['id']}.md").is_file() and run["workspace"] == str(deep)


def test_in_a_terminal_the_same_home_and_the_files_line(project):
    (project / ".llmflow").mkdir()
    deep = project / "src" / "deep"
    r = in_terminal(deep, "run", "../../save.yaml", env=no_home_env(deep))
    assert r.code == 0, r.text
    assert f"llmflow home {project}" in r.text and "files: reports/" in r.text
    r = in_terminal(deep, "runs", "list", env=no_home_env(deep))
    assert f"runs in {project / '.llmflow' / 'llmflow.db'}" in r.text


def test_looking_creates_no_home(project):
    """Listing runs where there is no store says which store it means, and creates none (a
    stray .llmflow/ would capture later runs in subdirectories)."""
    for args in (["runs", "list"], ["stats"], ["batches", "list"], ["runs", "show", "last"]):
        p = piped(project, *args, env=no_home_env(project))
        assert not (project / ".llmflow").exists(), args
    p = piped(project, "runs", "list", env=no_home_env(project))
    assert (
        p.returncode == 0
        and p.stdout.strip()
        == f"no runs yet in {project / '.llmflow' / 'llmflow.db'}; start one with `llmflow run FLOW`"
    )
    assert piped(project, "stats", "--json", env=no_home_env(project)).returncode == 0
