"""What the engine needs from the outside, as narrow protocols. The composition root
(``llmflow.runtime.root``) plugs in the store, the step executors and the LLM gateway."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from llmflow.engine.events import Event, NewEvent
from llmflow.model.spec import Flow, StepSpec


class EventLog(Protocol):
    def append(self, run_id: str, events: list[NewEvent], now: float) -> list[Event]: ...
    def events(self, run_id: str, after_seq: int = 0, limit: int | None = None) -> list[Event]: ...
    def take_controls(self, run_id: str) -> list[Any]: ...
    def heartbeat(self, run_id: str, owner: str, now: float, lease_seconds: float) -> bool: ...


class Clock(Protocol):
    def now(self) -> float: ...


@dataclass(frozen=True)
class LlmResult:
    text: str
    model: str
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0
    tool_calls: tuple[Any, ...] = ()  # providers.base.ToolCall items the model asked for


class LlmGateway(Protocol):
    async def generate(
        self,
        ctx: StepContext,
        *,
        model: str,
        model_source: str,
        messages: list[tuple[str, str]],
        params: dict[str, Any],
        output_schema: dict[str, Any] | None = None,
        stream: bool = True,
        tools: list[Any] | None = None,  # providers.base.ToolDef; messages may then be ChatMessage
    ) -> LlmResult: ...


@dataclass(frozen=True)
class HumanQuestion:
    prompt: str
    input: str = "text"  # confirm | text | choice
    options: list[str] | None = None
    default: str | None = None
    timeout: float | None = None
    key: str = ""  # distinguishes several questions of one attempt (conductor turns)


@dataclass
class StepContext:
    """Everything a step executor may use. Executors do their side effects through this."""

    run_id: str
    flow: Flow
    node_id: str
    step: StepSpec
    unit: str
    attempt: int
    vars: dict[str, Any]
    template: dict[str, Any]  # the template context for this attempt
    workspace: Path
    artifacts_dir: Path
    emit: Callable[[NewEvent], None]
    ask_human: Callable[[HumanQuestion], Awaitable[Any]]
    run_child: Callable[[str, dict[str, Any], list[str]], Awaitable[dict[str, Any]]]
    llm: LlmGateway | None
    run_models: dict[str, str] = field(default_factory=dict)
    env_models: dict[str, str] = field(default_factory=dict)
    allow_shell: bool = True
    functions: dict[str, Callable[..., Any]] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    prior: Callable[[], list[Event]] | None = None

    def event(self, type: str, message: str = "", **payload: Any) -> None:
        self.emit(NewEvent(type, message, self.node_id, self.unit or None, self.attempt, payload))

    def prior_events(self) -> list[Event]:
        """The events recorded for this step and unit by earlier attempts of the current
        generation that ended interrupted (their process stopped), in order: what a durable
        step (a tool loop) replays instead of doing again."""
        return self.prior() if self.prior is not None else []


class StepExecutor(Protocol):
    """A step kind's executor. It may carry an ``inline(ctx) -> bool`` attribute: True when
    this call may start inline, in the runner's own task, until its first wait (a task then
    continues it). Declare it only for calls that, before their first wait, open no
    ``asyncio.timeout`` / ``TaskGroup`` / cancel scope and do not read the current task:
    those would bind to the runner's task. Without it, every unit runs in a task of its own."""

    async def __call__(self, ctx: StepContext) -> Any: ...
