"""Every diagnostic code, with the exact message, key path, hint and file:line:column a user sees."""

from __future__ import annotations

from llmflow.model.spec import Flow, InputSpec
from llmflow.model.validate import validate_document, validate_inputs

from .helpers import one, problems

OK = """\
name: ok
inputs: {text: string}
agents: {critic: {model: "fake:"}}
steps:
  - id: a
    llm: "Say {{ inputs.text }}"
"""


def test_a_valid_flow_has_no_problems():
    assert problems(OK) == []


def test_yaml_syntax_error_is_located():
    d = one("name: x\nsteps: [\n")
    assert d.code == "yaml-syntax"
    assert d.message.startswith("invalid YAML: ")
    assert (d.location.file, d.location.line) == ("flow.yaml", 3)
    assert d.hint == "fix the YAML syntax"


def test_duplicate_yaml_key_is_a_yaml_problem():
    d = one("name: x\nname: y\nsteps: [{id: a, llm: hi}]\n")
    assert d.code == "yaml-syntax"
    assert d.message == "duplicate key 'name' (first at line 1)"
    assert (d.location.line, d.location.column) == (2, 1)


def test_unknown_key_in_the_flow_suggests_the_close_one():
    d = one(OK + "stepz: 1\n")
    assert d.code == "unknown-key"
    assert d.message == "unknown key 'stepz' in the flow"
    assert d.path == "stepz"
    assert d.hint == "did you mean 'steps'?"
    assert (d.location.file, d.location.line, d.location.column) == ("flow.yaml", 7, 1)
    assert d.format() == "flow.yaml:7:1: stepz: unknown key 'stepz' in the flow (hint: did you mean 'steps'?)"


def test_unknown_key_in_a_shorthand_step_points_at_the_key_as_written():
    d = one(
        """\
        name: x
        agents: {critic: {}}
        steps:
          - id: a
            llm: {prompt: hi, agnt: critic}
        """
    )
    assert d.code == "unknown-key"
    assert d.message == "unknown key 'agnt' in step 'a'"
    assert d.path == "steps[0].llm.agnt"
    assert d.hint == "did you mean 'agent'?"
    assert (d.location.line, d.location.column) == (5, 23)


def test_unknown_key_without_a_close_match_lists_the_known_keys():
    d = one("name: x\nsteps: [{id: a, llm: hi, zzzzzz: 1}]\n")
    assert d.message == "unknown key 'zzzzzz' in step 'a'"
    assert d.hint.startswith("known keys: id, description, needs, when, for_each,")


def test_missing_key():
    d = one("name: x\n")
    assert (d.code, d.message, d.path) == ("missing-key", "missing required key 'steps' in the flow", "steps")
    d = one("steps: [{id: a, llm: hi}]\n")
    assert (d.code, d.message, d.path, d.hint) == (
        "missing-key",
        "missing required key 'name' in the flow",
        "name",
        "add it",
    )
    d = one("name: x\nsteps: [{id: a, shell: {cwd: /}}]\n")
    assert (d.code, d.message, d.path) == (
        "missing-key",
        "missing required key 'command' in step 'a'",
        "steps[0].shell.command",
    )


def test_invalid_value_of_a_literal_suggests_the_close_one():
    d = one("name: x\ninputs: {n: {type: integr}}\nsteps: [{id: a, llm: hi}]\n")
    assert d.code == "invalid-value"
    assert d.message == "invalid value 'integr' for inputs.n.type"
    assert d.hint == "did you mean 'integer'?"
    assert (d.location.line, d.location.column) == (2, 14)


def test_invalid_value_of_a_wrong_type():
    d = one("name: x\nsteps: [{id: a, llm: hi, timeout: soon}]\n")
    assert (d.code, d.message, d.path) == (
        "invalid-value",
        "steps[0].timeout must be a number, got str 'soon'",
        "steps[0].timeout",
    )
    d = one("name: x\noptions: {max_concurrency: 0}\nsteps: [{id: a, llm: hi}]\n")
    assert d.message == "options.max_concurrency must be >= 1, got 0"


def test_invalid_value_of_a_union_names_every_alternative():
    d = one("name: x\nsteps: [{id: a, llm: hi, for_each: 5}]\n")
    assert d.code == "invalid-value"
    assert d.message == "steps[0].for_each must be a string or a list, got int 5"
    assert d.path == "steps[0].for_each"


