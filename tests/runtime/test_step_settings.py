"""The flow directory steps see (``ctx.settings['flow_dir']``): a run's source file resolved
once per path, a relative one against the directory the process is in."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from llmflow.runtime.execution import step_settings
from llmflow.store.base import RunRecord


def _rt() -> SimpleNamespace:
    return SimpleNamespace(_flow_dirs={}, tool_services=None, trust=None)


def _rec(source: str) -> RunRecord:
    return RunRecord(id="r1", flow_name="f", spec={"source_path": source})


def test_a_relative_source_follows_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for d in ("a/flows", "b/flows"):
        (tmp_path / d).mkdir(parents=True)
    rt = _rt()
    monkeypatch.chdir(tmp_path / "a")
    assert step_settings(rt, _rec("flows/x.yaml"))["flow_dir"] == str((tmp_path / "a/flows").resolve())
    monkeypatch.chdir(tmp_path / "b")  # the same relative path names another file now
    assert step_settings(rt, _rec("flows/x.yaml"))["flow_dir"] == str((tmp_path / "b/flows").resolve())


def test_a_source_is_resolved_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    rt = _rt()
    src = str(tmp_path / "link" / "x.yaml")
    expected = str(real.resolve())
    assert step_settings(rt, _rec(src))["flow_dir"] == expected
    calls: list[Path] = []
    monkeypatch.setattr(Path, "resolve", lambda self, *a, **k: calls.append(self) or self)
    assert step_settings(rt, _rec(src))["flow_dir"] == expected
    assert calls == []  # the second run of the same file reads the cache, not the file system


def test_a_source_without_a_file_has_no_flow_dir() -> None:
    assert step_settings(_rt(), _rec("<posted>"))["flow_dir"] is None
    assert step_settings(_rt(), RunRecord(id="r1", flow_name="f"))["flow_dir"] is None
