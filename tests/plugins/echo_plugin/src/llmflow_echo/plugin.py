"""The plugin hook llmflow calls: ``register(registry)`` adds what this package brings."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from llmflow.model.spec import StepSpec


class EchoStep(StepSpec):
    """``echo: <text>``: the step's output is the rendered text, repeated ``times`` times."""

    KIND: ClassVar[str] = "echo"
    SHORTHAND: ClassVar[str | None] = "text"
    TEMPLATE_FIELDS: ClassVar[tuple[str, ...]] = ("text",)
    kind: Literal["echo"] = "echo"
    text: str
    times: int = 1


def shout(text: str) -> str:
    """Upper-case a text."""
    return text.upper()


def echo_length(output: Any) -> float:
    return 1.0 if str(output) else 0.0


def register(registry: Any) -> None:
    registry.add_step_kind(EchoStep, "llmflow_echo.steps:execute")
    registry.add_tool("echo_shout", shout)
    registry.add_metric("echo_nonempty", echo_length)
