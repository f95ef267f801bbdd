"""Closed status enums, one per level (run, step, unit, attempt), with their terminal sets
and one transition table each. These are the only definitions: the fold enforces the
tables (an illegal transition raises :class:`IllegalTransition`), and every other module
compares against these members and sets, never against string literals of its own.

The enums are ``StrEnum`` so that what the store writes and the wire carries stays the
plain upper-case word ("RUNNING").
"""

from __future__ import annotations

from enum import StrEnum

from llmflow.errors import RunStateError


class IllegalTransition(RunStateError):
    """A status change the transition table does not allow: a bug, or a corrupted log."""


class RunStatus(StrEnum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    WAITING = "WAITING"  # parked: waits for a human answer, no process holds it
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


class UnitStatus(StrEnum):
    """One unit of a step: a for_each item x matrix variant x broadcast agent."""

    PENDING = "PENDING"  # waiting for a slot (or for its retry timer)
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"  # failed for good (a retry, when due, puts it back to PENDING)
    CANCELED = "CANCELED"
    SKIPPED = "SKIPPED"  # never started: its run ran out of budget (on_budget: skip)


class AttemptStatus(StrEnum):
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    INTERRUPTED = "INTERRUPTED"  # its process stopped (crash, takeover, parked); runs again
    CANCELED = "CANCELED"


RUN_TERMINAL = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELED})
RUN_ACTIVE = frozenset({RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.PAUSED, RunStatus.WAITING})
STEP_TERMINAL = frozenset({StepStatus.COMPLETED, StepStatus.FAILED, StepStatus.SKIPPED, StepStatus.CANCELED})
# a step in one of these lets the steps that need it go on (FAILED only with on_error: continue)
STEP_DONE = frozenset({StepStatus.COMPLETED, StepStatus.SKIPPED, StepStatus.CANCELED})
UNIT_TERMINAL = frozenset({UnitStatus.COMPLETED, UnitStatus.FAILED, UnitStatus.CANCELED, UnitStatus.SKIPPED})
ATTEMPT_TERMINAL = frozenset(
    {AttemptStatus.COMPLETED, AttemptStatus.FAILED, AttemptStatus.INTERRUPTED, AttemptStatus.CANCELED}
)

_R = RunStatus
RUN_TRANSITIONS: dict[RunStatus, frozenset[RunStatus]] = {
    _R.QUEUED: frozenset({_R.RUNNING, _R.PAUSED, _R.CANCELED, _R.FAILED}),
    _R.RUNNING: frozenset({_R.PAUSED, _R.WAITING, _R.COMPLETED, _R.FAILED, _R.CANCELED, _R.QUEUED}),
    _R.PAUSED: frozenset({_R.RUNNING, _R.QUEUED, _R.CANCELED, _R.FAILED}),
    _R.WAITING: frozenset({_R.QUEUED, _R.RUNNING, _R.PAUSED, _R.CANCELED, _R.FAILED}),
    # a finished run can be re-opened by re-running a step in place
    _R.COMPLETED: frozenset({_R.RUNNING}),
    _R.FAILED: frozenset({_R.RUNNING}),
    _R.CANCELED: frozenset({_R.RUNNING}),
}

_S = StepStatus
STEP_TRANSITIONS: dict[StepStatus, frozenset[StepStatus]] = {
    _S.PENDING: frozenset({_S.RUNNING, _S.SKIPPED, _S.CANCELED, _S.FAILED}),
    _S.RUNNING: frozenset({_S.COMPLETED, _S.FAILED, _S.CANCELED, _S.SKIPPED, _S.PENDING}),
    _S.COMPLETED: frozenset({_S.STALE, _S.RUNNING, _S.PENDING}),
    _S.FAILED: frozenset({_S.STALE, _S.RUNNING, _S.PENDING}),
    _S.SKIPPED: frozenset({_S.STALE, _S.RUNNING, _S.PENDING}),
    _S.CANCELED: frozenset({_S.STALE, _S.RUNNING, _S.PENDING}),
    _S.STALE: frozenset({_S.RUNNING, _S.PENDING, _S.SKIPPED, _S.CANCELED, _S.FAILED}),
}

_U = UnitStatus
UNIT_TRANSITIONS: dict[UnitStatus, frozenset[UnitStatus]] = {
    _U.PENDING: frozenset({_U.RUNNING, _U.CANCELED, _U.SKIPPED, _U.FAILED}),
    _U.RUNNING: frozenset({_U.COMPLETED, _U.FAILED, _U.CANCELED, _U.PENDING}),
    _U.COMPLETED: frozenset({_U.PENDING}),  # re-run of the unit in place
    _U.FAILED: frozenset({_U.PENDING}),  # retry, or re-run in place
    _U.CANCELED: frozenset({_U.PENDING}),
    _U.SKIPPED: frozenset({_U.PENDING}),
}

_A = AttemptStatus
ATTEMPT_TRANSITIONS: dict[AttemptStatus, frozenset[AttemptStatus]] = {
    _A.RUNNING: ATTEMPT_TERMINAL,
    _A.COMPLETED: frozenset(),
    _A.FAILED: frozenset(),
    _A.INTERRUPTED: frozenset(),
    _A.CANCELED: frozenset(),
}


def check_run_transition(old: RunStatus, new: RunStatus) -> None:
    if old != new and new not in RUN_TRANSITIONS[old]:
        raise IllegalTransition(f"a run cannot go from {old} to {new}")


def check_step_transition(old: StepStatus, new: StepStatus, step_id: str = "") -> None:
    if old != new and new not in STEP_TRANSITIONS[old]:
        raise IllegalTransition(f"step {step_id!r} cannot go from {old} to {new}")


def check_unit_transition(old: UnitStatus, new: UnitStatus, where: str = "") -> None:
    if old != new and new not in UNIT_TRANSITIONS[old]:
        raise IllegalTransition(f"unit {where} cannot go from {old} to {new}")


def check_attempt_transition(old: AttemptStatus, new: AttemptStatus, where: str = "") -> None:
    if new not in ATTEMPT_TRANSITIONS[old]:
        raise IllegalTransition(f"attempt {where} cannot go from {old} to {new}")
