"""The one result type of the Python facades: ``llmflow.run`` / ``run_sync`` / ``start``,
``Runner`` and ``Orchestra`` all return a :class:`Run`.

A ``Run`` is read as attributes (``run.status``, ``run.output``, ``run.step("a")``) and,
for code written against SuperOptiX's dict results, by key: ``run["success"]``,
``run["output"]``, ``run["run_id"]``, and what a facade adds (an orchestra's ``agents``,
``results``, ``selected_agent``...). ``run.to_dict()`` is the plain dict, JSON-ready."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from llmflow.engine.states import RunStatus

#: the keys a Run answers by ``run[key]``, before any a facade adds (``Run.extra``)
KEYS = ("status", "success", "output", "outputs", "error", "duration", "run_id", "usage")


@dataclass
class StepResult:
    id: str
    kind: str
    status: str
    output: Any = None
    error: str | None = None
    started_at: float | None = None
    ended_at: float | None = None
    duration: float | None = None
    model: str | None = None
    usage: dict[str, int] = field(default_factory=dict)
    attempts: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Run:
    """The result of a run: status, outputs, and every step with its attempts."""

    id: str
    flow: str
    status: str
    outputs: dict[str, Any] | None
    error: str | None
    steps: list[StepResult]
    usage: dict[str, Any]
    duration: float | None
    workspace: str | None = None
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    #: what a facade adds to the result, read by key (an orchestra's per-agent results)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == RunStatus.COMPLETED

    @property
    def success(self) -> bool:
        """``ok``, unless the facade judged otherwise (a parallel call with a failed task)."""
        return bool(self.extra.get("success", self.ok))

    @property
    def run_id(self) -> str:
        return self.id

    @property
    def output(self) -> Any:
        """The single output, when the run has one (``outputs['result']``)."""
        if "output" in self.extra:
            return self.extra["output"]
        return single_output(self.outputs)

    def step(self, step_id: str) -> StepResult:
        for s in self.steps:
            if s.id == step_id:
                return s
        raise KeyError(step_id)

    # -- read by key (SuperOptiX's dict results) -------------------------------------------
    def __getitem__(self, key: str) -> Any:
        if key in self.extra:
            return self.extra[key]
        if key == "outputs":
            return self.outputs or {}
        if key in KEYS:
            return getattr(self, key)
        raise KeyError(key)

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def __contains__(self, key: object) -> bool:
        return key in KEYS or key in self.extra

    def keys(self) -> list[str]:
        return [*KEYS, *(k for k in self.extra if k not in KEYS)]

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def to_dict(self) -> dict[str, Any]:
        """The result as a plain dict (the keys above), for JSON."""
        return {k: self[k] for k in self.keys()}

    # -- building ----------------------------------------------------------------------------
    @classmethod
    def from_view(cls, v: dict[str, Any]) -> Run:
        """From a run's view (``Runtime.view``)."""
        steps = [
            StepResult(
                id=s["id"],
                kind=s["kind"],
                status=s["status"],
                output=s["output"],
                error=s["error"],
                started_at=s["started_at"],
                ended_at=s["ended_at"],
                duration=s["duration"],
                model=s["model"],
                usage={"input_tokens": s["tokens_in"], "output_tokens": s["tokens_out"]},
                attempts=s["attempts"],
            )
            for s in v["steps"]
        ]
        return cls(
            v["id"],
            v["flow"],
            v["status"],
            v["outputs"],
            v["error"],
            steps,
            v["usage"],
            v["duration"],
            v.get("workspace"),
            v.get("artifacts", []),
        )

    @classmethod
    def from_row(cls, flow: str, row: dict[str, Any]) -> Run:
        """From a batch's result row (no steps: ``Runtime.view(run.id)`` has them)."""
        return cls(
            row["run_id"],
            flow,
            row["status"],
            row["outputs"] or {},
            row["error"],
            [],
            row["usage"] or {},
            row["duration"],
        )

    @classmethod
    def not_run(cls, flow: str, why: str) -> Run:
        """A place in a batch's results for a record that never ran (the batch stopped)."""
        return cls("", flow, "NOT_RUN", {}, why, [], {}, None)


def single_output(outputs: dict[str, Any] | None) -> Any:
    """A run's one output: ``outputs['result']``, else the only value, else all of them. The
    single-output rule of every facade (``Run.output``, ``Runner``, ``Orchestra``)."""
    if not outputs:
        return None
    return outputs.get("result", only_value(outputs))


def only_value(value: Any) -> Any:
    """A mapping with one key -> that value; anything else as it is (so a flow agent's
    outputs chain like another agent's output; ``sdk.runner.unwrap`` is its template form)."""
    return next(iter(value.values())) if isinstance(value, dict) and len(value) == 1 else value
