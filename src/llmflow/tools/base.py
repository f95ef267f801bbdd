"""What every tool is once resolved: a name, a description, a JSON schema for its arguments
and an async callable, plus the options a flow set on it (confirm, timeout, retry).

Where a tool comes from (a Python function, a built-in, a flow, an MCP server, an index) is
only a matter of how :class:`Tool` is built; the loop (:mod:`llmflow.tools.loop`) treats
them all alike.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from llmflow.engine.ports import StepContext
from llmflow.errors import StepError
from llmflow.model.spec import RetrySpec
from llmflow.providers.base import ToolDef

DEFAULT_TIMEOUT = 60.0  # seconds per call, unless the flow sets `timeout:` on the tool
MAX_RESULT_CHARS = 20_000  # what the model gets back from one call (the event keeps the same)


@dataclass(frozen=True)
class CallContext:
    """What a tool call may use: the step's context and the call's stable id (the same on a
    resumed run, so a tool with side effects can use it to stay idempotent)."""

    step: StepContext
    call_id: str


ToolFn = Callable[[dict[str, Any], CallContext], Awaitable[Any]]


@dataclass
class Tool:
    name: str  # the name the model sees
    description: str
    parameters: dict[str, Any]  # JSON schema of the arguments (an object)
    fn: ToolFn
    source: str  # where it comes from, for messages: "python mypkg:fn", "mcp docs", ...
    confirm: bool = False
    timeout: float = DEFAULT_TIMEOUT
    retry: RetrySpec | None = None
    runs_code: bool = False  # leads to code execution on this machine (shell, python, stdio MCP)
    meta: dict[str, Any] = field(default_factory=dict)

    def definition(self) -> ToolDef:
        return ToolDef(self.name, self.description, self.parameters)


class ToolError(StepError):
    """A tool call failed. The loop returns the message to the model; it does not fail the step."""

    kind = "tool"
    retryable = True


def tool_error(
    message: str, hint: str | None = None, *, retryable: bool = False, kind: str = "tool"
) -> ToolError:
    return ToolError(message, retryable=retryable, hint=hint, kind=kind)


def result_text(value: Any) -> str:
    """A tool's result as the text the model reads."""
    if isinstance(value, str):
        text = value
    else:
        try:
            text = json.dumps(value, ensure_ascii=False, default=str)
        except (TypeError, ValueError):
            text = str(value)
    if len(text) > MAX_RESULT_CHARS:
        text = text[:MAX_RESULT_CHARS] + f"... [cut: {len(text) - MAX_RESULT_CHARS} more characters]"
    return text


def jsonable(value: Any) -> Any:
    """A tool result as JSON data for the event log (pydantic models dumped, the rest as text)."""
    if hasattr(value, "model_dump"):
        value = value.model_dump(mode="json")
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return json.loads(json.dumps(value, default=str))
