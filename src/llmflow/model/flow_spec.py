"""The flow's own spec, as data: inputs, agents, MCP servers, run options and
:class:`FlowSpec` (every field of a flow, its round trip to plain data and YAML, step lookup).

:class:`llmflow.model.spec.Flow` is this plus the three conveniences that need the
validator and the loader (``check``, ``validated``, ``from_yaml``); everything below the
loader works on ``FlowSpec`` and builds the class it is given, so no module here imports
back up (see :mod:`llmflow.model.spec`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator

from llmflow.model.step_specs import IDENT, Spec, StepList, StepSpec, ToolRef

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


class FlowSpec(Spec):
    """A flow definition as data (users build :class:`llmflow.model.spec.Flow`, this plus
    ``check``, ``validated`` and ``from_yaml``)."""

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

    def to_yaml(self) -> str:
        """The flow as YAML (multi-line strings as ``|`` blocks); ``Flow.from_yaml`` reads it back."""
        return dump_yaml(self.to_dict())

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
