from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from llmflow.runtime import Runtime, build_runtime


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    rt = build_runtime(env={"LLMFLOW_MODEL": "fake:", "LLMFLOW_BLOCK_REAL_MODELS": "1"}, home=tmp_path)
    yield rt
    rt.close()
