"""Batch tests: a runtime on a temporary project with the fake model, and data writers."""

from __future__ import annotations

import asyncio
import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llmflow.runtime import build_runtime

FLOW = """
name: summarise
inputs:
  text: {type: string}
steps:
  - id: answer
    llm: {prompt: "Summarise: {{ inputs.text }}"}
"""


def write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def records(n: int) -> list[dict[str, Any]]:
    return [{"id": f"r{i}", "text": f"text number {i}"} for i in range(n)]


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "flow.yaml").write_text(FLOW)
    return tmp_path


@pytest.fixture
def make_rt(project: Path) -> Iterator[Any]:
    made: list[Any] = []

    def make(**env: str) -> Any:
        base = {"LLMFLOW_MODEL": "fake:", "LLMFLOW_BLOCK_REAL_MODELS": "1", "LLMFLOW_HOME": str(project)}
        rt = build_runtime(env={**base, **env}, home=project)
        made.append(rt)
        return rt

    yield make
    for rt in made:
        rt.close()


@pytest.fixture
def rt(make_rt: Any) -> Any:
    return make_rt()


def run_batch(rt: Any, **req: Any) -> Any:
    from llmflow.batch.plan import BatchRequest, plan_batch
    from llmflow.batch.runner import BatchDriver

    if not req.get("resume"):
        req.setdefault("flow", "flow.yaml")
    plan = plan_batch(rt, BatchRequest(**req))
    return asyncio.run(BatchDriver(rt, plan).run())


def read_rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
