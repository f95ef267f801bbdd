"""The flow model: immutable, validated specs (pydantic, ``kind``-discriminated steps).

A flow document is either written with ``kind:`` on each step or with the shorthand
``{id: x, llm: {...}}``; :func:`llmflow.model.registry.normalise_step` turns the shorthand
into the ``kind`` form.
Step kinds are looked up in :mod:`llmflow.model.registry`, so plugins can add their own.

Imports inside ``model/`` point one way (registry <- spec <- graph <- references <-
validate <- loader) with one exception: :meth:`Flow.check`, :meth:`Flow.validated` and
:meth:`Flow.from_yaml` call back into ``validate`` and ``loader``, which build Flows. They are
public conveniences; making them module functions is an API change, not a move.

The module is long because it holds every spec class, one per step kind, and they refer to
each other (a ``parallel``'s or ``loop``'s steps are specs too).
"""

from __future__ import annotations

from pathlib import Path
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


InputType = Literal["string", "integer", "number", "boolean", "array", "object", "any"]


class InputSpec(Spec):
    type: InputType = "string"
    description: str | None = None
    default: Any = None
    required: bool | None = None
    enum: list[Any] | None = None

    @property
    def is_required(self) -> bool:
        if self.required is not None:
            return self.required
        return "default" not in self.model_fields_set


def _input_shorthand(v: Any) -> Any:
    if isinstance(v, str):
        return {"type": v}
    if v is None:
        return {}
    return v


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


class McpServerSpec(Spec):
    """An MCP server: a command spoken to over stdio, or a streamable-HTTP ``url``."""

    command: str | None = Field(None, min_length=1)
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None
    url: str | None = Field(None, pattern=r"^https?://")
    headers: dict[str, str] = Field(default_factory=dict)
    timeout: float = Field(30.0, gt=0)  # seconds to connect and list the tools

    @model_validator(mode="after")
    def _one_transport(self) -> McpServerSpec:
        if (self.command is None) == (self.url is None):
            raise ValueError(
                "an MCP server needs exactly one of 'command' (stdio) or 'url' (streamable HTTP)"
            )
        if self.url is not None and (self.args or self.env or self.cwd):
            raise ValueError("'args', 'env' and 'cwd' apply to 'command' servers, not to 'url' ones")
        return self


class AgentSpec(Spec):
    """A reusable named LLM configuration. Buttermilk agent keys are accepted for migration."""

    model: str | None = None
    system: str | None = None
    prompt: str | None = None
    description: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    tools: list[ToolRef] = Field(default_factory=list)
    max_turns: int | None = Field(None, ge=1, le=100)
    weight: float = 1.0
    role: str | None = None
    # Buttermilk-compatible keys (kept, mostly informational)
    parameters: dict[str, Any] = Field(default_factory=dict)
    variants: dict[str, Any] = Field(default_factory=dict)
    agent_obj: str | None = None
    name_components: list[Any] | None = None
    num_runs: int = 1
    inputs: dict[str, Any] | None = None
    outputs: dict[str, Any] | None = None
    tasks: dict[str, Any] | None = None
    data: Any = None
    unique_identifier: str | None = None


class RunOptions(Spec):
    timeout: float | None = Field(None, gt=0)
    max_concurrency: int = Field(16, ge=1)
    on_error: Literal["fail", "continue"] = "fail"
    max_tokens: int | None = Field(None, ge=1)
    max_cost: float | None = Field(None, ge=0)
    workspace: str | None = None
    human_in_loop: bool = True
    max_units: int | None = Field(None, ge=1)  # units per step (at most the LLMFLOW_MAX_UNITS setting)
    on_budget: Literal["fail", "skip"] = "fail"  # what out-of-budget does to the units not started
    human_timeout: float | None = Field(None, gt=0)  # seconds a person has to answer; then the default


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


def _inputs(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _input_shorthand(x) for k, x in v.items()}
    return v


def _outputs(v: Any) -> Any:
    if isinstance(v, list):
        return (
            {s: f"{{{{ steps.{s}.output }}}}" for s in v if isinstance(s, str)}
            if all(isinstance(s, str) for s in v)
            else v
        )
    if isinstance(v, str):
        return {"result": v if "{{" in v else f"{{{{ steps.{v}.output }}}}"}
    return v


