"""Flow specs: shorthand forms, the Python API, YAML round trips."""

from __future__ import annotations

import pytest

from llmflow.errors import FlowValidationError
from llmflow.model.loader import parse_flow_text
from llmflow.model.registry import normalise_step, register_step_kind, registry, step_function
from llmflow.model.spec import (
    AgentSpec,
    BroadcastStep,
    ConductorStep,
    Flow,
    FlowStep,
    HumanStep,
    InputSpec,
    LlmStep,
    LoopStep,
    ParallelStep,
    PythonStep,
    RetrySpec,
    Route,
    RouteStep,
    ShellStep,
    StepSpec,
    WriteFileStep,
)

# -- shorthand -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("short", "long"),
    [
        ({"id": "a", "llm": "hi"}, {"id": "a", "kind": "llm", "prompt": "hi"}),
        (
            {"id": "a", "llm": {"prompt": "hi", "agent": "x"}},
            {"id": "a", "kind": "llm", "prompt": "hi", "agent": "x"},
        ),
        ({"id": "a", "shell": "ls"}, {"id": "a", "kind": "shell", "command": "ls"}),
        ({"id": "a", "python": "mod:fn"}, {"id": "a", "kind": "python", "function": "mod:fn"}),
        ({"id": "a", "human": "ok?"}, {"id": "a", "kind": "human", "prompt": "ok?"}),
        ({"id": "a", "flow": "other"}, {"id": "a", "kind": "flow", "flow": "other"}),
        (
            {"id": "g", "parallel": [{"id": "b", "llm": "x"}]},
            {"id": "g", "kind": "parallel", "steps": [{"id": "b", "llm": "x"}]},
        ),
        ({"id": "a", "kind": "llm", "prompt": "hi"}, {"id": "a", "kind": "llm", "prompt": "hi"}),
    ],
)
def test_shorthand_becomes_the_kind_form(short, long):
    assert normalise_step(short) == long


def test_step_level_keys_win_over_the_shorthand_body():
    assert normalise_step({"id": "a", "when": "x", "llm": {"prompt": "p", "when": "y"}})["when"] == "x"


def test_shorthand_and_long_forms_give_the_same_flow():
    short = parse_flow_text(
        "name: f\nsteps:\n  - {id: a, llm: hi}\n  - {id: b, shell: {command: ls, check: false}}\n"
    )
    long = parse_flow_text(
        "name: f\nsteps:\n  - {id: a, kind: llm, prompt: hi}\n  - {id: b, kind: shell, command: ls, check: false}\n"
    )
    assert short == long


def test_input_and_output_shorthands():
    f = parse_flow_text(
        "name: f\ninputs: {text: string, n: {type: integer, default: 2}, any_: }\noutputs: [a]\nsteps: [{id: a, llm: hi}]\n"
    )
    assert f.inputs["text"] == InputSpec(type="string")
    assert f.inputs["text"].is_required and not f.inputs["n"].is_required
    assert f.inputs["any_"].type == "string"
    assert f.outputs == {"a": "{{ steps.a.output }}"}
    f = parse_flow_text("name: f\noutputs: a\nsteps: [{id: a, llm: hi}]\n")
    assert f.outputs == {"result": "{{ steps.a.output }}"}


def test_retry_shorthands():
    f = parse_flow_text(
        "name: f\nsteps:\n  - {id: a, llm: hi, retry: 4}\n  - {id: b, llm: hi, retry: true}\n  - {id: c, llm: hi, retry: false}\n"
    )
    assert [s.retry for s in f.steps] == [RetrySpec(attempts=4), RetrySpec(attempts=3), RetrySpec(attempts=1)]
    assert f.steps[2].effective_retry().attempts == 1
    f = parse_flow_text("name: f\nsteps: [{id: a, llm: hi, on_error: retry}]\n")
    assert f.steps[0].effective_retry().attempts == 3


def test_needs_may_be_a_single_id_and_route_targets_a_single_step():
    f = parse_flow_text(
        "name: f\nsteps:\n  - {id: a, llm: hi}\n  - {id: r, needs: a, route: {routes: [{when: 'true', to: b}], default: c}}\n"
        "  - {id: b, llm: hi}\n  - {id: c, llm: hi}\n"
    )
    r = f.step("r")
    assert r.needs == ["a"]
    assert isinstance(r, RouteStep) and r.routes[0].to == ["b"] and r.default == ["c"]
    assert r.targets() == ["b", "c"]


