"""Closed status enums with their terminal sets and one transition table each."""

from __future__ import annotations

from enum import StrEnum

from llmflow.errors import RunStateError


class RunStatus(StrEnum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELED = "CANCELED"


class StepStatus(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"
    CANCELED = "CANCELED"
    STALE = "STALE"  # an upstream step was re-run; this output is out of date


RUN_TERMINAL = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELED})
STEP_TERMINAL = frozenset({StepStatus.COMPLETED, StepStatus.FAILED, StepStatus.SKIPPED, StepStatus.CANCELED})

RUN_TRANSITIONS: dict[RunStatus, frozenset[RunStatus]] = {
    RunStatus.QUEUED: frozenset({RunStatus.RUNNING, RunStatus.PAUSED, RunStatus.CANCELED, RunStatus.FAILED}),
    RunStatus.RUNNING: frozenset({RunStatus.PAUSED, RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELED, RunStatus.QUEUED}),
    RunStatus.PAUSED: frozenset({RunStatus.RUNNING, RunStatus.QUEUED, RunStatus.CANCELED, RunStatus.FAILED}),
    # a finished run can be re-opened by re-running a step in place
    RunStatus.COMPLETED: frozenset({RunStatus.RUNNING}),
    RunStatus.FAILED: frozenset({RunStatus.RUNNING}),
    RunStatus.CANCELED: frozenset({RunStatus.RUNNING}),
}

STEP_TRANSITIONS: dict[StepStatus, frozenset[StepStatus]] = {
    StepStatus.PENDING: frozenset({StepStatus.RUNNING, StepStatus.SKIPPED, StepStatus.CANCELED, StepStatus.FAILED}),
    StepStatus.RUNNING: frozenset({StepStatus.COMPLETED, StepStatus.FAILED, StepStatus.CANCELED, StepStatus.PENDING}),
    StepStatus.COMPLETED: frozenset({StepStatus.STALE, StepStatus.RUNNING}),
    StepStatus.FAILED: frozenset({StepStatus.STALE, StepStatus.RUNNING}),
    StepStatus.SKIPPED: frozenset({StepStatus.STALE, StepStatus.RUNNING}),
    StepStatus.CANCELED: frozenset({StepStatus.STALE, StepStatus.RUNNING, StepStatus.PENDING}),
    StepStatus.STALE: frozenset({StepStatus.RUNNING, StepStatus.PENDING, StepStatus.SKIPPED}),
}


def check_run_transition(old: RunStatus, new: RunStatus) -> None:
    if old != new and new not in RUN_TRANSITIONS[old]:
        raise RunStateError(f"a run cannot go from {old} to {new}")


def check_step_transition(old: StepStatus, new: StepStatus) -> None:
    if old != new and new not in STEP_TRANSITIONS[old]:
        raise RunStateError(f"a step cannot go from {old} to {new}")
