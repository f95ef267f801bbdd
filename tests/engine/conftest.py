from __future__ import annotations

from pathlib import Path

import pytest

from llmflow.runtime import Runtime, build_runtime


@pytest.fixture
def runtime(tmp_path: Path) -> Runtime:
    env = {"LLMFLOW_MODEL": "fake:", "LLMFLOW_BLOCK_REAL_MODELS": "1"}
    rt = build_runtime(env=env, home=tmp_path)
    yield rt
    rt.close()
