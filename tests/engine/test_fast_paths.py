"""The engine's fast paths give the same results as the slow ones they skip (issue 10):
plain look-up templates without Jinja, a run written with its first events, the scheduler's
template evaluations off the event loop, and what child runs and forks inherit."""

from __future__ import annotations

import asyncio

import pytest

from llmflow.engine.events import EventType as E
from llmflow.engine.state import plan_flow
from llmflow.model.expressions import lookup_value, render, render_lookups, render_value
from llmflow.model.loader import parse_flow_text
from llmflow.runtime import RunRequest

CTX = {
    "inputs": {"q": "hi", "n": 3, "f": 1.5, "b": True, "z": None, "l": [1, "two"], "d": {"k": "v"}},
    "steps": {"a": {"output": "out of a", "outputs": []}},
    "run": {"id": "r1"},
}


@pytest.mark.parametrize(
    "text",
    [
        "{{ inputs.q }}",
        "{{inputs.n}} and {{ inputs.f }}, {{ inputs.b }} {{ inputs.z }}\n",
        "Say: {{ steps.a.output }} (run {{ run.id }})",
        "{{ inputs.l[1] }}",
        "no template at all }}",
    ],
)
def test_plain_look_ups_render_as_jinja_does(text):
    assert render_lookups(text, CTX) == render(text, CTX)


@pytest.mark.parametrize(
    "text",
    [
        "{{ inputs.q | upper }}",  # a filter
        "{{ inputs.l }}",  # not a scalar: Jinja's rendering of a list
        "{{ inputs.items }}",  # a dict attribute Jinja would look up first
        "{{ inputs.l[7] }}",  # out of range: Jinja's error message
        "{{ nope }}",  # undefined: Jinja's error message
        "{% if inputs.b %}x{% endif %}",
        "{{- inputs.q }}",
    ],
)
def test_anything_else_is_left_to_jinja(text):
    assert render_lookups(text, CTX) is None


def test_a_whole_look_up_keeps_the_values_type_as_render_value_does():
    value = {"xs": "{{ inputs.l }}", "d": "{{ inputs.d }}", "s": ["{{ inputs.q }}!", 4]}
    assert (
        lookup_value(value, CTX)
        == render_value(value, CTX)
        == {"xs": [1, "two"], "d": {"k": "v"}, "s": ["hi!", 4]}
    )


def test_only_flows_whose_decisions_may_run_long_templates_are_decided_off_the_event_loop():
    def evaluates(text: str) -> bool:
        return plan_flow(parse_flow_text(text)).evaluates

    # templates that only read, compare and test values are evaluated on the loop
    assert not evaluates("name: p\ninputs: {q: string}\nsteps:\n  - id: a\n    llm: '{{ inputs.q }}'\n")
    assert not evaluates(
        "name: w\nsteps:\n  - id: a\n    llm: x\n    when: \"1 == 1 and 'a' | upper == 'A'\"\n"
    )
    assert not evaluates("name: e\nsteps:\n  - id: a\n    llm: '{{ item }}'\n    for_each: '{{ [1, 2] }}'\n")
    assert not evaluates(
        "name: o\nsteps:\n  - id: a\n    llm: x\noutputs:\n  r: '{{ steps.a.output | trim if steps.a.output else none }}'\n"
    )
    # anything that loops, calls or multiplies may run until its time cap: off the loop
    assert evaluates(
        "name: r\ninputs: {n: integer}\nsteps:\n  - id: a\n    llm: '{{ item }}'\n    for_each: '{{ range(inputs.n) | list }}'\n"
    )
    assert evaluates("name: m\nsteps:\n  - id: a\n    llm: x\n    when: \"'ab' * 3 == 'x'\"\n")
    assert evaluates(
        "name: f\nsteps:\n  - id: a\n    llm: x\noutputs:\n  r: '{% for c in steps.a.output %}{{ c }}{% endfor %}'\n"
    )
    assert evaluates(
        "name: u\nsteps:\n  - id: a\n    llm: x\n  - id: b\n    loop:\n      until: 'steps.a.output.split() | length > 2'\n      max_iterations: 2\n      steps: [{id: c, llm: y}]\n"
    )