def test_invalid_step_id():
    d = one("name: x\nsteps: [{id: 7up, llm: hi}]\n")
    assert (d.code, d.message, d.path) == ("invalid-value", "invalid step id '7up'", "steps[0].id")
    assert d.hint == "ids start with a letter or '_' and use only letters, digits and '_'"


def test_a_step_rule_is_reported_as_invalid_value():
    d = one("name: x\nsteps: [{id: a, kind: llm}]\n")
    assert (d.code, d.message, d.path) == (
        "invalid-value",
        "an llm step needs 'prompt' or 'messages'",
        "steps[0]",
    )


def test_unknown_kind():
    d = one("name: x\nsteps:\n  - id: a\n    kind: shel\n    command: ls\n")
    assert (d.code, d.message, d.path, d.hint) == (
        "unknown-kind",
        "unknown step kind 'shel' in step 'a'",
        "steps[0].kind",
        "did you mean 'shell'?",
    )
    assert (d.location.line, d.location.column) == (4, 5)


def test_a_step_without_a_kind_gets_the_closest_kind():
    d = one("name: x\nsteps:\n  - id: a\n    lmm: hi\n")
    assert (d.code, d.message, d.path, d.hint) == (
        "unknown-kind",
        "step 'a' has no kind",
        "steps[0]",
        "did you mean 'llm'?",
    )
    assert (d.location.line, d.location.column) == (3, 5)


def test_ambiguous_kind():
    d = one("name: x\nsteps: [{id: a, llm: hi, shell: ls}]\n")
    assert (d.code, d.message) == ("ambiguous-kind", "step 'a' has several kinds: llm, shell")
    assert d.hint == "a step does one thing; keep one kind, or split it into steps"


def test_invalid_step():
    d = one("name: x\nsteps:\n  - just text\n")
    assert d.code == "invalid-step"
    assert d.message == "step 1 must be a mapping with 'id' and a kind, got str 'just text'"
    assert (d.path, d.location.line, d.location.column) == ("steps[0]", 3, 5)


def test_steps_must_be_a_non_empty_list():
    d = one("name: x\nsteps: {a: 1}\n")
    assert (d.code, d.message) == ("invalid-value", "steps must be a list of steps, got dict")
    d = one("name: x\nsteps: []\n")
    assert (d.code, d.message) == ("invalid-value", "steps needs at least one step")


def test_a_flow_must_be_a_mapping():
    d = one("- a\n- b\n")
    assert (d.code, d.message) == ("invalid-value", "a flow must be a mapping, got list")


def test_duplicate_id_even_when_the_first_step_is_invalid():
    ds = problems(
        "name: x\nsteps:\n  - {id: a, llm: hi, bad: 1}\n  - {id: b, llm: hi}\n  - {id: a, shell: ls}\n"
    )
    dup = [d for d in ds if d.code == "duplicate-id"]
    assert len(dup) == 1
    d = dup[0]
    assert d.message == "duplicate step id 'a'"
    assert d.path == "steps[2].id"
    assert d.hint == "first used at steps[0]; ids must be unique in a flow"
    assert (d.location.line, d.location.column) == (5, 6)


def test_duplicate_id_inside_a_parallel_group():
    d = one(
        "name: x\nsteps:\n  - {id: a, llm: hi}\n  - id: g\n    parallel:\n      - {id: a, llm: again}\n",
        "duplicate-id",
    )
    assert d.path == "steps[1].parallel[0].id"


def test_unknown_step_in_needs():
    d = one("name: x\nsteps:\n  - {id: fetch, llm: hi}\n  - {id: b, llm: hi, needs: [fecth]}\n")
    assert (d.code, d.message, d.path, d.hint) == (
        "unknown-step",
        "step 'b' needs unknown step 'fecth'",
        "steps[1].needs[0]",
        "did you mean 'fetch'?",
    )
    assert (d.location.line, d.location.column) == (4, 30)


def test_unknown_step_in_a_template():
    d = one("name: x\nsteps:\n  - {id: a, llm: hi}\n  - {id: b, llm: '{{ steps.z.output }}'}\n")
    assert d.code == "unknown-step"
    assert d.message == "unknown step 'z' in template '{{ steps.z.output }}'"
    assert d.hint == "known steps: a, b"
    assert d.path == "steps[1].llm"


def test_unknown_step_in_a_route():
    d = one(
        "name: x\nsteps:\n  - id: r\n    route: {routes: [{when: 'true', to: pubish}]}\n  - {id: publish, llm: hi}\n"
    )
    assert (d.code, d.message, d.hint) == (
        "unknown-step",
        "route 'r' goes to unknown step 'pubish'",
        "did you mean 'publish'?",
    )
    assert d.path == "steps[0].route.routes[0].to[0]"