# -- every step kind -------------------------------------------------------------------------

ALL_KINDS = """\
name: kinds
inputs: {topic: string, items: {type: array, default: [1, 2]}}
agents: {host: {}, a: {}, b: {}}
steps:
  - {id: draft, llm: "Write about {{ inputs.topic }}"}
  - {id: each, for_each: "{{ inputs.items }}", llm: "Item {{ item }}"}
  - {id: grid, matrix: {model: ["fake:a", "fake:b"], tone: [dry, warm]}, llm: "{{ matrix.tone }}"}
  - id: both
    parallel:
      - {id: p1, shell: "echo {{ steps.draft.output }}"}
      - {id: p2, python: {function: "mymod:fn", args: {x: "{{ steps.draft.output }}"}}}
  - {id: critics, broadcast: {agents: [a, b], aggregate: majority, weights: {a: 2}}}
  - id: refine
    loop:
      until: "{{ steps.critique.output == 'ok' }}"
      max_iterations: 3
      steps:
        - {id: critique, llm: "Critique {{ steps.draft.output }} ({{ loop.iteration }})"}
  - id: decide
    route:
      routes: [{when: "'yes' in steps.refine.output", to: publish}]
      default: discard
  - {id: publish, write_file: {path: "out/{{ run.id }}.md", content: "{{ steps.draft.output }}"}}
  - {id: discard, human: {prompt: "Discard?", input: confirm}}
  - {id: chat, needs: [publish, discard], conductor: {host: host, participants: [a, b], prompt: "Discuss"}}
  - {id: sub, flow: {flow: other, inputs: {text: "{{ steps.chat.output }}"}}}
"""


def test_every_step_kind_validates_in_one_flow():
    f = parse_flow_text(ALL_KINDS)
    kinds = {s.id: type(s) for s in f.all_steps()}
    assert kinds == {
        "draft": LlmStep, "each": LlmStep, "grid": LlmStep, "both": ParallelStep, "p1": ShellStep,
        "p2": PythonStep, "critics": BroadcastStep, "refine": LoopStep, "critique": LlmStep,
        "decide": RouteStep, "publish": WriteFileStep, "discard": HumanStep, "chat": ConductorStep,
        "sub": FlowStep,
    }  # fmt: skip
    assert sorted(registry.kinds) == sorted(
        [
            "llm",
            "shell",
            "write_file",
            "python",
            "human",
            "flow",
            "parallel",
            "broadcast",
            "route",
            "loop",
            "conductor",
            "retrieve",
        ]
    )


# -- Python API ------------------------------------------------------------------------------


def build_in_python() -> Flow:
    return Flow(
        name="kinds",
        inputs={"topic": InputSpec(type="string"), "items": InputSpec(type="array", default=[1, 2])},
        agents={"host": AgentSpec(), "a": AgentSpec(), "b": AgentSpec()},
        steps=[
            LlmStep(id="draft", prompt="Write about {{ inputs.topic }}"),
            LlmStep(id="each", for_each="{{ inputs.items }}", prompt="Item {{ item }}"),
            LlmStep(
                id="grid",
                matrix={"model": ["fake:a", "fake:b"], "tone": ["dry", "warm"]},
                prompt="{{ matrix.tone }}",
            ),
            ParallelStep(
                id="both",
                steps=[
                    ShellStep(id="p1", command="echo {{ steps.draft.output }}"),
                    PythonStep(id="p2", function="mymod:fn", args={"x": "{{ steps.draft.output }}"}),
                ],
            ),
            BroadcastStep(id="critics", agents=["a", "b"], aggregate="majority", weights={"a": 2}),
            LoopStep(
                id="refine",
                until="{{ steps.critique.output == 'ok' }}",
                max_iterations=3,
                steps=[
                    LlmStep(id="critique", prompt="Critique {{ steps.draft.output }} ({{ loop.iteration }})")
                ],
            ),
            RouteStep(
                id="decide",
                routes=[Route(when="'yes' in steps.refine.output", to=["publish"])],
                default=["discard"],
            ),
            WriteFileStep(id="publish", path="out/{{ run.id }}.md", content="{{ steps.draft.output }}"),
            HumanStep(id="discard", prompt="Discard?", input="confirm"),
            ConductorStep(
                id="chat",
                needs=["publish", "discard"],
                host="host",
                participants=["a", "b"],
                prompt="Discuss",
            ),
            FlowStep(id="sub", flow="other", inputs={"text": "{{ steps.chat.output }}"}),
        ],
    )


