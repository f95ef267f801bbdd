"""The Python API: run, run_sync (also inside a running event loop), start and its handle."""

from __future__ import annotations

import asyncio

import llmflow
from llmflow.model.spec import Flow, LlmStep, PythonStep

FLOW = """
name: api
inputs: {who: string}
steps:
  - id: hello
    llm: "Hello {{ inputs.who }}"
  - id: shout
    python: {function: "api_upper", args: {text: "{{ steps.hello.output }}"}}
"""


@llmflow.step_function("api_upper")
def _upper(text: str) -> str:
    return text.upper()


def test_run_sync_returns_a_run_with_steps_and_attempts(tmp_path):
    run = llmflow.run_sync(Flow.from_yaml(FLOW), {"who": "Ada"}, models="fake:", home=tmp_path)
    assert run.ok and run.status == "COMPLETED"
    assert run.output.startswith("FAKE ANSWER TO: HELLO ADA")
    hello = run.step("hello")
    assert hello.model == "fake:" and hello.attempts[0]["status"] == "COMPLETED"
    assert hello.duration is not None and hello.usage["output_tokens"] > 0


def test_run_sync_works_inside_a_running_event_loop(tmp_path):
    async def notebook_cell():
        return llmflow.run_sync(Flow.from_yaml(FLOW), {"who": "Bo"}, models="fake:", home=tmp_path)

    run = asyncio.run(notebook_cell())
    assert run.status == "COMPLETED"


def test_flows_built_in_python_equal_their_yaml():
    built = Flow(
        name="api",
        inputs={"who": "string"},
        steps=[
            LlmStep(id="hello", prompt="Hello {{ inputs.who }}"),
            PythonStep(id="shout", function="api_upper", args={"text": "{{ steps.hello.output }}"}),
        ],
    )
    assert built.to_dict() == Flow.from_yaml(FLOW).to_dict()
    assert Flow.from_yaml(built.to_yaml()).to_dict() == built.to_dict()


def test_start_streams_events_and_waits(tmp_path):
    async def go():
        h = await llmflow.start(Flow.from_yaml(FLOW), {"who": "Cy"}, models="fake:", home=tmp_path)
        types = [e.type async for e in h.events()]
        run = await h.wait()
        return types, run

    types, run = asyncio.run(go())
    assert types[0] == "RUN_CREATED" and types[-1] == "RUN_COMPLETED"
    assert run.status == "COMPLETED"
