"""Shared test setup: every test gets its own llmflow home, and real model calls are blocked
unless the test opts in with ``@pytest.mark.real_model``."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _isolated_llmflow(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    home = tmp_path_factory.mktemp("llmflow-home")
    monkeypatch.setenv("LLMFLOW_HOME", str(home))
    for var in (
        "LLMFLOW_DATABASE_URL",
        "LLMFLOW_MODEL",
        "LLMFLOW_CONFIG_DIR",
        "OLLAMA_PLANNER_MODEL",
        "OLLAMA_CODER_MODEL",
        "LLMFLOW_API_TOKEN",
    ):
        monkeypatch.delenv(var, raising=False)
    if request.node.get_closest_marker("real_model") is None:
        monkeypatch.setenv("LLMFLOW_BLOCK_REAL_MODELS", "1")
    else:
        monkeypatch.delenv("LLMFLOW_BLOCK_REAL_MODELS", raising=False)


# -- the checkout stays as it was ---------------------------------------------------------------
# A test that runs an example from the repository's root must send what the run writes
# (results files, reports) to a temporary directory: the suite fails if the checkout gained
# an untracked file (compared with `git status` before the session; tracked files are not
# compared, so that editing a file while the tests run does not fail them).


def _checkout_changes(root: str) -> set[str] | None:
    import subprocess

    try:
        p = subprocess.run(
            ["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return set(p.stdout.splitlines()) if p.returncode == 0 else None


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[_BEFORE] = _checkout_changes(str(session.config.rootpath))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    before = session.config.stash.get(_BEFORE, None)
    if before is None:
        return  # not a git checkout (an unpacked sdist): nothing to compare
    after = _checkout_changes(str(session.config.rootpath)) or set()
    new = sorted(line for line in after - before if line.startswith("??"))
    if new:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        message = "the tests changed the checkout (write to tmp_path instead):\n  " + "\n  ".join(new)
        if reporter is not None:
            reporter.write_line(message, red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


_BEFORE = pytest.StashKey[set[str] | None]()


# -- the browser tests run last -------------------------------------------------------------------
# tests/web's session-wide Playwright (its sync API) leaves an asyncio event loop marked as
# running in the main thread until the session ends, so a later test's asyncio.run() would
# fail ("cannot be called from a running event loop"). They run last whatever the names.


def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    web = config.rootpath / "tests" / "web"
    items.sort(key=lambda item: item.path.is_relative_to(web))  # stable: the order is kept otherwise
