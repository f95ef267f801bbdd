"""The built-in step executors, by kind. Plugins add theirs to the mapping the runtime builds."""

from __future__ import annotations

from llmflow.engine.ports import StepExecutor


def builtin_executors() -> dict[str, StepExecutor]:
    from llmflow.steps import conductor, human, llm, python_fn, retrieve, shell, subflow, write_file

    return {
        "llm": llm.execute,
        "broadcast": llm.execute,
        "shell": shell.execute,
        "write_file": write_file.execute,
        "python": python_fn.execute,
        "human": human.execute,
        "flow": subflow.execute,
        "conductor": conductor.execute,
        "retrieve": retrieve.execute,
    }