def test_needs_across_a_loop_boundary_is_reported():
    text = """\
    name: x
    steps:
      - {id: a, llm: hi}
      - id: lp
        loop:
          until: "true"
          steps:
            - {id: inner, llm: hi, needs: [a]}
      - {id: after, llm: hi, needs: [inner]}
    """
    ds = [d for d in problems(text) if d.code == "unknown-step"]
    assert [d.message for d in ds] == [
        "step 'inner' needs 'a', which is inside the top level of the flow, not in loop 'lp'",
        "step 'after' needs 'inner', which is inside loop 'lp', not in the top level of the flow",
    ]
    assert ds[1].hint == "steps inside a loop repeat; need the loop 'lp' instead"


def test_unknown_agent():
    d = one("name: x\nagents: {critic: {}}\nsteps: [{id: a, llm: {prompt: hi, agent: critc}}]\n")
    assert (d.code, d.message, d.hint, d.path) == (
        "unknown-agent",
        "step 'a' uses unknown agent 'critc'",
        "did you mean 'critic'?",
        "steps[0].llm.agent",
    )
    d = one("name: x\nsteps: [{id: a, broadcast: {agents: [x]}}]\n")
    assert (d.message, d.hint) == ("step 'a' uses unknown agent 'x'", "define it under 'agents:'")
    d = one(
        "name: x\nagents: {a: {}}\nsteps: [{id: c, conductor: {host: boss, participants: [a], prompt: go}}]\n"
    )
    assert d.hint == "known agents: a; or use host: sequence"


def test_unknown_input():
    d = one("name: x\ninputs: {text: string}\nsteps: [{id: a, llm: '{{ inputs.txt }}'}]\n")
    assert (d.code, d.message, d.hint) == (
        "unknown-input",
        "unknown input 'txt' in template '{{ inputs.txt }}'",
        "did you mean 'text'?",
    )
    d = one("name: x\nsteps: [{id: a, llm: '{{ inputs.topic }}'}]\n")
    assert d.hint == "declare it under 'inputs:', e.g. 'inputs: {topic: string}'"


def test_unknown_input_in_a_condition():
    d = one("name: x\ninputs: {n: integer}\nsteps: [{id: a, llm: hi, when: 'inputs.m > 1'}]\n")
    assert (d.code, d.message, d.path) == (
        "unknown-input",
        "unknown input 'm' in condition 'inputs.m > 1'",
        "steps[0].when",
    )


def test_unknown_name():
    d = one("name: x\nsteps: [{id: a, llm: '{{ input.text }}'}]\n")
    assert (d.code, d.message, d.hint) == (
        "unknown-name",
        "unknown name 'input' in template '{{ input.text }}'",
        "did you mean 'inputs'?",
    )
    d = one("name: x\nsteps: [{id: a, llm: '{{ item }}'}]\n")
    assert d.message == "'item' used in step 'a', which has no for_each"
    d = one("name: x\nsteps: [{id: a, llm: '{{ matrix.m }}', matrix: {model: ['fake:a']}}]\n")
    assert (d.message, d.hint) == (
        "unknown matrix key 'm' in template '{{ matrix.m }}'",
        "matrix keys: model",
    )
    d = one("name: x\nsteps: [{id: a, llm: '{{ loop.iteration }}'}]\n")
    assert d.message == "'loop' used in step 'a', which is not inside a loop"


def test_jinja_globals_and_for_loops_are_not_unknown_names():
    assert (
        problems(
            "name: x\nsteps: [{id: a, llm: '{% for x in range(3) %}{{ loop.index }}{{ x }}{% endfor %}'}]\n"
        )
        == []
    )


def test_not_upstream():
    d = one("name: x\nsteps:\n  - {id: a, llm: '{{ steps.b.output }}'}\n  - {id: b, llm: hi}\n")
    assert d.code == "not-upstream"
    assert d.message == "step 'a' reads step 'b', which does not run before it"
    assert d.hint == "add 'b' to the needs of 'a'"


def test_parallel_siblings_do_not_run_before_each_other():
    d = one(
        "name: x\nsteps:\n  - id: g\n    parallel:\n      - {id: a, llm: hi}\n      - {id: b, llm: '{{ steps.a.output }}'}\n"
    )
    assert d.code == "not-upstream"
    assert d.message == "step 'b' reads step 'a', which does not run before it"


