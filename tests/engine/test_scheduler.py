"""The reducer: no event loop, no I/O. Feed inputs, check events and commands."""

from __future__ import annotations

from llmflow.engine.events import EventType as E
from llmflow.engine.events import NewEvent
from llmflow.engine.inputs import (
    CancelRequested,
    Emitted,
    PauseRequested,
    ResumeRequested,
    Start,
    StartTimer,
    StepCanceled,
    StepFailed,
    StepSucceeded,
    TimerFired,
)
from llmflow.engine.scheduler import Cancel, Execute, decide
from llmflow.engine.state import new_state
from llmflow.model.loader import parse_flow_text

RUN_LEVEL = {E.RUN_STARTED, E.WORKFLOW_STARTED}


def step(st, inp, now=1.0):
    d = decide(st, inp, now)
    return st, [*d.events, *d.commands]


def start(yaml_text: str, inputs: dict | None = None, **options):
    flow = parse_flow_text(yaml_text)
    st = new_state("r1", flow, inputs or {}, options)
    st, out = step(st, Start("test"), now=0.0)
    return st, [x for x in out if not (isinstance(x, NewEvent) and x.type in RUN_LEVEL)]


def events(out):
    return [(x.type, x.step_id, x.unit) for x in out if isinstance(x, NewEvent)]


def execs(out):
    return [x for x in out if isinstance(x, Execute)]


def done(st, cmd: Execute, output="ok", now=1.0):
    return step(st, StepSucceeded(cmd.node_id, cmd.unit, cmd.attempt, output), now)


def fail(st, cmd: Execute, now=1.0, **payload):
    payload.setdefault("error", "boom")
    return step(st, StepFailed(cmd.node_id, cmd.unit, cmd.attempt, **payload), now)


PIPE = """
name: p
steps:
  - id: a
    llm: "a"
  - id: b
    llm: "b {{ steps.a.output }}"
  - id: c
    shell: "echo {{ steps.b.output }}"
"""


def test_a_plain_list_is_a_pipeline_one_step_at_a_time():
    st, out = start(PIPE)
    assert events(out) == [(E.STEP_STARTED, "a", None), (E.ATTEMPT_STARTED, "a", None)]
    (a,) = execs(out)
    st, out = done(st, a, "A")
    assert (E.STEP_COMPLETED, "a", None) in events(out)
    (b,) = execs(out)
    assert b.node_id == "b"
    st, out = done(st, b, "B")
    (c,) = execs(out)
    st, out = done(st, c, {"exit_code": 0})
    types = [t for t, _, _ in events(out)]
    assert types[-2:] == [E.WORKFLOW_COMPLETED, E.RUN_COMPLETED]
    assert st.outputs == {"result": {"exit_code": 0}}
    assert st.finished


def test_a_failed_step_fails_the_run_and_nothing_else_starts():
    st, out = start(PIPE)
    st, out = fail(st, execs(out)[0], error="model exploded", kind="error", retryable=False)
    st_types = [t for t, _, _ in events(out)]
    assert E.STEP_FAILED in st_types
    assert st_types[-1] == E.RUN_FAILED
    assert not execs(out)
    assert str(st.status) == "FAILED"
    assert "model exploded" in st.error


def test_on_error_continue_lets_the_run_complete():
    st, out = start(PIPE.replace('llm: "a"', 'llm: "a"\n    on_error: continue'))
    st, out = fail(st, execs(out)[0], error="x", kind="error")
    (b,) = execs(out)
    assert b.node_id == "b"


def test_retries_back_off_exponentially_and_honour_retry_after():
    st, out = start("""
name: r
steps:
  - id: a
    llm: "a"
    retry: {attempts: 3, backoff: 1.0, multiplier: 2.0, jitter: 0}
""")
    a1 = execs(out)[0]
    st, out = fail(st, a1, kind="provider", retryable=True, now=10.0)
    retrying = next(x for x in out if isinstance(x, NewEvent) and x.type == E.STEP_RETRYING)
    assert (
        retrying.payload.get("delay") == 1.0 and retrying.payload.get("at") == 11.0
    )  # durable: an absolute time
    assert StartTimer("retry:a[]", 11.0) in out
    assert not execs(out)  # nothing starts before the timer fires
    st, out = step(st, TimerFired("retry:a[]"), now=11.0)
    (a2,) = execs(out)
    assert a2.attempt == 2
    st, out = fail(st, a2, kind="rate_limit", retryable=True, retry_after=7.5, now=20.0)
    assert StartTimer("retry:a[]", 27.5) in out  # Retry-After wins over the 2 s backoff
    st, out = step(st, TimerFired("retry:a[]"), now=27.5)
    (a3,) = execs(out)
    assert a3.attempt == 3
    st, out = fail(st, a3, kind="provider", retryable=True, now=30.0)
    assert not execs(out)
    assert str(st.status) == "FAILED"


