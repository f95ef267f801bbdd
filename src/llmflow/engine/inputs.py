"""What ``decide`` reacts to (inputs) and what it asks the runner to do (commands).

Every input is a frozen value; the runner, the runtime's control paths and the tests build
them and hand them to :func:`llmflow.engine.scheduler.decide`. Nothing else decides.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from llmflow.engine.events import NewEvent

# -- inputs --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Start:
    """A process starts executing the run (fresh, or continuing: then it acts as Resume)."""

    owner: str = ""


@dataclass(frozen=True, slots=True)
class Resume:
    """A new owner takes the run over: in-flight attempts are rewound (interrupted) and the
    durable timers re-armed from the log."""

    owner: str = ""


@dataclass(frozen=True, slots=True)
class Emitted:
    """An event a step executor emitted (token chunks, usage, artifacts, ...)."""

    event: NewEvent


@dataclass(frozen=True, slots=True)
class StepSucceeded:
    node_id: str
    unit: str
    attempt: int
    output: Any = None


@dataclass(frozen=True, slots=True)
class StepFailed:
    node_id: str
    unit: str
    attempt: int
    error: str
    kind: str = "error"
    retryable: bool = False
    retry_after: float | None = None
    hint: str | None = None


@dataclass(frozen=True, slots=True)
class StepCanceled:
    node_id: str
    unit: str
    attempt: int
    reason: str = "canceled"


@dataclass(frozen=True, slots=True)
class TimerFired:
    timer: str  # "run" | "retry:<node>[<unit>]" | "attempt:<node>[<unit>]#<n>" | "human:<rid>" | "park"


@dataclass(frozen=True, slots=True)
class CancelRequested:
    reason: str | None = None
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PauseRequested:
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ResumeRequested:
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RerunRequested:
    step_id: str
    unit: str | None = None
    downstream: bool = False


@dataclass(frozen=True, slots=True)
class HumanAsked:
    """A step executor asks a person (``ctx.ask_human``)."""

    node_id: str
    unit: str
    attempt: int
    request_id: str
    prompt: str
    input: str = "text"
    options: list[str] | None = None
    default: Any = None
    timeout: float | None = None
    park_after: float | None = None  # the executing process parks an unanswered run after this


@dataclass(frozen=True, slots=True)
class HumanAnswered:
    request_id: str | None
    answer: Any
    source: str | None = None


@dataclass(frozen=True, slots=True)
class HumanDeclined:
    """Nobody can answer ``request_id`` (the console's standard input is at end of file):
    its step fails with ``reason``; nothing is recorded as an answer."""

    request_id: str
    reason: str
    hint: str | None = None


@dataclass(frozen=True, slots=True)
class FailRequested:
    """A run nobody executes cannot go on (the process that claimed it could not execute it:
    a flow that no longer loads, an internal error): it winds down as failed, with ``error``
    as the reason - attempts left running end canceled, unfinished steps canceled, then
    WORKFLOW_FAILED and RUN_FAILED, as any other failure."""

    error: str


Input = (
    Start
    | Resume
    | Emitted
    | StepSucceeded
    | StepFailed
    | StepCanceled
    | TimerFired
    | CancelRequested
    | PauseRequested
    | ResumeRequested
    | RerunRequested
    | HumanAsked
    | HumanAnswered
    | HumanDeclined
    | FailRequested
)

# -- commands ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Execute:
    node_id: str
    unit: str
    attempt: int
    vars: dict[str, Any] = field(default_factory=dict)


STEP_TIMED_OUT = "step timed out after "  # how the reason of a step timeout's Cancel starts


def step_timeout(exc: BaseException) -> str | None:
    """The reason a cancellation carries when the step's own timeout cut the attempt
    ("step timed out after 2s": the runner cancels a unit's task with its Cancel's reason),
    else None (a run cancel, a run timeout, parking, another agent answering first)."""
    msg = exc.args[0] if exc.args else None
    return msg if isinstance(msg, str) and msg.startswith(STEP_TIMED_OUT) else None


@dataclass(frozen=True, slots=True)
class Cancel:
    node_id: str
    unit: str
    reason: str
    fail_kind: str | None = None  # report the attempt FAILED with this kind (step timeout)
    silent: bool = False  # its end is already recorded (parked): report nothing


@dataclass(frozen=True, slots=True)
class StartTimer:
    timer: str
    at: float  # absolute time (the clock's); a timer of the same name is replaced


@dataclass(frozen=True, slots=True)
class AskHuman:
    request_id: str
    node_id: str
    unit: str
    prompt: str
    input: str = "text"
    options: list[str] | None = None
    default: Any = None


@dataclass(frozen=True, slots=True)
class AnswerHuman:
    """Hand the answer (or the error) to the executor waiting on ``request_id``."""

    request_id: str
    answer: Any = None
    error: str | None = None
    hint: str | None = None


@dataclass(frozen=True, slots=True)
class Stop:
    """Stop executing: the run is parked (or otherwise left to another process)."""

    reason: str


Command = Execute | Cancel | StartTimer | AskHuman | AnswerHuman | Stop


@dataclass(slots=True)
class Decision:
    """What ``decide`` returns: events (already folded into the state, to be made durable
    first) and the commands they lead to, in order."""

    events: list[NewEvent] = field(default_factory=list)
    commands: list[Command] = field(default_factory=list)

    def __iter__(self) -> Any:  # events, commands = decide(...)
        return iter((self.events, self.commands))