def test_plain_outputs_and_conditions_are_decided_on_the_loop_with_the_same_result(runtime, monkeypatch):
    hops: list[str] = []
    real = asyncio.to_thread

    async def counting(fn, /, *args, **kwargs):  # type: ignore[no-untyped-def]
        hops.append(getattr(fn, "__name__", "?"))
        return await real(fn, *args, **kwargs)

    monkeypatch.setattr(asyncio, "to_thread", counting)
    flow = parse_flow_text(
        "name: c\ninputs: {n: integer}\nsteps:\n  - id: a\n    llm: a\n"
        "  - id: small\n    llm: '{{ steps.a.output }}'\n    when: 'inputs.n <= 5'\n  - id: big\n    llm: b\n    when: 'inputs.n > 5'\n"
        "outputs:\n  r: '{{ steps.small.output | trim if steps.small.output else none }}'\n  n: '{{ inputs.n }}'\n"
    )
    st = asyncio.run(runtime.run(flow, {"n": 3}))
    assert str(st.status) == "COMPLETED"
    assert (str(st.nodes["big"].status), str(st.nodes["small"].status)) == ("SKIPPED", "COMPLETED")
    assert st.outputs["r"].startswith("fake answer to:") and st.outputs["n"] == 3
    assert "_decide" not in hops  # every decision on the loop


def test_conditions_evaluated_off_the_loop_still_decide_the_run(runtime):
    flow = parse_flow_text(
        "name: c\ninputs: {n: integer}\nsteps:\n  - id: a\n    llm: a\n"
        "  - id: each\n    llm: '{{ item }}'\n    for_each: '{{ range(inputs.n) | list }}'\n  - id: big\n    llm: b\n    when: 'inputs.n > 5'\n"
    )
    st = asyncio.run(runtime.run(flow, {"n": 3}))
    assert str(st.status) == "COMPLETED"
    assert str(st.nodes["big"].status) == "SKIPPED"
    assert len(st.nodes["each"].units) == 3


def test_a_run_created_to_execute_here_is_written_with_its_first_events(runtime):
    flow = parse_flow_text("name: f\nsteps:\n  - id: a\n    llm: a\n")
    st = asyncio.run(runtime.run(flow))
    events = runtime.store.events(st.run_id)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert events[0].type == E.RUN_CREATED and events[1].type == E.RUN_STARTED
    assert events[0].ts == events[1].ts  # one append: one transaction
    assert runtime.get(st.run_id).status == "COMPLETED"


def test_a_child_run_never_may_run_code_its_parent_may_not(runtime, tmp_path):
    (tmp_path / "child.yaml").write_text("name: child\nsteps:\n  - id: c\n    llm: 'child'\n")
    parent = tmp_path / "parent.yaml"
    parent.write_text("name: parent\nsteps:\n  - id: sub\n    flow: {flow: child.yaml}\n")
    rec = runtime.create_run(str(parent), options=RunRequest(disallow_shell=True))
    st = asyncio.run(runtime.execute(rec.id))
    assert str(st.status) == "COMPLETED"
    (kid,) = runtime.store.list_runs(parent_run_id=rec.id)
    assert kid.options.get("disallow_shell") is True


def test_a_fork_keeps_its_source_runs_spec_record(runtime, tmp_path):
    f = tmp_path / "f.yaml"
    f.write_text("name: f\nsteps:\n  - id: a\n    llm: a\n  - id: b\n    llm: 'b {{ steps.a.output }}'\n")
    st = asyncio.run(runtime.run(str(f)))
    src = runtime.get(st.run_id)
    new = runtime.fork(st.run_id, "b")
    assert runtime.get(new.id).spec == src.spec
    done = asyncio.run(runtime.execute(new.id))
    assert str(done.status) == "COMPLETED"
    assert done.nodes["a"].output == st.nodes["a"].output  # reused, not run again