def test_workspace_errors_are_never_retried():
    st, out = start("""
name: r
steps:
  - id: a
    write_file: {path: "../x", content: "y"}
    retry: 5
""")
    st, out = fail(st, execs(out)[0], kind="workspace", retryable=False)
    assert not execs(out)
    assert str(st.status) == "FAILED"


def test_when_false_skips_and_the_skip_propagates():
    st, out = start(
        """
name: w
inputs: {go: {type: boolean, default: false}}
steps:
  - id: a
    llm: "a"
    when: "inputs.go"
  - id: b
    llm: "b"
""",
        {"go": False},
    )
    assert events(out)[:2] == [(E.STEP_SKIPPED, "a", None), (E.STEP_SKIPPED, "b", None)]
    assert str(st.status) == "COMPLETED"


def test_route_runs_the_matching_branch_and_skips_the_other():
    st, out = start(
        """
name: route
inputs: {kind: string}
steps:
  - id: r
    route:
      routes: [{when: "inputs.kind == 'billing'", to: billing}]
      default: general
  - id: billing
    llm: "b"
  - id: general
    llm: "g"
  - id: reply
    needs: [billing, general]
    llm: "r"
""",
        {"kind": "other"},
    )
    ev = events(out)
    assert (E.STEP_SKIPPED, "billing", None) in ev
    assert [c.node_id for c in execs(out)] == ["general"]
    st, out = done(st, execs(out)[0])
    assert [c.node_id for c in execs(out)] == ["reply"]  # a join runs when one branch ran


def test_for_each_and_matrix_make_units_and_respect_max_concurrency():
    st, out = start("""
name: m
steps:
  - id: j
    llm: "{{ item }} {{ matrix.model }} {{ matrix.criteria }}"
    for_each: [x, y]
    matrix: {model: ["fake:a", "fake:b"], criteria: [c1, c2]}
    max_concurrency: 3
""")
    started = execs(out)
    assert len(started) == 3
    assert len(st.nodes["j"].units) == 8
    assert started[0].vars == {"item": "x", "index": 0, "matrix": {"model": "fake:a", "criteria": "c1"}}
    st, out = done(st, started[0])
    assert len(execs(out)) == 1  # one slot freed, one more started


def test_broadcast_majority_aggregates_answers():
    st, out = start("""
name: b
agents: {a: {}, b: {}, c: {}}
steps:
  - id: vote
    broadcast: {agents: [a, b, c], aggregate: majority}
""")
    cmds = {c.unit: c for c in execs(out)}
    st, out = done(st, cmds["a"], "Yes")
    st, out = done(st, cmds["b"], "no")
    st, out = done(st, cmds["c"], "yes.")
    assert st.nodes["vote"].output == "Yes"
    assert str(st.status) == "COMPLETED"


def test_broadcast_first_cancels_the_slower_agents():
    st, out = start("""
name: b
agents: {a: {}, b: {}}
steps:
  - id: vote
    broadcast: {agents: [a, b], aggregate: first}
""")
    cmds = {c.unit: c for c in execs(out)}
    st, out = done(st, cmds["b"], "fast")
    assert Cancel("vote", "a", "another agent answered first") in out
    assert st.nodes["vote"].output == "fast"


def test_broadcast_min_responses_fails_when_too_few_answer():
    st, out = start("""
name: b
agents: {a: {}, b: {}, c: {}}
steps:
  - id: vote
    broadcast: {agents: [a, b, c], aggregate: majority, min_responses: 2}
""")
    cmds = {c.unit: c for c in execs(out)}
    st, out = done(st, cmds["a"], "yes")
    st, out = fail(st, cmds["b"], kind="validation")
    st, out = fail(st, cmds["c"], kind="validation")
    assert str(st.nodes["vote"].status) == "FAILED"
    assert "2" in st.nodes["vote"].error


def test_loop_repeats_until_the_condition_holds():
    st, out = start("""
name: l
steps:
  - id: lp
    loop:
      until: "steps.body.output == 'stop'"
      max_iterations: 5
      steps:
        - id: body
          llm: "iteration {{ loop.iteration }}"
""")
    (c,) = execs(out)
    assert c.node_id == "lp#1/body"
    st, out = done(st, c, "again")
    (c,) = execs(out)
    assert c.node_id == "lp#2/body"
    st, out = done(st, c, "stop")
    assert st.nodes["lp"].output == "stop"
    assert str(st.status) == "COMPLETED"


