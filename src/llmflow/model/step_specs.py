"""Step specs: the fields common to every step (:class:`StepSpec`) and one class per
built-in step kind, with the parts they share (retry, tool entries).

Immutable, validated pydantic models, ``kind``-discriminated: a step list is validated
through :func:`llmflow.model.registry.coerce_steps`, so a plugin's step kind is a spec like
these. The flow around them is :mod:`llmflow.model.flow_spec`; users import both from
:mod:`llmflow.model.spec`.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    field_validator,
    model_validator,
)

from llmflow.model.registry import coerce_steps

IDENT = r"^[A-Za-z_][A-Za-z0-9_]*$"


class Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


# "transient": a retryable provider error (429, 5xx, connection reset, provider timeout);
# the engine's retry policy (engine/retry.py) says which error kinds count.
RetryOn = Literal["transient", "rate_limit", "provider", "timeout", "error", "any"]


class RetrySpec(Spec):
    attempts: int = Field(1, ge=1, le=100)
    backoff: float = Field(1.0, ge=0)  # first delay, seconds
    multiplier: float = Field(2.0, ge=1)
    max_backoff: float = Field(60.0, ge=0)
    jitter: float = Field(0.1, ge=0, le=1)  # +/- fraction of the delay
    on: list[RetryOn] = Field(default_factory=lambda: list[RetryOn](["any"]))


# A step without `retry:` gets this: transient provider errors are retried, nothing else.
DEFAULT_RETRY = RetrySpec(attempts=3, on=["transient"])


def _retry_shorthand(v: Any) -> Any:
    # `retry: 3` = 3 attempts; `retry: true` = 3 attempts; `retry: false` (or 1) = no retries
    if isinstance(v, bool):
        return {"attempts": 3} if v else {"attempts": 1}
    if isinstance(v, int):
        return {"attempts": v}
    return v


class ToolSpec(Spec):
    """One entry of a ``tools:`` list written as a mapping (a plain string is ``tool:``).

    Exactly one of ``tool`` (a built-in or registered tool name, ``module:function``, an MCP
    server ``name`` or ``name.tool``), ``flow`` (a flow run as a tool, as a linked child run)
    or ``index`` (a retrieval index the model can search)."""

    tool: str | None = Field(None, min_length=1)
    flow: str | None = Field(None, min_length=1)
    index: str | None = Field(None, min_length=1)
    name: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_\-]{0,63}$")  # the name the model sees
    description: str | None = None
    confirm: bool = False  # ask a human before each call
    timeout: float | None = Field(None, gt=0)  # seconds per call (default 60)
    retry: Annotated[RetrySpec | None, BeforeValidator(_retry_shorthand)] = None
    top_k: int = Field(5, ge=1, le=50)  # index tools: results per search

    @model_validator(mode="after")
    def _one_target(self) -> ToolSpec:
        given = [k for k in ("tool", "flow", "index") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "a tool entry needs exactly one of 'tool', 'flow' or 'index'"
                + (f" (got {', '.join(given)})" if given else "")
            )
        return self

    @property
    def ref(self) -> str:
        return self.tool or (f"flow {self.flow}" if self.flow else f"index {self.index}")


def _tool_entry(v: Any) -> Any:
    return {"tool": v} if isinstance(v, str) else v


ToolRef = Annotated[
    ToolSpec,
    BeforeValidator(_tool_entry),
    PlainSerializer(
        lambda t: (
            t.tool if t.model_fields_set <= {"tool"} else t.model_dump(mode="json", exclude_defaults=True)
        )
    ),
]


class StepSpec(Spec):
    """Fields common to every step kind."""

    KIND: ClassVar[str] = ""
    SHORTHAND: ClassVar[str | None] = None  # `llm: "text"` sets this field
    NESTED: ClassVar[tuple[str, ...]] = ()  # fields holding nested step lists
    TEMPLATE_FIELDS: ClassVar[tuple[str, ...]] = ()  # rendered with the expression language

    kind: str
    id: str = Field(pattern=IDENT)
    description: str | None = None
    needs: list[str] | None = None
    when: str | None = None
    for_each: str | list[Any] | None = None
    max_concurrency: int | None = Field(None, ge=1)
    matrix: dict[str, list[Any] | str] | None = None
    retry: Annotated[RetrySpec | None, BeforeValidator(_retry_shorthand)] = None
    timeout: float | None = Field(None, gt=0)
    on_error: Literal["fail", "continue", "retry"] = "fail"
    cache: bool = False
    output: dict[str, Any] | None = None  # JSON schema of a structured output

    @field_validator("needs", mode="before")
    @classmethod
    def _needs_str(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("kind")
    @classmethod
    def _kind_matches(cls, v: str) -> str:
        if cls.KIND and v != cls.KIND:
            raise ValueError(f"kind must be {cls.KIND!r}")
        return v

    def to_dict(self) -> dict[str, Any]:
        d = self.model_dump(mode="json", exclude_defaults=True, by_alias=True)
        return {"id": self.id, "kind": self.kind, **{k: v for k, v in d.items() if k not in ("id", "kind")}}

    def effective_retry(self) -> RetrySpec:
        if self.retry is None:
            return RetrySpec(attempts=3) if self.on_error == "retry" else DEFAULT_RETRY
        r = self.retry
        if self.on_error == "retry" and r.attempts == 1:
            r = r.model_copy(update={"attempts": 3})
        return r


class Message(Spec):
    role: Literal["system", "user", "assistant"]
    content: str


class LlmStep(StepSpec):
    KIND: ClassVar[str] = "llm"
    SHORTHAND: ClassVar[str | None] = "prompt"
    TEMPLATE_FIELDS: ClassVar[tuple[str, ...]] = ("prompt", "system", "messages")
    kind: Literal["llm"] = "llm"
    agent: str | None = None
    model: str | None = None
    system: str | None = None
    prompt: str | None = None
    messages: list[Message] | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    stream: bool = True
    tools: list[ToolRef] = Field(default_factory=list)
    max_turns: int | None = Field(None, ge=1, le=100)  # model calls in a tool loop (default 10)

    @model_validator(mode="after")
    def _has_prompt(self) -> LlmStep:
        if self.prompt is None and not self.messages:
            raise ValueError("an llm step needs 'prompt' or 'messages'")
        return self


class ShellStep(StepSpec):
    KIND: ClassVar[str] = "shell"
    SHORTHAND: ClassVar[str | None] = "command"
    TEMPLATE_FIELDS: ClassVar[tuple[str, ...]] = ("command", "cwd", "env")
    kind: Literal["shell"] = "shell"
    command: str | list[str]
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None
    check: bool = True  # a non-zero exit fails the step


class WriteFileStep(StepSpec):
    KIND: ClassVar[str] = "write_file"
    TEMPLATE_FIELDS: ClassVar[tuple[str, ...]] = ("path", "content", "dir")
    kind: Literal["write_file"] = "write_file"
    path: str | None = None
    content: str
    split_files: bool = False  # split "=== FILE: p === ... === END FILE ===" blocks into files
    dir: str = "."
    append: bool = False

    @model_validator(mode="after")
    def _has_path(self) -> WriteFileStep:
        if self.path is None and not self.split_files:
            raise ValueError("a write_file step needs 'path' (or 'split_files: true')")
        return self


class PythonStep(StepSpec):
    KIND: ClassVar[str] = "python"
    SHORTHAND: ClassVar[str | None] = "function"
    TEMPLATE_FIELDS: ClassVar[tuple[str, ...]] = ("args",)
    kind: Literal["python"] = "python"
    function: str  # a registered name or "module:attribute"
    args: dict[str, Any] = Field(default_factory=dict)


class HumanStep(StepSpec):
    KIND: ClassVar[str] = "human"
    SHORTHAND: ClassVar[str | None] = "prompt"
    TEMPLATE_FIELDS: ClassVar[tuple[str, ...]] = ("prompt",)
    kind: Literal["human"] = "human"
    prompt: str
    input: Literal["confirm", "text", "choice"] = "text"
    options: list[str] | None = None
    default: str | None = None
    # a confirm answered "no" (n, reject, false, ...): stop the flow (the step fails with
    # "declined"), as in Buttermilk; "continue" gives false to the steps after it
    on_reject: Literal["stop", "continue"] = "stop"


class FlowStep(StepSpec):
    KIND: ClassVar[str] = "flow"
    SHORTHAND: ClassVar[str | None] = "flow"
    TEMPLATE_FIELDS: ClassVar[tuple[str, ...]] = ("flow", "inputs")
    kind: Literal["flow"] = "flow"
    flow: str
    inputs: dict[str, Any] = Field(default_factory=dict)
    overrides: list[str] = Field(default_factory=list)


StepList = Annotated[
    list[StepSpec],
    BeforeValidator(coerce_steps),
    PlainSerializer(lambda steps: [s.to_dict() for s in steps]),
]


class RetrieveStep(StepSpec):
    """Search a retrieval index (``llmflow index add``); the output is the list of hits,
    each with source, chunk, text and score."""

    KIND: ClassVar[str] = "retrieve"
    TEMPLATE_FIELDS: ClassVar[tuple[str, ...]] = ("query",)
    kind: Literal["retrieve"] = "retrieve"
    index: str = Field(min_length=1)
    query: str
    top_k: int = Field(5, ge=1, le=100)
    mode: Literal["hybrid", "bm25", "vector"] = "hybrid"


class ParallelStep(StepSpec):
    """A group of steps that run concurrently; the group completes when all have (a barrier)."""

    KIND: ClassVar[str] = "parallel"
    NESTED: ClassVar[tuple[str, ...]] = ("steps",)
    kind: Literal["parallel"] = "parallel"
    steps: StepList


class BroadcastStep(StepSpec):
    KIND: ClassVar[str] = "broadcast"
    TEMPLATE_FIELDS: ClassVar[tuple[str, ...]] = ("prompt", "system")
    kind: Literal["broadcast"] = "broadcast"
    agents: list[str] = Field(min_length=1)
    prompt: str = "{{ inputs | tojson }}"
    system: str | None = None
    aggregate: Literal["all", "first", "majority", "consensus", "weighted"] = "all"
    min_responses: int | None = Field(None, ge=1)
    agent_timeout: float | None = Field(None, gt=0)
    weights: dict[str, float] | None = None
    consensus_threshold: float = Field(0.66, gt=0, le=1)
    fallback: Literal["majority", "first", "fail"] = "majority"


class Route(Spec):
    when: str
    to: list[str]

    @field_validator("to", mode="before")
    @classmethod
    def _to_list(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v


class RouteStep(StepSpec):
    KIND: ClassVar[str] = "route"
    kind: Literal["route"] = "route"
    routes: list[Route] = Field(min_length=1)
    default: list[str] = Field(default_factory=list)

    @field_validator("default", mode="before")
    @classmethod
    def _default_list(cls, v: Any) -> Any:
        if v is None:
            return []
        return [v] if isinstance(v, str) else v

    def targets(self) -> list[str]:
        out: list[str] = []
        for r in self.routes:
            out += [t for t in r.to if t not in out]
        out += [t for t in self.default if t not in out]
        return out


class LoopStep(StepSpec):
    KIND: ClassVar[str] = "loop"
    NESTED: ClassVar[tuple[str, ...]] = ("steps",)
    kind: Literal["loop"] = "loop"
    steps: StepList
    until: str
    max_iterations: int = Field(10, ge=1, le=10_000)


class ConductorStep(StepSpec):
    """A host picks the next participant until it says END (Buttermilk's HOST)."""

    KIND: ClassVar[str] = "conductor"
    TEMPLATE_FIELDS: ClassVar[tuple[str, ...]] = ("prompt",)
    kind: Literal["conductor"] = "conductor"
    host: str = "sequence"  # "sequence" (fixed order) or the name of an agent that decides
    participants: list[str] = Field(min_length=1)
    prompt: str
    max_turns: int = Field(10, ge=1, le=1000)
    human_confirm: bool = False
