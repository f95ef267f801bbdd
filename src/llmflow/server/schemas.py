"""Request bodies of the three surfaces, and the checks every JSON value goes through.

Bad input is answered 422 with the field path; values no store can hold (NaN, NUL
characters, lone surrogates, absurd nesting) are refused here rather than failing later.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AliasChoices, BaseModel, ConfigDict, Field, model_validator

MAX_DEPTH = 64
BIG = 2**53  # ints beyond this do not survive JSON in browsers, nor fit every column


def check_text(s: str, where: str = "") -> str:
    if "\x00" in s:
        raise ValueError(f"{where + ': ' if where else ''}NUL characters are not allowed")
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(
            f"{where + ': ' if where else ''}the text is not valid Unicode (lone surrogate)"
        ) from None
    return s


def check_json(value: Any, where: str = "", depth: int = 0) -> Any:
    """Refuse what JSON columns cannot store: non-finite numbers, huge ints, NUL and
    lone surrogates in keys or strings, and nesting deeper than MAX_DEPTH."""
    if depth > MAX_DEPTH:
        raise ValueError(f"{where or 'value'}: nested more than {MAX_DEPTH} levels deep")
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where or 'value'}: {value} is not a JSON number")
        return value
    if isinstance(value, int):
        if abs(value) > BIG:
            raise ValueError(f"{where or 'value'}: integer out of range (at most 2**53)")
        return value
    if isinstance(value, str):
        return check_text(value, where)
    if isinstance(value, dict):
        for k, v in value.items():
            check_text(str(k), f"{where}.{k}" if where else str(k))
            check_json(v, f"{where}.{k}" if where else str(k), depth + 1)
        return value
    if isinstance(value, list | tuple):
        for i, v in enumerate(value):
            check_json(v, f"{where}[{i}]", depth + 1)
        return value
    return value


Text = Annotated[str, AfterValidator(check_text)]
Name = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(check_text)]
JsonObject = Annotated[dict[str, Any], AfterValidator(check_json)]
JsonValue = Annotated[Any, AfterValidator(check_json)]
Id = Annotated[int, Field(ge=-BIG, le=BIG)]
Seconds = Annotated[float, Field(gt=0, le=7 * 86400, allow_inf_nan=False)]
ModelSpec = Annotated[
    str, Field(min_length=3, max_length=300, pattern=r"^[A-Za-z0-9_.\-]+:"), AfterValidator(check_text)
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- native (/api/v1) ----------------------------------------------------------------------------
class RunOptionsIn(Strict):
    models: dict[Name, ModelSpec] | ModelSpec | None = Field(
        None, description="step id -> provider:model, or one provider:model for every step"
    )
    timeout_seconds: Seconds | None = Field(None, description="run timeout")
    max_concurrency: int | None = Field(None, ge=1, le=1000)
    max_tokens: int | None = Field(None, ge=1, le=BIG)
    max_cost: float | None = Field(None, ge=0, le=1e9, allow_inf_nan=False)
    project_id: Id | None = Field(None, description="run in this project's directory")
    name: Name | None = None
    metadata: JsonObject | None = None
    thread: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}$")] | None = Field(
        None, description="continue this conversation thread"
    )


class RunSpecIn(Strict):
    """One run to create: a flow (by name or as a document), its inputs and options."""

    flow: Name | None = Field(None, description="a flow this server offers (GET /api/v1/flows)")
    document: Annotated[str, Field(max_length=500_000), AfterValidator(check_text)] | JsonObject | None = (
        Field(None, description="a flow definition (YAML text or a JSON object) instead of a flow name")
    )
    inputs: JsonObject = Field(default_factory=dict)
    options: RunOptionsIn = Field(default_factory=RunOptionsIn)

    @model_validator(mode="after")
    def _one_flow(self) -> RunSpecIn:
        if (self.flow is None) == (self.document is None):
            raise ValueError("give exactly one of 'flow' (a flow name) or 'document' (a flow definition)")
        return self


class CreateRunIn(RunSpecIn):
    wait: bool = Field(False, description="answer when the run has finished (or after wait_timeout)")
    wait_timeout: Seconds | None = None


MAX_BULK_RUNS = 1000  # runs per POST /api/v1/runs/bulk


class CreateRunsIn(Strict):
    runs: list[RunSpecIn] = Field(
        min_length=1,
        max_length=MAX_BULK_RUNS,
        description="the runs to create: all are queued, or none (a refused one answers 4xx naming its index)",
    )


class ValidateIn(Strict):
    flow: Name | None = None
    document: Annotated[str, Field(max_length=500_000), AfterValidator(check_text)] | JsonObject | None = None

    @model_validator(mode="after")
    def _one_flow(self) -> ValidateIn:
        if (self.flow is None) == (self.document is None):
            raise ValueError("give exactly one of 'flow' (a flow name) or 'document' (a flow definition)")
        return self


class RerunIn(Strict):
    step: Name
    unit: Name | None = None
    downstream: bool = False


class ForkIn(Strict):
    from_step: Name


class AnswerIn(Strict):
    answer: JsonValue = None
    request_id: Name | None = None


class DirectiveIn(BaseModel):
    text: Annotated[str, Field(max_length=100_000), AfterValidator(check_text)]


class ProjectIn(Strict):
    name: Name
    local_path: Annotated[str, Field(min_length=1, max_length=4096), AfterValidator(check_text)]


# -- Agent Runner -------------------------------------------------------------------------------
class AgentRunIn(BaseModel):
    """Agent Runner's CreateRunRequest; unknown keys are ignored, as there."""

    model_config = ConfigDict(extra="ignore")
    project_id: Id
    goal: Annotated[str, Field(max_length=100_000), AfterValidator(check_text)]
    name: Annotated[str, Field(max_length=200), AfterValidator(check_text)] | None = None
    run_type: Literal["agent", "workflow", "pipeline", "task"] = "agent"
    options: JsonObject | None = None
    metadata: JsonObject | None = None


# -- Buttermilk ---------------------------------------------------------------------------------
class FlowRequestIn(BaseModel):
    """Buttermilk's RunRequest as a client sends it (extra keys allowed, as there)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)
    flow: Name | None = None
    prompt: Annotated[str, Field(max_length=500_000), AfterValidator(check_text)] | None = Field(
        None, validation_alias=AliasChoices("prompt", "q")
    )
    text: Annotated[str, Field(max_length=500_000), AfterValidator(check_text)] | None = None
    uri: Annotated[str, Field(max_length=10_000), AfterValidator(check_text)] | None = None
    record_id: Annotated[str, Field(max_length=500), AfterValidator(check_text)] | None = None
    parameters: JsonObject = Field(default_factory=dict)
    session_id: Annotated[str, Field(max_length=128, pattern=r"^[A-Za-z0-9_\-]+$")] | None = None
    wait: bool = Field(True, description="false: start the flow and answer at once with a websocket_url")

    @model_validator(mode="after")
    def _extras_are_json(self) -> FlowRequestIn:
        check_json(self.model_extra or {})
        return self

    def extra_parameters(self) -> dict[str, Any]:
        return {k: v for k, v in (self.model_extra or {}).items() if k not in ("type", "q")}
