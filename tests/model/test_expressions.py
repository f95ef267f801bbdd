"""The expression language: rendering, native values, conditions, the sandbox, analysis."""

from __future__ import annotations

import pytest

from llmflow.errors import TemplateError
from llmflow.model.expressions import evaluate, is_template, render, render_value, truthy
from llmflow.model.template_analysis import Reference, analyse

CTX = {
    "inputs": {"text": "Hello", "n": 3, "items": [1, 2]},
    "steps": {"a": {"output": "yes", "outputs": ["x", "y"]}},
    "matrix": {"model": "fake:a"},
    "run": {"id": "r1"},
}


def test_render_templates_and_leave_plain_text_alone():
    assert render("{{ inputs.text }}, {{ run.id }}!", CTX) == "Hello, r1!"
    assert render("no braces {here}", CTX) == "no braces {here}"
    assert render("{{ steps.a.outputs | tojson }}", CTX) == '["x", "y"]'
    assert render("{{ {'k': 'é'} | tojson }}", CTX) == '{"k": "é"}'
    assert render("line\n", CTX) == "line\n"
    assert render("{% for x in inputs.items %}[{{ loop.index }}:{{ x }}]{% endfor %}", CTX) == "[1:1][2:2]"
    assert is_template("{{ x }}") and is_template("{% if x %}{% endif %}") and not is_template("x")


def test_render_value_keeps_native_types_for_a_single_expression():
    assert render_value("{{ inputs.items }}", CTX) == [1, 2]
    assert render_value("  {{ inputs.n + 1 }} ", CTX) == 4
    assert render_value("n={{ inputs.n }}", CTX) == "n=3"
    assert render_value({"a": ["{{ inputs.n }}", 5], "b": "{{ steps.a.output }}"}, CTX) == {
        "a": [3, 5],
        "b": "yes",
    }
    assert render_value(7, CTX) == 7


def test_conditions_are_bare_expressions_or_one_template():
    assert truthy("steps.a.output == 'yes'", CTX)
    assert truthy("{{ steps.a.output == 'yes' }}", CTX)
    assert not truthy("inputs.n > 5", CTX)
    assert evaluate("inputs.items | length", CTX) == 2


def test_strict_undefined_names_what_is_available():
    with pytest.raises(TemplateError) as e:
        render("{{ inputs.txt }}", CTX)
    assert (
        e.value.message
        == "undefined value in '{{ inputs.txt }}': no key 'txt' here (available: text, n, items)"
    )
    assert e.value.hint.startswith("check the name; available: inputs, steps.<id>.output")
    with pytest.raises(TemplateError) as e:
        render("{{ nothing }}", CTX)
    assert e.value.message == "undefined value in '{{ nothing }}': 'nothing' is undefined"
    with pytest.raises(TemplateError) as e:
        evaluate("inputs.items[5]", CTX)
    assert e.value.message == "undefined value in 'inputs.items[5]': index 5 is out of range for a list of 2"


@pytest.mark.parametrize(
    "text",
    [
        "{{ ''.__class__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ lipsum.__globals__ }}",
        "{{ cycler.__init__.__globals__.os }}",
        "{{ (lipsum | attr('__globals__')) }}",
        "{{ '{0.__class__}'.format(1) }}",
        "{{ inputs.items.append(3) }}",
        "{{ self._TemplateReference__context }}",
    ],
)
def test_the_sandbox_blocks_escapes_at_render_time(text):
    with pytest.raises(TemplateError) as e:
        render(text, {"inputs": {"items": [1]}})
    assert e.value.message.startswith("unsafe expression in ")
    assert "is unsafe" in e.value.message
    assert e.value.hint.startswith("templates may only read values")


def test_the_sandbox_refuses_huge_values():
    with pytest.raises(
        TemplateError,
        match=r"value too large in .*'\*' would build a value larger than 10000000 characters/items \(LLMFLOW_TEMPLATE_MAX_OUTPUT\)",
    ):
        render("{{ 'a' * 100000000 }}", {})
    with pytest.raises(TemplateError, match=r"'\*\*' would build an integer"):
        evaluate("2 ** 100000", {})
    assert render("{{ 'ab' * 3 }}{{ 2 ** 10 }}", {}) == "ababab1024"


def test_syntax_errors_at_render_time():
    with pytest.raises(TemplateError) as e:
        render("{{ x }", {})
    assert e.value.message == "syntax error in '{{ x }': unexpected '}'"


def test_analyse_finds_references():
    a = analyse(
        "{{ inputs.text }} {{ steps.a.output }} {{ steps['b'].output }} {{ item }} {% set y = 1 %}{{ y }}"
    )
    assert a.error is None
    assert a.references == [
        Reference("inputs", "text"),
        Reference("item", None),
        Reference("steps", "a"),
        Reference("steps", "b"),
    ]
    assert analyse("x.y and z", condition=True).references == [Reference("x", "y"), Reference("z", None)]


@pytest.mark.parametrize(
    ("text", "condition", "error"),
    [
        ("{{ x.__class__ }}", False, "unsafe attribute '__class__'"),
        ("{{ x['_private'] }}", False, "unsafe attribute '_private'"),
        ("{{ x | attr('__dict__') }}", False, "unsafe attribute in 'attr' filter"),
        ("{{ x | nope }}", False, "unknown filter 'nope'"),
        ("{{ x is nope }}", False, "unknown test 'nope'"),
        ("{{ x", False, "syntax error: unexpected end of template, expected 'end of print statement'."),
        ("a ==", True, "syntax error: unexpected 'end of expression'"),
        ("a b", True, "syntax error: a condition is one expression; unexpected 'b' after it"),
        (
            "{{ a }} and {{ b }}",
            True,
            "syntax error: a condition is one expression; unexpected '}}' after it",
        ),
        ("", True, "syntax error: empty expression"),
    ],
)
def test_analyse_reports_problems_without_rendering(text, condition, error):
    assert analyse(text, condition=condition).error == error
