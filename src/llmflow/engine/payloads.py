"""Typed event payloads: one frozen, slotted class per event type.

The wire format is the payload as a JSON object (``Event.to_dict()["payload"]``); these
classes are its schema. ``to_dict()`` gives exactly the keys the wire carries: a field left
at ``MISSING`` is absent (not null), and keys a class does not know (written by a newer
version, or by a plugin) are kept in ``extra`` and written back, so nothing is lost in a
round trip. ``SCHEMA_VERSION`` is stored next to each payload (the events table's
``schema_version`` column); :func:`decode` reads older versions.

Payloads also answer mapping reads (``p.get("output")``, ``p["request_id"]``, ``"units" in
p``) so code written against plain dict payloads keeps working on typed ones.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar, TypeVar, cast, dataclass_transform

from llmflow.engine.events import EventType as E


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False

    def __reduce__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()
"""A field the payload does not carry (absent from the JSON, unlike None)."""


class Payload:
    """Base of every payload class (see the module docstring)."""

    __slots__ = ()
    TYPE: ClassVar[str] = ""
    SCHEMA_VERSION: ClassVar[int] = 1
    FIELDS: ClassVar[tuple[str, ...]] = ()
    extra: Mapping[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in self.FIELDS:
            v = getattr(self, f)
            if v is not MISSING:
                out[f] = v
        if self.extra:
            out.update(self.extra)
        return out

    @classmethod
    def from_dict(cls: type[_P], d: Mapping[str, Any]) -> _P:
        known = cls.FIELDS
        kw = {k: v for k, v in d.items() if k in known}
        if len(kw) != len(d):
            kw["extra"] = {k: v for k, v in d.items() if k not in known}
        return cls(**kw)

    # -- read-only mapping view (compatibility with dict payloads) ----------------------
    def get(self, key: str, default: Any = None) -> Any:
        if key in self.FIELDS:
            v = getattr(self, key)
            return default if v is MISSING else v
        return self.extra.get(key, default) if self.extra else default

    def __getitem__(self, key: str) -> Any:
        v = self.get(key, MISSING)
        if v is MISSING:
            raise KeyError(key)
        return v

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key, MISSING) is not MISSING

    def keys(self) -> Any:
        return self.to_dict().keys()

    def items(self) -> Any:
        return self.to_dict().items()

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_dict())

    def __len__(self) -> int:
        return len(self.to_dict())


_P = TypeVar("_P", bound=Payload)
REGISTRY: dict[str, type[Payload]] = {}


@dataclass_transform(frozen_default=True)
def payload(event_type: str) -> Callable[[type[_P]], type[_P]]:
    """Class decorator: a frozen slotted dataclass registered as ``event_type``'s payload
    (``dataclass_transform`` tells type checkers the constructor it generates)."""

    def wrap(cls: type[_P]) -> type[_P]:
        dc: Any = dataclass(frozen=True, slots=True)(cls)
        dc.TYPE = str(event_type)
        dc.FIELDS = tuple(f.name for f in fields(dc) if f.name != "extra")
        if "to_dict" not in cls.__dict__:  # a class that writes its own keeps it
            dc.to_dict = _compiled_to_dict(dc.FIELDS)
        REGISTRY[str(event_type)] = dc
        return cast(type[_P], dc)

    return wrap


def _compiled_to_dict(names: tuple[str, ...]) -> Callable[[Any], dict[str, Any]]:
    """``Payload.to_dict`` for one class, written out field by field (no ``getattr`` loop):
    the store calls it once per event. Same keys, same order, same values."""
    lines = ["def to_dict(self):", "    out = {}"]
    for name in names:
        assert name.isidentifier()
        lines += [f"    v = self.{name}", "    if v is not MISSING:", f"        out[{name!r}] = v"]
    lines += ["    extra = self.extra", "    if extra:", "        out.update(extra)", "    return out"]
    ns: dict[str, Any] = {"MISSING": MISSING}
    exec("\n".join(lines), ns)  # noqa: S102 - field names of our own classes, checked above
    fn: Callable[[Any], dict[str, Any]] = ns["to_dict"]
    fn.__doc__ = Payload.to_dict.__doc__
    return fn


class Generic(Payload):
    """The payload of a type without a class of its own (a plugin's event type)."""

    __slots__ = ("extra",)
    FIELDS = ()

    def __init__(self, extra: Mapping[str, Any] | None = None) -> None:
        object.__setattr__(self, "extra", dict(extra) if extra else None)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("payloads are immutable")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Generic) and (self.extra or {}) == (other.extra or {})

    def __hash__(self) -> int:
        return id(self)

    def __repr__(self) -> str:
        return f"Generic({self.extra!r})"

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Generic:
        return cls(d)


def decode(event_type: str, d: Mapping[str, Any] | Payload, schema_version: int = 1) -> Payload:
    """The typed payload of a stored event (``d`` as read from the log)."""
    if isinstance(d, Payload):
        return d
    cls = REGISTRY.get(event_type)
    if cls is None:
        return Generic(d)
    # schema_version 1 is the only one so far; an upgrade would translate ``d`` here
    return cls.from_dict(d)


