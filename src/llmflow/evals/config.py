"""Eval files: an evaluation declared in YAML, next to the flow it evaluates.

::

    # eval.yaml
    flow: flow.yaml                 # relative to this file (a name or a directory works too)
    data: data.jsonl                # relative to this file; default: the flow's data:
    expected: label                 # the column with the expected value (default: expected,
                                    # expected_output, label, answer, target or reference)
    metrics:                        # declarations (see llmflow.evals.metrics)
      - exact
      - {name: verdict, type: regex, pattern: "VIOLATING|OK"}
      - {name: fair, type: judge, rubric: "...", model: fake:judge}
    variants: {model: [fake:a, fake:b]}   # axes added to the flow's parameters
    min_pass_rate: 0.8
    columns: {text: body}           # flow input <- column
    record_id: id
    max_records: 100

``llmflow eval eval.yaml`` (or the directory holding ``eval.yaml``) runs it; options on the
command line win over the file's, and ``--metric NAME`` picks metrics declared here by name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from llmflow.errors import EvalError

EVAL_FILE = "eval.yaml"


class EvalFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    flow: str | None = None
    data: str | None = None
    expected: str | None = None
    metrics: list[Any] = Field(default_factory=list)
    variants: dict[str, list[Any]] = Field(default_factory=dict)
    min_pass_rate: float | None = Field(None, ge=0, le=1)
    columns: dict[str, str] = Field(default_factory=dict)
    record_id: str | None = None
    max_records: int | None = Field(None, ge=0)
    description: str | None = None

    def declared(self) -> dict[str, Any]:
        """The metrics that have a name, for ``--metric NAME``."""
        return {str(m["name"]): m for m in self.metrics if isinstance(m, dict) and m.get("name")}


def find_eval_file(target: str) -> Path | None:
    """``target`` itself when it is an eval file, ``target/eval.yaml`` for a directory."""
    p = Path(target)
    if p.is_dir() and (p / EVAL_FILE).is_file():
        return p / EVAL_FILE
    if p.is_file() and p.suffix in (".yaml", ".yml"):
        try:
            doc = yaml.safe_load(p.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError):
            return None
        if isinstance(doc, dict) and "metrics" in doc and "steps" not in doc and "kind" not in doc:
            return p
    return None


def load_eval_file(path: Path) -> EvalFile:
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise EvalError(f"cannot read the eval file {path}: {exc}") from None
    if not isinstance(doc, dict):
        raise EvalError(f"{path}: an eval file is a mapping (flow, data, metrics, ...)")
    try:
        ef = EvalFile.model_validate(doc)
    except ValidationError as exc:
        e = exc.errors()[0]
        where = ".".join(str(x) for x in e["loc"])
        hint = "keys: " + ", ".join(EvalFile.model_fields) if e["type"] == "extra_forbidden" else None
        raise EvalError(f"{path}: {where}: {e['msg']}", hint=hint) from None
    base = path.parent
    if ef.flow:
        cand = base / ef.flow
        ef.flow = str(cand) if cand.exists() else ef.flow
    else:
        ef.flow = str(base)
    if ef.data and not Path(ef.data).is_absolute():
        ef.data = str(base / ef.data)
    return ef
