"""Resource limits (model/limits.py, model/sandbox.py): templates stop at their time and
size caps, flow documents at their size, nesting and step-count limits; each with a clear
message naming the setting. No timed assertions: a broken cap shows up as a hang that
pytest-timeout ends."""

from __future__ import annotations

import asyncio
import json

import pytest

from llmflow.errors import FlowValidationError, TemplateError
from llmflow.model.expressions import evaluate, render, render_async, render_value
from llmflow.model.limits import Limits, using
from llmflow.model.loader import load_flow, parse_flow_text
from llmflow.model.validate import validate_document

# the 150-byte template of issue 14 that froze a server for 32 s
NESTED_RANGES = "{% for a in range(9999) %}{% for b in range(9999) %}{% for c in range(9999) %}{{ a }}{% endfor %}{% endfor %}{% endfor %}"


def test_the_nested_range_template_of_issue_14_stops_at_the_time_cap():
    assert len(NESTED_RANGES) <= 150
    with using(Limits(template_seconds=0.3)), pytest.raises(TemplateError) as e:
        render(NESTED_RANGES, {})
    assert "took too long" in e.value.message and "LLMFLOW_TEMPLATE_TIMEOUT" in e.value.message


@pytest.mark.parametrize(
    "text",
    [
        "{% for a in range(9999) %}{% for b in range(9999) %}{% endfor %}{% endfor %}",  # loops that output nothing
        "{% macro f(n) %}{% if n %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}{% endmacro %}{{ f(60) }}",  # calls, no loop
        "{% for a in range(9999) %}{% for b in range(9999) %}{% if a == b %}{% endif %}{% endfor %}{% endfor %}",
    ],
)
def test_any_long_running_template_stops_at_the_time_cap(text: str):
    with using(Limits(template_seconds=0.2)), pytest.raises(TemplateError, match="took too long"):
        render(text, {})


def test_conditions_and_for_each_evaluated_by_the_scheduler_have_the_same_caps():
    # the scheduler calls evaluate() as it always did: the caps apply without any change there
    with using(Limits(template_seconds=0.2)), pytest.raises(TemplateError, match="took too long"):
        evaluate(
            "range(9999) | map('string') | map('center', 400) | map('wordwrap', 3) | map('length') | sum > 0",
            {},
        )
    with pytest.raises(
        TemplateError, match=r"range\(\) of 100000 items is longer than 10000 \(LLMFLOW_TEMPLATE_MAX_RANGE\)"
    ):
        evaluate("{{ range(100000) | list }}", {})
    assert evaluate("{{ range(3) | list }}", {}) == [0, 1, 2]


AMPLIFIERS = [
    "{{ 'x' * 100000000 }}",
    "{{ ['x'] * 100000000 }}",
    "{{ ['x' * 1000000] * 100 }}",  # few items, each large: counted deeply
    "{{ 'x'|center(100000000) }}",
    "{{ 'x'.ljust(100000000) }}",
    "{{ 'x'.zfill(100000000) }}",
    "{{ '%0100000000d' % 1 }}",
    "{{ '%*d' % (100000000, 1) }}",
    "{{ '{:>100000000}'.format(1) }}",
    "{{ '{:{w}}'.format(1, w=100000000) }}",
    "{{ '%s'|format('x') ~ ('x' * 6000000)|replace('x', 'yy') }}",
    "{{ ('x' * 6000000).replace('x', 'yy') }}",
    "{{ (['x' * 1000000] * 9)|join('xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx') ~ ('x' * 5000000) }}",
    "{% set a = 'x' * 4000000 %}{% set b = a ~ a %}{{ b ~ b }}",
    "{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s | length }}",
    "{% set s %}{% for i in range(9999) %}{% for j in range(9999) %}{{ 'y' * 1000 }}{% endfor %}{% endfor %}{% endset %}{{ s | length }}",
    "{{ [1]|batch(100000000, 'x')|list }}",
    "{{ lipsum(100000, max=100000) }}",
    "{{ 2 ** 100000 }}",
    "{{ range(100000) | list }}",
]