def test_cancel_cancels_running_units_then_finishes_canceled():
    st, out = start(PIPE)
    (a,) = execs(out)
    st, out = step(st, CancelRequested())
    assert [x for x in out if not isinstance(x, NewEvent)] == [Cancel("a", "", "run canceled")]
    st, out = step(st, StepCanceled("a", "", 1, "run canceled"))
    types = [t for t, _, _ in events(out)]
    assert types[-1] == E.RUN_CANCELED
    assert not execs(out)


def test_pause_lets_running_steps_finish_and_starts_none():
    st, out = start(PIPE)
    (a,) = execs(out)
    st, out = step(st, PauseRequested())
    st, out = done(st, a)
    assert (E.STEP_COMPLETED, "a", None) in events(out)
    assert not execs(out)
    st, out = step(st, ResumeRequested(), now=2.0)
    assert [c.node_id for c in execs(out)] == ["b"]


def test_token_budget_stops_the_run_with_a_reason():
    st, out = start(PIPE, max_tokens=10)
    (a,) = execs(out)
    st, out = step(
        st,
        Emitted(NewEvent(E.LLM_DONE, "", "a", None, 1, {"usage": {"input_tokens": 8, "output_tokens": 5}})),
    )
    assert Cancel("a", "", "token budget exceeded: used 13 tokens, max_tokens is 10") in out
    st, out = step(st, StepCanceled("a", "", 1, "token budget exceeded"))
    assert str(st.status) == "FAILED"
    assert "token budget exceeded" in st.error


def test_parallel_group_is_a_barrier():
    st, out = start("""
name: par
steps:
  - id: g
    parallel:
      - id: x
        llm: "x"
      - id: y
        llm: "y"
  - id: after
    llm: "{{ steps.g.output.x }}"
""")
    cmds = {c.node_id: c for c in execs(out)}
    assert set(cmds) == {"x", "y"}
    st, out = done(st, cmds["x"], "X")
    assert not execs(out)
    st, out = done(st, cmds["y"], "Y")
    assert st.nodes["g"].output == {"x": "X", "y": "Y"}
    assert [c.node_id for c in execs(out)] == ["after"]


GROUP = """
name: par
steps:
  - id: g
    parallel:
      - id: x
        llm: "x"
      - id: inner
        parallel:
          - id: y
            llm: "y"
          - id: z
            llm: "z"
  - id: after
    llm: "after"
"""


def test_a_parallel_group_starts_with_its_first_child_and_ends_with_its_last():
    st, out = start(GROUP)
    started = [s for t, s, _ in events(out) if t == E.STEP_STARTED]
    # the groups open before their children (outermost first), not at the barrier
    assert started == ["g", "x", "inner", "y", "z"]
    assert str(st.nodes["g"].status) == "RUNNING" and str(st.nodes["inner"].status) == "RUNNING"
    cmds = {c.node_id: c for c in execs(out)}
    st, out = done(st, cmds["x"], "X")
    st, out = done(st, cmds["y"], "Y")
    assert str(st.nodes["g"].status) == "RUNNING" and str(st.nodes["inner"].status) == "RUNNING"
    st, out = done(st, cmds["z"], "Z")
    assert [(t, s) for t, s, _ in events(out) if s in ("g", "inner")] == [
        (E.STEP_COMPLETED, "inner"),
        (E.STEP_COMPLETED, "g"),
    ]
    assert st.nodes["g"].output == {"x": "X", "inner": {"y": "Y", "z": "Z"}}
    assert [c.node_id for c in execs(out)] == ["after"]


def test_a_failed_child_fails_its_groups_with_its_error_after_the_siblings_are_canceled():
    st, out = start(GROUP)
    cmds = {c.node_id: c for c in execs(out)}
    st, out = done(st, cmds["x"], "X")
    st, out = fail(st, cmds["y"], error="model said no")
    # the running sibling is canceled; the groups end only once it has reported back
    assert Cancel("z", "", "step 'y' failed") in out
    assert str(st.nodes["g"].status) == "RUNNING"
    st, out = step(st, StepCanceled("z", "", 1, "step 'y' failed"))
    assert [(t, s) for t, s, _ in events(out) if t.startswith("STEP_")] == [
        (E.STEP_CANCELED, "z"),
        (E.STEP_FAILED, "inner"),
        (E.STEP_FAILED, "g"),
        (E.STEP_CANCELED, "after"),
    ]
    assert st.nodes["inner"].error == "y: model said no"
    assert st.nodes["g"].error == "y: model said no"
    assert str(st.nodes["g"].status) == "FAILED" and str(st.nodes["x"].status) == "COMPLETED"
    assert str(st.status) == "FAILED" and st.error == "step 'y' failed: model said no"