def test_cycle():
    d = one("name: x\nsteps:\n  - {id: a, llm: hi, needs: [b]}\n  - {id: b, llm: hi, needs: [a]}\n")
    assert (d.code, d.message, d.hint) == (
        "cycle",
        "steps form a cycle: a -> b -> a",
        "use a 'loop' step to repeat steps",
    )
    assert (d.path, d.location.line) == ("steps[0].needs", 3)


def test_a_cycle_through_the_pipeline_order_explains_the_implicit_need():
    d = one("name: x\nsteps:\n  - {id: a, llm: hi, needs: [b]}\n  - {id: b, llm: hi}\n")
    assert d.message == "steps form a cycle: a -> b -> a"
    assert (
        d.hint
        == "'b' has no 'needs', so it runs after the step before it ('a'); give 'b' its own 'needs', or use a 'loop' step"
    )


def test_every_cycle_is_reported():
    ds = problems(
        "name: x\nsteps:\n  - {id: a, llm: hi, needs: [b]}\n  - {id: b, llm: hi, needs: [a]}\n  - {id: c, llm: hi, needs: [d]}\n  - {id: d, llm: hi, needs: [c]}\n"
    )
    assert [d.message for d in ds] == ["steps form a cycle: a -> b -> a", "steps form a cycle: c -> d -> c"]


def test_a_step_needing_itself():
    d = one("name: x\nsteps: [{id: a, llm: hi, needs: [a]}]\n")
    assert (d.code, d.message) == ("cycle", "step 'a' needs itself")


def test_loops_are_not_cycles():
    text = """\
    name: x
    steps:
      - id: refine
        loop:
          until: "{{ steps.critique.output == 'ok' }}"
          steps:
            - {id: draft, llm: "{{ steps.critique.output if loop.iteration > 0 else 'start' }}"}
            - {id: critique, llm: "{{ steps.draft.output }}"}
    """
    assert problems(text) == []


def test_loop_body_steps_are_not_visible_outside_their_loop():
    text = """\
    name: x
    steps:
      - id: lp
        loop: {until: "steps.b.output == 'ok'", steps: [{id: b, llm: hi}]}
      - {id: after, llm: "{{ steps.b.output }} {{ steps.lp.output }}"}
    """
    d = one(text)
    assert (d.code, d.message) == ("not-upstream", "step 'after' reads step 'b', which is inside loop 'lp'")
    assert d.hint == "outside a loop, read its result: steps.lp.output (the last body step's output)"


def test_bad_expression():
    d = one("name: x\nsteps: [{id: a, llm: '{{ inputs.x | upper }'}]\n")
    assert d.code == "bad-expression"
    assert d.message == "syntax error: unexpected '}' in template '{{ inputs.x | upper }'"
    assert d.hint == "check brackets and quotes in the expression"
    d = one("name: x\nsteps: [{id: a, llm: hi, when: 'steps.a.output =='}]\n")
    assert d.message == "syntax error: unexpected 'end of expression' in condition 'steps.a.output =='"
    d = one("name: x\nsteps: [{id: a, llm: '{{ 1 | uper }}'}]\n")
    assert (d.message, d.hint) == (
        "unknown filter 'uper' in template '{{ 1 | uper }}'",
        "did you mean 'upper'?",
    )


def test_unsafe_expression_fails_validation():
    d = one("name: x\nsteps: [{id: a, llm: \"{{ ''.__class__ }}\"}]\n")
    assert d.code == "unsafe-expression"
    assert d.message == "unsafe attribute '__class__' in template \"{{ ''.__class__ }}\""
    assert d.hint.startswith("templates may only read values")
    d = one("name: x\nsteps: [{id: a, llm: hi, when: \"x['__globals__']\"}]\n", "unsafe-expression")
    assert d.path == "steps[0].when"


def test_a_model_is_not_a_template():
    d = one(
        "name: x\nsteps: [{id: a, llm: {prompt: hi, model: '{{ matrix.model }}'}, matrix: {model: ['fake:a', 'fake:b']}}]\n"
    )
    assert d.code == "invalid-value"
    assert d.message == "step 'a': 'model' is not a template ('{{ matrix.model }}')"
    assert d.hint == "to run one variant per model, use 'matrix: {model: [provider:a, provider:b]}'"