def as_dict(p: Mapping[str, Any] | Payload) -> dict[str, Any]:
    """The wire form of a payload, typed or plain."""
    if type(p) is dict:
        return p
    if isinstance(p, Payload):
        return p.to_dict()
    return dict(p)


def schema_version_of(p: Mapping[str, Any] | Payload, event_type: str) -> int:
    if isinstance(p, Payload):
        return p.SCHEMA_VERSION
    cls = REGISTRY.get(event_type)
    return cls.SCHEMA_VERSION if cls is not None else 1


Extra = Mapping[str, Any] | None

# -- run ---------------------------------------------------------------------------------


@payload(E.RUN_CREATED)
class RunCreated(Payload):
    flow: str = MISSING
    version: str = MISSING
    inputs: dict[str, Any] = MISSING
    choices: dict[str, Any] = MISSING  # what the run was started with (models, settings)
    extra: Extra = None


@payload(E.RUN_QUEUED)
class RunQueued(Payload):
    reason: str = MISSING
    extra: Extra = None


@payload(E.RUN_STARTED)
class RunStarted(Payload):
    owner: str = MISSING
    deadline: float = MISSING  # run timeout: absolute unix time, durable across resumes
    extra: Extra = None


@payload(E.RUN_RECOVERED)
class RunRecovered(Payload):
    owner: str = MISSING
    interrupted: list[str] = MISSING
    extra: Extra = None


@payload(E.RUN_RESUMED)
class RunResumed(Payload):
    owner: str = MISSING
    extra: Extra = None


@payload(E.RUN_PAUSED)
class RunPaused(Payload):
    reason: str = MISSING
    extra: Extra = None


@payload(E.RUN_PARKED)
class RunParked(Payload):
    requests: list[str] = MISSING  # the open human-input requests it waits for
    wake_at: float | None = MISSING  # earliest timer due (a worker picks it up then)
    extra: Extra = None


@payload(E.RUN_CANCEL_REQUESTED)
class RunCancelRequested(Payload):
    reason: str = MISSING
    extra: Extra = None


@payload(E.RUN_CANCELED)
class RunCanceled(Payload):
    reason: str = MISSING
    extra: Extra = None


@payload(E.RUN_COMPLETED)
class RunCompleted(Payload):
    outputs: dict[str, Any] | None = MISSING
    extra: Extra = None


@payload(E.RUN_FAILED)
class RunFailed(Payload):
    error: str = MISSING
    step_id: str | None = MISSING
    budget: str = MISSING  # max_tokens | max_cost when the run ran out of budget
    extra: Extra = None


@payload(E.WORKFLOW_STARTED)
class WorkflowStarted(Payload):
    flow: str = MISSING
    version: str = MISSING
    extra: Extra = None


@payload(E.WORKFLOW_COMPLETED)
class WorkflowCompleted(Payload):
    steps: int = MISSING
    completed: int = MISSING
    extra: Extra = None


@payload(E.WORKFLOW_FAILED)
class WorkflowFailed(Payload):
    error: str = MISSING
    extra: Extra = None


# -- steps -------------------------------------------------------------------------------


@payload(E.STEP_STARTED)
class StepStarted(Payload):
    kind: str = MISSING
    units: list[dict[str, Any]] = MISSING
    iteration: int = MISSING
    reused_from: str = MISSING
    extra: Extra = None


@payload(E.STEP_COMPLETED)
class StepCompleted(Payload):
    output: Any = MISSING
    aggregate: dict[str, Any] = MISSING
    iterations: int = MISSING
    until_met: bool = MISSING
    reused_from: str = MISSING
    extra: Extra = None


@payload(E.STEP_FAILED)
class StepFailed(Payload):
    error: str = MISSING
    output: Any = MISSING
    units: list[str] = MISSING  # pending units this failure ended (budget)
    extra: Extra = None


@payload(E.STEP_SKIPPED)
class StepSkipped(Payload):
    reason: str = MISSING
    units: list[str] = MISSING  # pending units this skip ended (budget)
    extra: Extra = None


@payload(E.STEP_CANCELED)
class StepCanceled(Payload):
    reason: str = MISSING
    extra: Extra = None


@payload(E.STEP_STALE)
class StepStale(Payload):
    because: str = MISSING
    rerun: bool = MISSING
    extra: Extra = None


@payload(E.STEP_RERUN)
class StepRerun(Payload):
    unit: str | None = MISSING
    downstream: bool = MISSING
    deadline: float = MISSING  # a fresh run deadline for the re-opened run
    extra: Extra = None


@payload(E.STEP_RETRYING)
class StepRetrying(Payload):
    delay: float = MISSING
    error: str = MISSING
    at: float = MISSING  # when the next attempt may start (durable backoff)
    extra: Extra = None


@payload(E.LOOP_ITERATION)
class LoopIteration(Payload):
    iteration: int = MISSING
    extra: Extra = None