@pytest.mark.parametrize("text", AMPLIFIERS)
def test_templates_cannot_build_huge_values(text: str):
    with pytest.raises(TemplateError) as e:
        render(text, {})
    assert e.value.message.startswith("value too large in "), e.value.message
    assert "LLMFLOW_TEMPLATE_MAX" in e.value.message or "'**'" in e.value.message


def test_filters_written_in_python_take_bounded_inputs():
    # one call the deadline cannot interrupt: 8 MB through textwrap took 6 s
    with pytest.raises(TemplateError, match="the filter 'wordwrap' takes at most 300000 characters"):
        evaluate("('x ' * 4000000) | wordwrap(2) | length", {})
    assert evaluate("('x ' * 1000) | wordwrap(10) | length", {}) > 0


def test_ordinary_templates_are_untouched_by_the_caps():
    ctx = {
        "inputs": {"items": ["a", "b"], "n": 3, "big": "z" * 2_000_000},
        "steps": {"s": {"output": {"k": 1}}},
    }
    text = "{% for i in inputs['items'] %}{{ loop.index }}:{{ i | upper }} {% endfor %}{{ '%03d' % inputs.n }} {{ '{:>5}'.format('x') }} {{ steps.s.output | tojson }} {{ inputs.big | length }}"
    assert render(text, ctx) == '1:A 2:B 003     x {"k": 1} 2000000'
    assert render_value({"a": "{{ inputs['items'] }}", "b": ["{{ inputs.n + 1 }}"]}, ctx) == {
        "a": ["a", "b"],
        "b": [4],
    }
    assert len(render("{{ inputs.big }}{{ inputs.big }}", ctx)) == 4_000_000


def test_the_output_cap_counts_everything_a_render_produces():
    with using(Limits(template_output=1000)):
        assert len(render("{{ 'x' * 999 }}", {})) == 999
        with pytest.raises(TemplateError, match="output would exceed 1000 characters"):
            render("{% for i in range(20) %}{{ 'x' * 60 }}{% endfor %}", {})


def test_rendering_off_the_event_loop_keeps_the_runs_limits():
    async def main() -> tuple[str, str]:
        with using(Limits(template_range=5)):
            ok = await render_async("{{ range(5) | list }}", {})
            try:
                await render_async("{{ range(6) | list }}", {})
            except TemplateError as exc:
                return ok, exc.message
        return ok, ""

    ok, err = asyncio.run(main())
    assert ok == "[0, 1, 2, 3, 4]" and "longer than 5" in err


# -- flow documents --------------------------------------------------------------------------------


def _nested_parallel(depth: int) -> dict:
    step: dict = {"id": "leaf", "llm": {"prompt": "x"}}
    for i in range(depth):
        step = {"id": f"p{i}", "parallel": [step]}
    return {"name": "deep", "steps": [step]}


def test_300_nested_parallel_groups_get_a_diagnostic_not_a_recursion_error(tmp_path):
    flow, diags = validate_document(_nested_parallel(300))
    assert flow is None and [d.code for d in diags] == ["too-deep"]
    assert "LLMFLOW_MAX_STEP_DEPTH" in diags[0].message
    text = "name: d\nsteps:\n  - " + "{id: p, parallel: [" * 300 + "{id: leaf, llm: x}" + "]}" * 300 + "\n"
    f = tmp_path / "deep.yaml"
    f.write_text(text)
    with pytest.raises(FlowValidationError) as e:
        load_flow(f)
    assert [d.code for d in e.value.diagnostics] == ["too-deep"] and e.value.diagnostics[0].location.line == 3
    with pytest.raises(FlowValidationError, match="LLMFLOW_MAX_DOCUMENT_DEPTH"):
        parse_flow_text(text)