def test_a_group_another_step_fails_beside_is_canceled_and_a_skipped_group_never_starts():
    st, out = start("""
name: par
steps:
  - id: a
    parallel:
      - id: bad
        llm: "bad"
      - id: g
        parallel:
          - id: x
            llm: "x"
            when: "false"
""")
    started = [s for t, s, _ in events(out) if t == E.STEP_STARTED]
    assert started == ["a", "bad"]  # g has no child that starts: it is skipped, never opened
    assert [(t, s) for t, s, _ in events(out) if t == E.STEP_SKIPPED] == [
        (E.STEP_SKIPPED, "x"),
        (E.STEP_SKIPPED, "g"),
    ]
    (bad,) = execs(out)
    st, out = fail(st, bad)
    assert st.nodes["a"].error == "bad: boom" and str(st.nodes["a"].status) == "FAILED"


def test_a_child_that_may_fail_lets_its_group_complete():
    st, out = start("""
name: par
steps:
  - id: g
    parallel:
      - id: x
        llm: "x"
        on_error: continue
      - id: y
        llm: "y"
""")
    cmds = {c.node_id: c for c in execs(out)}
    st, out = fail(st, cmds["x"])
    st, out = done(st, cmds["y"], "Y")
    assert str(st.nodes["g"].status) == "COMPLETED" and st.nodes["g"].output == {"x": None, "y": "Y"}
    assert str(st.status) == "COMPLETED"


def test_a_log_recorded_before_groups_opened_with_their_children_still_folds_and_finishes():
    """Old logs start a group at its barrier; folding one and planning goes on from it."""
    from llmflow.engine.scheduler import plan
    from llmflow.engine.state import fold

    flow = parse_flow_text(GROUP)
    st = new_state("r1", flow, {})
    old = [
        NewEvent(E.RUN_STARTED, "", payload={"owner": "o"}),
        NewEvent(E.STEP_STARTED, "", "x", payload={"kind": "llm", "units": [{"key": ""}]}),
        NewEvent(E.ATTEMPT_STARTED, "", "x", None, 1, {"kind": "llm"}),
        NewEvent(E.ATTEMPT_COMPLETED, "", "x", None, 1, {"output": "X"}),
        NewEvent(E.STEP_COMPLETED, "", "x", payload={"output": "X"}),
    ]
    for sid in ("y", "z"):
        old += [
            NewEvent(E.STEP_STARTED, "", sid, payload={"kind": "llm", "units": [{"key": ""}]}),
            NewEvent(E.ATTEMPT_STARTED, "", sid, None, 1, {"kind": "llm"}),
            NewEvent(E.ATTEMPT_COMPLETED, "", sid, None, 1, {"output": sid.upper()}),
            NewEvent(E.STEP_COMPLETED, "", sid, payload={"output": sid.upper()}),
        ]
    fold(st, old)
    st.executing = True
    nxt = [(x.type, x.step_id) for x in plan(st, 1.0) if isinstance(x, NewEvent)]
    assert nxt[:4] == [
        (E.STEP_STARTED, "g"),
        (E.STEP_STARTED, "inner"),
        (E.STEP_COMPLETED, "inner"),
        (E.STEP_COMPLETED, "g"),
    ]
    assert st.nodes["g"].output == {"x": "X", "inner": {"y": "Y", "z": "Z"}}


def test_replaying_a_recorded_log_gives_the_same_state():
    flow = parse_flow_text(PIPE)
    st = new_state("r1", flow, {})
    d = decide(st, Start("test"), 0.0)
    log = list(d.events)
    (a,) = [c for c in d.commands if isinstance(c, Execute)]
    d = decide(st, StepSucceeded(a.node_id, a.unit, a.attempt, "A"), 1.0)
    log += d.events
    from llmflow.engine.state import fold

    replay = fold(new_state("r1", st.flow, {}), log)
    assert {k: str(n.status) for k, n in replay.nodes.items()} == {
        k: str(n.status) for k, n in st.nodes.items()
    }
    assert replay.nodes["a"].output == "A"