def test_a_flow_built_in_python_equals_the_yaml_one():
    assert build_in_python() == parse_flow_text(ALL_KINDS)
    assert build_in_python().fingerprint() == parse_flow_text(ALL_KINDS).fingerprint()


def test_steps_may_be_given_as_plain_dicts_in_python():
    f = Flow(name="f", inputs={"text": "string"}, steps=[{"id": "a", "llm": "hi {{ inputs.text }}"}])
    assert f == Flow(
        name="f", inputs={"text": InputSpec()}, steps=[LlmStep(id="a", prompt="hi {{ inputs.text }}")]
    )


def test_to_yaml_from_yaml_round_trips():
    f = build_in_python()
    text = f.to_yaml()
    assert Flow.from_yaml(text) == f
    assert Flow.from_yaml(Flow.from_yaml(text).to_yaml()).to_yaml() == text


def test_to_yaml_writes_multi_line_strings_as_blocks_and_keeps_optional_nulls():
    f = Flow(
        name="f", inputs={"note": InputSpec(default=None)}, steps=[LlmStep(id="a", prompt="line 1\nline 2\n")]
    )
    text = f.to_yaml()
    assert "prompt: |\n    line 1\n    line 2\n" in text
    assert "note:\n    type: string\n    default: null\n" in text
    back = Flow.from_yaml(text)
    assert back == f and not back.inputs["note"].is_required


def test_from_yaml_reads_a_path(tmp_path):
    p = tmp_path / "f.yaml"
    p.write_text(build_in_python().to_yaml())
    assert Flow.from_yaml(p) == build_in_python()
    assert Flow.from_yaml(str(p)) == build_in_python()


def test_from_yaml_raises_flow_validation_error_with_every_problem():
    with pytest.raises(FlowValidationError) as e:
        Flow.from_yaml("name: f\nsteps:\n  - {id: a, llm: '{{ steps.zz.output }}'}\n  - {id: a, lmm: x}\n")
    assert [d.code for d in e.value.diagnostics] == ["unknown-step", "unknown-kind", "duplicate-id"]
    assert isinstance(e.value, ValueError)
    assert str(e.value).startswith(
        "3 problems in the flow definition: <text>:3:13: steps[0].llm: unknown step 'zz'"
    )


def test_check_and_validated_find_reference_problems_in_python_flows():
    f = Flow(name="f", steps=[LlmStep(id="a", prompt="{{ steps.zz.output }}")])
    assert [d.message for d in f.check()] == ["unknown step 'zz' in template '{{ steps.zz.output }}'"]
    with pytest.raises(FlowValidationError):
        f.validated()
    assert build_in_python().validated() == build_in_python()


def test_pydantic_rejects_bad_values_in_python():
    with pytest.raises(ValueError):
        LlmStep(id="a")  # no prompt
    with pytest.raises(ValueError):
        LlmStep(id="a b", prompt="x")  # bad id
    with pytest.raises(ValueError):
        LlmStep(id="a", prompt="x", kind="shell")


def test_all_steps_and_step_lookup():
    f = build_in_python()
    assert [s.id for s in f.all_steps()][:6] == ["draft", "each", "grid", "both", "p1", "p2"]
    assert f.step("critique").kind == "llm"
    with pytest.raises(KeyError):
        f.step("nope")


# -- registry --------------------------------------------------------------------------------


def test_plugins_register_step_kinds_and_functions():
    from typing import ClassVar, Literal

    class EchoStep(StepSpec):
        KIND: ClassVar[str] = "echo_test"
        SHORTHAND: ClassVar[str | None] = "text"
        kind: Literal["echo_test"] = "echo_test"
        text: str

    try:
        register_step_kind(EchoStep)
        f = parse_flow_text("name: f\nsteps: [{id: a, echo_test: hi}]\n")
        assert isinstance(f.steps[0], EchoStep) and f.steps[0].text == "hi"
    finally:
        registry.kinds.pop("echo_test", None)

    @step_function("double_test")
    def double(x: int) -> int:
        return 2 * x

    try:
        assert registry.functions["double_test"] is double
    finally:
        registry.functions.pop("double_test", None)


def test_register_step_kind_needs_a_kind_name():
    class NoKind(StepSpec):
        pass

    with pytest.raises(ValueError, match="KIND must be set"):
        register_step_kind(NoKind)