def test_5000_nested_maps_get_a_diagnostic(tmp_path):
    text = "name: m\nsteps: [{id: a, llm: x}]\nparameters: " + "{a: " * 5000 + "1" + "}" * 5000 + "\n"
    f = tmp_path / "maps.yaml"
    f.write_text(text)
    with pytest.raises(FlowValidationError) as e:
        load_flow(f)
    d = e.value.diagnostics[0]
    assert d.code == "too-deep" and "more than 100 levels deep" in d.message and d.location.line == 3
    deep: dict = {"a": 1}
    for _ in range(5000):
        deep = {"a": deep}
    flow, diags = validate_document({"name": "m", "steps": [{"id": "a", "llm": "x"}], "parameters": deep})
    assert flow is None and diags and diags[0].code in ("too-deep", "invalid-value")


def test_steps_per_flow_are_capped():
    doc = {"name": "many", "steps": [{"id": f"s{i}", "llm": "x"} for i in range(30)]}
    with using(Limits(flow_steps=20)):
        flow, diags = validate_document(doc)
    assert (
        flow is None
        and [d.code for d in diags] == ["too-large"]
        and "30 steps, more than 20 (LLMFLOW_MAX_STEPS)" in diags[0].message
    )
    assert validate_document(doc)[0] is not None


def test_flow_documents_are_capped_in_size():
    text = "name: big\nsteps:\n" + "".join(f"  - {{id: s{i}, llm: '{'x' * 80}'}}\n" for i in range(200))
    with (
        using(Limits(flow_bytes=5000)),
        pytest.raises(FlowValidationError, match=r"more than 5000 \(LLMFLOW_MAX_FLOW_BYTES\)"),
    ):
        parse_flow_text(text)
    assert parse_flow_text(text).name == "big"


@pytest.mark.timeout(120)
def test_validation_is_linear_enough_for_20000_steps(tmp_path):
    # a chain where each step reads the one before: the quadratic cases of issue 14
    # (upstream sets, source-map scans, Hydra parsing the file three times) all show here
    lines = ["name: big", "inputs: {t: string}", "steps:"]
    lines += [
        f'  - {{id: s{i}, llm: {{prompt: "y {{{{ steps.s{i - 1}.output }}}}"}}}}'
        if i
        else '  - {id: s0, llm: {prompt: "x {{ inputs.t }}"}}'
        for i in range(20_000)
    ]
    f = tmp_path / "big.yaml"
    f.write_text("\n".join(lines) + "\n")
    with using(Limits(flow_steps=20_000)):
        flow = load_flow(f).flow
    assert len(flow.steps) == 20_000
    with pytest.raises(FlowValidationError, match="20000 steps, more than 5000"):
        load_flow(f)


# -- YAML 1.1 booleans --------------------------------------------------------------------------------

RETRY_ON = (
    "name: r\nsteps:\n  - id: a\n    llm: {prompt: x}\n    retry: {attempts: 2, on: [timeout, rate_limit]}\n"
)


def test_retry_on_works_in_plain_yaml_text_files_and_composed_files(tmp_path):
    assert parse_flow_text(RETRY_ON).steps[0].retry.on == ["timeout", "rate_limit"]
    f = tmp_path / "flow.yaml"
    f.write_text(RETRY_ON)
    assert load_flow(f).flow.steps[0].retry.on == ["timeout", "rate_limit"]
    # through Hydra (an interpolation makes it compose): the source map says 'on' was written
    f.write_text(RETRY_ON.replace("name: r", "name: r\nmodel: ${oc.env:LLMFLOW_NO_SUCH_VAR,fake:}"))
    loaded = load_flow(f)
    assert loaded.flow.steps[0].retry.on == ["timeout", "rate_limit"] and loaded.flow.model == "fake:"
    # values keep YAML's reading: a yes is still true
    assert (
        parse_flow_text(
            "name: r\noptions: {human_in_loop: no}\nsteps: [{id: a, llm: x}]\n"
        ).options.human_in_loop
        is False
    )
    assert json.loads(json.dumps(load_flow(f).record()))["flow"]["steps"][0]["retry"]["on"] == [
        "timeout",
        "rate_limit",
    ]