def test_a_model_names_its_provider():
    ds = problems(
        "name: x\nmodel: gpt-4o\nagents: {a: {model: o4mini}}\nsteps: [{id: s, llm: {prompt: hi, model: 'fake:'}, matrix: {model: ['fake:a', gemini]}}]\n"
    )
    assert [(d.code, d.message, d.path) for d in ds] == [
        ("invalid-value", "flow 'x': model 'gpt-4o' does not name a provider", "model"),
        ("invalid-value", "agent 'a': model 'o4mini' does not name a provider", "agents.a.model"),
        ("invalid-value", "step 's': model 'gemini' does not name a provider", "steps[0].matrix.model[1]"),
    ]
    assert (
        ds[0].hint
        == "write it as provider:model, e.g. openai:gpt-4o-mini, local:gemma3-270m or fake: (see docs/models.md)"
    )


def test_every_problem_is_reported_at_once_in_file_order():
    text = """\
    name: x
    inputs: {text: strin}
    stepz: 1
    steps:
      - {id: a, llm: "{{ inputs.text }} {{ steps.nope.output }}"}
      - {id: b, lmm: hi}
      - {id: c, llm: hi, needs: [zz]}
    """
    ds = problems(text)
    assert [(d.code, d.location.line) for d in ds] == [
        ("invalid-value", 2),
        ("unknown-key", 3),
        ("unknown-step", 5),
        ("unknown-kind", 6),
        ("unknown-step", 7),
    ]


def test_an_invalid_input_does_not_also_make_its_references_unknown():
    ds = problems("name: x\ninputs: {text: {type: strng}}\nsteps: [{id: a, llm: '{{ inputs.text }}'}]\n")
    assert [d.code for d in ds] == ["invalid-value"]


def test_validate_document_never_raises_for_non_mapping_documents():
    for doc in (None, 1, "x", [], [1]):
        flow, ds = validate_document(doc)
        assert flow is None and ds and ds[0].code == "invalid-value"


def test_diagnostics_serialise_to_dicts():
    d = one("name: x\nstepz: 1\nsteps: [{id: a, llm: hi}]\n")
    assert d.to_dict() == {
        "code": "unknown-key",
        "message": "unknown key 'stepz' in the flow",
        "path": "stepz",
        "hint": "did you mean 'steps'?",
        "location": {"file": "flow.yaml", "line": 2, "column": 1, "origin": None},
        "severity": "error",
    }


# -- run inputs ------------------------------------------------------------------------------

FLOW = Flow(
    name="f",
    inputs={
        "text": InputSpec(type="string"),
        "n": InputSpec(type="integer", default=3),
        "ratio": InputSpec(type="number", default=0.5),
        "flag": InputSpec(type="boolean", default=False),
        "tags": InputSpec(type="array", default=[]),
        "mode": InputSpec(type="string", enum=["fast", "slow"], default="fast"),
        "opt": InputSpec(type="string", default=None),
    },
    steps=[{"id": "a", "llm": "hi"}],
)


def test_missing_input():
    values, ds = validate_inputs(FLOW, {})
    assert [(d.code, d.message, d.path, d.hint) for d in ds] == [
        (
            "missing-input",
            "missing required input 'text' (string)",
            "inputs.text",
            "add 'text' to the run's inputs",
        )
    ]


def test_wrong_type():
    _, ds = validate_inputs(FLOW, {"text": "x", "n": "three"})
    assert [(d.code, d.message, d.hint) for d in ds] == [
        ("wrong-type", "input 'n' must be an integer, got str 'three'", "give an integer")
    ]
    _, ds = validate_inputs(FLOW, {"text": "x", "n": True}, coerce_strings=False)
    assert ds[0].message == "input 'n' must be an integer, got bool True"


def test_command_line_strings_are_coerced_and_defaults_filled():
    values, ds = validate_inputs(FLOW, {"text": "x", "n": "4", "ratio": "1", "flag": "yes", "tags": '["a"]'})
    assert ds == []
    assert values == {
        "text": "x",
        "n": 4,
        "ratio": 1.0,
        "flag": True,
        "tags": ["a"],
        "mode": "fast",
        "opt": None,
    }


def test_unknown_input_and_enum():
    _, ds = validate_inputs(FLOW, {"text": "x", "txt": "y", "mode": "fsat"})
    assert [(d.code, d.message, d.hint) for d in ds] == [
        ("unknown-input", "flow 'f' has no input 'txt'", "did you mean 'text'?"),
        ("invalid-value", "input 'mode' must be one of ['fast', 'slow'], got 'fsat'", "did you mean 'fast'?"),
    ]