class Flow(Spec):
    """A flow definition. Build it from YAML (:meth:`from_yaml`) or in Python."""

    name: str = Field(min_length=1)
    description: str = ""
    version: str = "1"
    inputs: Annotated[dict[str, InputSpec], BeforeValidator(_inputs)] = Field(default_factory=dict)
    outputs: Annotated[dict[str, str] | None, BeforeValidator(_outputs)] = None
    agents: dict[str, AgentSpec] = Field(default_factory=dict)
    mcp_servers: dict[Annotated[str, Field(pattern=IDENT)], McpServerSpec] = Field(default_factory=dict)
    model: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    options: RunOptions = Field(default_factory=RunOptions)
    steps: StepList = Field(min_length=1)
    # Buttermilk-compatible keys
    orchestrator: str | None = None
    data: Any = None
    storage: dict[str, Any] | None = None
    observers: dict[str, Any] | None = None

    @field_validator("version", mode="before")
    @classmethod
    def _version_str(cls, v: Any) -> Any:
        return str(v) if isinstance(v, int | float) else v

    @model_validator(mode="before")
    @classmethod
    def _human_in_loop_parameter(cls, v: Any) -> Any:
        """Buttermilk keeps ``human_in_loop`` in the flow's parameters: honoured like
        ``options.human_in_loop`` (which wins when both are given)."""
        if (
            isinstance(v, dict)
            and isinstance(v.get("parameters"), dict)
            and isinstance(v["parameters"].get("human_in_loop"), bool)
        ):
            opts = v.get("options")
            if opts is None or (isinstance(opts, dict) and "human_in_loop" not in opts):
                v = {**v, "options": {**(opts or {}), "human_in_loop": v["parameters"]["human_in_loop"]}}
        return v

    # -- conveniences -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The flow as plain data, without default values; ``Flow(**d)`` gives it back."""
        d = self.model_dump(mode="json", exclude_defaults=True, by_alias=True)
        # an input whose default is explicitly null is optional: keep the null, or the
        # round trip would make it required
        for k, spec in self.inputs.items():
            entry = {"type": spec.type, **d.setdefault("inputs", {}).get(k, {})}  # type reads well first
            if "default" in spec.model_fields_set and spec.default is None:
                entry["default"] = None
            d["inputs"][k] = entry
        if not d.get("inputs"):
            d.pop("inputs", None)
        return {"name": self.name, **{k: v for k, v in d.items() if k != "name"}}

    def check(self) -> list[Any]:
        """Every problem with this flow (unknown references, cycles, bad templates, ...) as
        diagnostics; [] when it is valid. Building a Flow in Python checks each value; this
        checks how the parts fit together, as loading a YAML file does."""
        from llmflow.model.validate import validate_document

        return validate_document(self.to_dict(), file=f"<flow {self.name}>")[1]

    def validated(self) -> Flow:
        """This flow, or FlowValidationError listing every problem (see :meth:`check`)."""
        from llmflow.errors import FlowValidationError

        diags = self.check()
        if diags:
            raise FlowValidationError(diags)
        return self

    def to_yaml(self) -> str:
        """The flow as YAML (multi-line strings as ``|`` blocks); :meth:`from_yaml` reads it back."""
        return dump_yaml(self.to_dict())

    @classmethod
    def from_yaml(cls, text_or_path: str | Path, overrides: list[str] | None = None) -> Flow:
        """Load from YAML text or from a file path or flow name (composition and overrides
        apply to files; see :func:`llmflow.load_flow`). Raises FlowValidationError."""
        from llmflow.model.loader import load_flow, parse_flow_text

        if isinstance(text_or_path, Path) or _looks_like_path(text_or_path):
            return load_flow(text_or_path, overrides=overrides or []).flow
        if overrides:
            raise ValueError("overrides apply to flow files; YAML text has nothing to compose")
        return parse_flow_text(text_or_path)

    def fingerprint(self) -> str:
        import hashlib
        import json

        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]

    def all_steps(self) -> list[StepSpec]:
        out: list[StepSpec] = []

        def walk(steps: list[StepSpec]) -> None:
            for s in steps:
                out.append(s)
                for f in s.NESTED:
                    walk(getattr(s, f))

        walk(self.steps)
        return out

    def step(self, step_id: str) -> StepSpec:
        for s in self.all_steps():
            if s.id == step_id:
                return s
        raise KeyError(step_id)


def _looks_like_path(text: str) -> bool:
    if "\n" in text or len(text) > 4096:
        return False
    if text.strip().endswith((".yaml", ".yml")):
        return True
    try:
        return Path(text).exists()
    except (OSError, ValueError):
        return False


def dump_yaml(data: Any) -> str:
    """YAML that reads well: key order kept, multi-line strings as ``|`` blocks."""
    import yaml

    class _Dumper(yaml.SafeDumper):
        pass

    def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
        if "\n" in value:  # PyYAML falls back to quotes when a block cannot hold the text
            return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
        return dumper.represent_scalar("tag:yaml.org,2002:str", value)

    _Dumper.add_representer(str, _str)
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