# -- attempts ----------------------------------------------------------------------------


@payload(E.ATTEMPT_STARTED)
class AttemptStarted(Payload):
    kind: str = MISSING
    vars: dict[str, Any] = MISSING
    timeout_at: float = MISSING  # the step timeout, as an absolute time
    reserve: int = MISSING  # tokens reserved against max_tokens while it runs
    extra: Extra = None


@payload(E.ATTEMPT_COMPLETED)
class AttemptCompleted(Payload):
    output: Any = MISSING
    extra: Extra = None


@payload(E.ATTEMPT_FAILED)
class AttemptFailed(Payload):
    error: str = MISSING
    kind: str = MISSING
    retryable: bool = MISSING
    retry_after: float = MISSING
    hint: str = MISSING
    extra: Extra = None


@payload(E.ATTEMPT_INTERRUPTED)
class AttemptInterrupted(Payload):
    error: str = MISSING
    extra: Extra = None


@payload(E.ATTEMPT_CANCELED)
class AttemptCanceled(Payload):
    error: str = MISSING
    extra: Extra = None


# -- humans ------------------------------------------------------------------------------


@payload(E.HUMAN_INPUT_REQUESTED)
class HumanInputRequested(Payload):
    request_id: str = MISSING
    prompt: str = MISSING
    input: str = MISSING
    options: list[str] | None = MISSING
    default: Any = MISSING
    timeout: float = MISSING
    timeout_at: float = MISSING  # durable: a resumed or parked run keeps the deadline
    extra: Extra = None


@payload(E.HUMAN_INPUT_RECEIVED)
class HumanInputReceived(Payload):
    request_id: str | None = MISSING
    answer: Any = MISSING
    source: str = MISSING
    extra: Extra = None


# -- informational -----------------------------------------------------------------------


@payload(E.LLM_LOADING_MODEL)
class LlmLoadingModel(Payload):
    model: str = MISSING
    model_source: str = MISSING
    status: str = MISSING
    elapsed: float = MISSING
    extra: Extra = None


@payload(E.LLM_GENERATING)
class LlmGenerating(Payload):
    model: str = MISSING
    model_source: str = MISSING
    messages: list[dict[str, Any]] = MISSING
    extra: Extra = None


@payload(E.LLM_HEARTBEAT)
class LlmHeartbeat(Payload):
    model: str = MISSING
    status: str = MISSING
    elapsed: float = MISSING
    extra: Extra = None


@payload(E.LLM_TOKENS)
class LlmTokens(Payload):
    text: str = MISSING
    extra: Extra = None


@payload(E.LLM_DONE)
class LlmDone(Payload):
    model: str = MISSING
    model_source: str = MISSING
    usage: dict[str, int] = MISSING
    cost: float = MISSING
    duration: float = MISSING
    extra: Extra = None


@payload(E.LLM_ERROR)
class LlmError(Payload):
    model: str = MISSING
    kind: str = MISSING
    retry_after: float | None = MISSING
    extra: Extra = None


@payload(E.TOOL_CALL_STARTED)
class ToolCallStarted(Payload):
    call_id: str = MISSING
    name: str = MISSING
    arguments: Any = MISSING
    extra: Extra = None


@payload(E.TOOL_CALL_COMPLETED)
class ToolCallCompleted(Payload):
    call_id: str = MISSING
    name: str = MISSING
    arguments: Any = MISSING
    result: Any = MISSING
    duration: float = MISSING
    extra: Extra = None


@payload(E.TOOL_CALL_FAILED)
class ToolCallFailed(Payload):
    call_id: str = MISSING
    name: str = MISSING
    arguments: Any = MISSING
    error: str = MISSING
    duration: float = MISSING
    extra: Extra = None


@payload(E.SHELL_EXECUTING)
class ShellExecuting(Payload):
    command: str = MISSING
    cwd: str = MISSING
    pid: int = MISSING
    extra: Extra = None


@payload(E.SHELL_OUTPUT)
class ShellOutput(Payload):
    stream: str = MISSING
    text: str = MISSING
    extra: Extra = None


@payload(E.ARTIFACT_CREATED)
class ArtifactCreated(Payload):
    path: str = MISSING
    size: int = MISSING
    sha256: str = MISSING
    mime: str | None = MISSING
    extra: Extra = None


@payload(E.STEP_CACHE_HIT)
class StepCacheHit(Payload):
    cache_key: str = MISSING
    extra: Extra = None


@payload(E.CONDUCTOR_TURN)
class ConductorTurn(Payload):
    turn: int = MISSING
    participant: str = MISSING
    output: Any = MISSING
    rejected: str = MISSING
    extra: Extra = None


@payload(E.CHILD_RUN_STARTED)
class ChildRunStarted(Payload):
    child_run_id: str = MISSING
    flow: str = MISSING
    extra: Extra = None


@payload(E.DIRECTIVE)
class Directive(Payload):
    text: str = MISSING
    extra: Extra = None
