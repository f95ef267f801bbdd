"""Which templates the event loop may evaluate itself (``bounded``): those whose work is
linear in the values they read. Anything that loops, calls, multiplies sizes or uses a
filter that is not known to be linear goes to a worker thread (engine/runner.py)."""

from __future__ import annotations

from typing import Any

import pytest

from llmflow.model.template_bounds import bounded


@pytest.mark.parametrize(
    "text",
    [
        "plain text, no template",
        "{{ steps.a.output }}",
        "Verdict: {{ steps.critics.output }} ({{ steps.classify.output | trim | lower }})",
        "{{ steps.save.output.files[0] if steps.save.output else none }}",
        "{{ inputs.items[1:3] | join(', ') }}",
        "{{ steps.a.output ~ '!' }}",
        "{{ {'k': inputs.q, 'n': inputs.n + 1} | tojson }}",
        "{{ inputs.xs | length }}",
    ],
)
def test_templates_that_only_read_values_are_bounded(text: str) -> None:
    assert bounded(text)


@pytest.mark.parametrize(
    "expr",
    [
        "steps.classify.output | lower | trim != 'other'",
        "'ok' in steps.critique.output",
        "inputs.n > 5 and not (inputs.flag is defined and inputs.flag)",
        "steps.a.status == 'COMPLETED' or -inputs.n < 0",
    ],
)
def test_conditions_that_only_compare_values_are_bounded(expr: str) -> None:
    assert bounded(expr, condition=True)


@pytest.mark.parametrize(
    ("text", "condition"),
    [
        ("{% for c in steps.a.output %}{{ c }}{% endfor %}", False),  # a loop
        ("{{ range(inputs.n) | list }}", False),  # a call
        ("steps.a.output.split() | length > 2", True),  # a method call
        ("{{ 'a' * 1000000 }}", False),  # multiplies a size
        ("2 ** inputs.n > 3", True),
        ("{{ inputs.text | title }}", False),  # a filter not known to be linear (slow near the size cap)
        ("{{ inputs.text | replace('a', 'aaaa') }}", False),
        ("{% set x = 1 %}{{ x }}", False),  # statements
        ("{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}", False),
        ("{{ unclosed", False),  # does not parse: evaluated (and reported) the careful way
        ("a b", True),  # not one expression
    ],
)
def test_anything_that_may_run_long_is_not_bounded(text: str, condition: bool) -> None:
    assert not bounded(text, condition=condition)


def test_a_step_renders_a_bounded_template_in_place_and_any_other_in_a_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import asyncio

    from llmflow.model.expressions import render_async, render_value_async

    hops: list[Any] = []
    real = asyncio.to_thread

    async def counting(fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        hops.append(args[0])
        return await real(fn, *args, **kwargs)

    monkeypatch.setattr(asyncio, "to_thread", counting)
    ctx = {"steps": {"a": {"output": "  Hello  "}}, "inputs": {"n": 3}}

    async def go() -> list[Any]:
        return [
            await render_async("{{ steps.a.output | trim | upper }}!", ctx),
            await render_value_async(
                {"x": "{% if inputs.n > 2 %}big{% endif %}", "y": ["{{ inputs.n }}"]}, ctx
            ),
            await render_async("{% for i in range(inputs.n) %}{{ i }}{% endfor %}", ctx),
            await render_value_async({"z": "{{ steps.a.output.split() }}"}, ctx),
        ]

    assert asyncio.run(go()) == ["HELLO!", {"x": "big", "y": [3]}, "012", {"z": ["Hello"]}]
    assert hops == [
        "{% for i in range(inputs.n) %}{{ i }}{% endfor %}",
        {"z": "{{ steps.a.output.split() }}"},
    ]
