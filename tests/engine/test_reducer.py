"""The reducer's inputs one by one - timers, takeover, re-run, humans, parking, budgets, the
unit cap, the run timeout - with no event loop: inputs in, events and commands out."""

from __future__ import annotations

import pytest

from llmflow.engine.events import EventType as E
from llmflow.engine.events import NewEvent
from llmflow.engine.inputs import (
    AnswerHuman,
    AskHuman,
    Cancel,
    CancelRequested,
    Emitted,
    Execute,
    FailRequested,
    HumanAnswered,
    HumanAsked,
    PauseRequested,
    RerunRequested,
    Resume,
    ResumeRequested,
    Start,
    StartTimer,
    StepCanceled,
    StepFailed,
    StepSucceeded,
    Stop,
    TimerFired,
)
from llmflow.engine.scheduler import decide, durable_timers
from llmflow.engine.state import fold, new_state
from llmflow.engine.states import AttemptStatus, IllegalTransition, RunStatus, StepStatus, UnitStatus
from llmflow.model.loader import parse_flow_text


class Run:
    """A run driven by hand: every decision's events are kept as the log."""

    def __init__(self, yaml_text: str, inputs: dict | None = None, **options) -> None:
        self.flow = parse_flow_text(yaml_text)
        self.inputs = inputs or {}
        self.options = options
        self.st = new_state("r1", self.flow, self.inputs, options)
        self.log: list[NewEvent] = []

    def __call__(self, inp, now: float = 1.0):
        d = decide(self.st, inp, now)
        self.log += d.events
        return d

    def replay(self):
        """The state another process rebuilds from the log."""
        return fold(new_state("r1", self.flow, self.inputs, self.options), list(self.log))


def types(d) -> list[str]:
    return [e.type for e in d.events]


def execs(d) -> list[Execute]:
    return [c for c in d.commands if isinstance(c, Execute)]


def timers(d) -> list[StartTimer]:
    return [c for c in d.commands if isinstance(c, StartTimer)]


ONE = "name: one\nsteps:\n  - id: a\n    llm: a\n"
PIPE = "name: p\nsteps:\n  - id: a\n    llm: a\n  - id: b\n    llm: b\n"
SLOW = "name: slow\noptions: {timeout: 10}\nsteps:\n  - id: a\n    llm: a\n  - id: b\n    llm: b\n"


# -- start and takeover -----------------------------------------------------------------------


def test_start_records_the_run_deadline_as_an_absolute_time_and_arms_its_timer():
    r = Run(SLOW)
    d = r(Start("p1"), now=100.0)
    started = d.events[0]
    assert started.type == E.RUN_STARTED and started.payload.get("deadline") == 110.0
    assert StartTimer("run", 110.0) in d.commands
    assert [c.node_id for c in execs(d)] == ["a"]


def test_a_takeover_rewinds_in_flight_attempts_and_rearms_the_recorded_deadline():
    r = Run(SLOW)
    r(Start("p1"), now=100.0)
    other = r.replay()  # another process, later
    d = decide(other, Resume("p2"), 104.0)
    assert types(d)[:2] == [E.ATTEMPT_INTERRUPTED, E.RUN_RECOVERED]
    assert StartTimer("run", 110.0) in d.commands  # the original deadline, not 104 + 10
    (again,) = execs(d)
    assert (again.node_id, again.attempt) == ("a", 2)


def test_the_run_timeout_winds_down_through_the_one_path_and_fails_the_run():
    r = Run(SLOW)
    d = r(Start("p1"), now=100.0)
    (a,) = execs(d)
    d = r(TimerFired("run"), now=110.0)
    assert d.commands == [Cancel("a", "", "run timed out")]
    d = r(StepCanceled("a", "", a.attempt, "run timed out"), now=110.1)
    assert types(d) == [E.ATTEMPT_CANCELED, E.STEP_CANCELED, E.STEP_CANCELED, E.WORKFLOW_FAILED, E.RUN_FAILED]
    assert r.st.status is RunStatus.FAILED and "timed out" in r.st.error


def test_a_takeover_after_the_deadline_fails_at_once_without_running_anything_again():
    r = Run(SLOW)
    r(Start("p1"), now=100.0)
    other = r.replay()
    d = decide(other, Resume("p2"), 200.0)
    assert not execs(d)
    assert types(d)[-1] == E.RUN_FAILED


def test_a_timer_firing_early_changes_nothing():
    r = Run(SLOW)
    r(Start("p1"), now=100.0)
    d = r(TimerFired("run"), now=105.0)
    assert d.events == [] and d.commands == []


# -- retries and step timeouts ----------------------------------------------------------------


def test_a_retry_waits_for_its_recorded_time_even_in_another_process():
    r = Run("name: r\nsteps:\n  - id: a\n    llm: a\n    retry: {attempts: 2, backoff: 30, jitter: 0}\n")
    (a,) = execs(r(Start("p1"), now=0.0))
    d = r(StepFailed("a", "", a.attempt, "boom", "provider", True), now=5.0)
    assert timers(d) == [StartTimer("retry:a[]", 35.0)] and not execs(d)
    other = r.replay()
    d = decide(other, Resume("p2"), 20.0)
    assert StartTimer("retry:a[]", 35.0) in d.commands and not execs(d)
    assert not execs(decide(other, TimerFired("retry:a[]"), 34.0))  # early: still waiting
    (again,) = execs(decide(other, TimerFired("retry:a[]"), 35.0))
    assert again.attempt == 2


def test_a_step_timeout_fails_the_attempt_and_lets_the_retry_policy_decide():
    r = Run(
        "name: t\nsteps:\n  - id: a\n    python: {function: x}\n    timeout: 5\n    retry: {attempts: 2, backoff: 0}\n"
    )
    d = r(Start("p1"), now=0.0)
    (a,) = execs(d)
    assert StartTimer("attempt:a[]#1", 5.0) in d.commands
    assert r(TimerFired("attempt:a[]#1"), now=4.0).commands == []
    d = r(TimerFired("attempt:a[]#1"), now=5.0)
    assert d.commands == [Cancel("a", "", "step timed out after 5s", fail_kind="timeout")]
    d = r(StepFailed("a", "", 1, "step timed out after 5s", "timeout", True), now=5.1)
    assert [c.attempt for c in execs(d)] == [2]


# -- cancel, pause, resume --------------------------------------------------------------------


def test_cancel_of_a_run_nobody_executes_is_recorded_directly():
    r = Run(PIPE)
    r(Start("p1"), now=0.0)
    idle = r.replay()  # its process died; nobody executes it
    d = decide(idle, CancelRequested("stop"), 5.0)
    assert types(d) == [
        E.RUN_CANCEL_REQUESTED,
        E.ATTEMPT_CANCELED,
        E.STEP_CANCELED,
        E.STEP_CANCELED,
        E.RUN_CANCELED,
    ]
    assert d.commands == []


def test_pause_and_resume_of_a_run_nobody_executes_queue_it_again():
    r = Run(PIPE)
    assert types(decide(r.st, PauseRequested(), 0.0)) == [E.RUN_PAUSED]
    assert types(decide(r.st, ResumeRequested(), 1.0)) == [E.RUN_QUEUED]


def test_a_result_after_the_attempt_ended_is_dropped():
    r = Run(PIPE)
    (a,) = execs(r(Start("p1"), now=0.0))
    r(CancelRequested(), now=1.0)
    r(StepCanceled("a", "", a.attempt), now=1.1)
    assert r.st.finished
    d = r(StepSucceeded("a", "", a.attempt, "late"), now=2.0)
    assert d.events == [] and d.commands == []


# -- re-run -----------------------------------------------------------------------------------


def test_rerun_reopens_a_finished_run_and_a_takeover_runs_the_step_again():
    r = Run(PIPE)
    (a,) = execs(r(Start("p1"), now=0.0))
    (b,) = execs(r(StepSucceeded("a", "", 1, "A"), 1.0))
    r(StepSucceeded("b", "", 1, "B"), 2.0)
    assert r.st.status is RunStatus.COMPLETED
    d = decide(r.replay(), RerunRequested("a", downstream=True), 3.0)
    assert types(d) == [E.STEP_RERUN, E.STEP_STALE]
    r.log += d.events
    d = decide(r.replay(), Resume("p2"), 4.0)
    assert [(c.node_id, c.attempt) for c in execs(d)] == [("a", 2)]


# -- humans -----------------------------------------------------------------------------------

HUMAN = "name: h\nsteps:\n  - id: ok\n    human: {prompt: 'Ship it?', input: confirm, default: 'yes'}\n  - id: after\n    llm: a\n"


def ask(r: Run, now: float, timeout: float | None = None, park_after: float | None = None):
    return r(HumanAsked("ok", "", 1, "ok", "Ship it?", "confirm", None, "yes", timeout, park_after), now)


def test_a_question_is_recorded_with_its_deadline_and_an_answer_is_handed_over():
    r = Run(HUMAN)
    r(Start("p1"), now=0.0)
    d = ask(r, 1.0, timeout=60)
    assert types(d) == [E.HUMAN_INPUT_REQUESTED]
    assert d.events[0].payload.get("timeout_at") == 61.0
    assert StartTimer("human:ok", 61.0) in d.commands
    assert any(isinstance(c, AskHuman) for c in d.commands)
    d = r(HumanAnswered(None, "no"), 2.0)  # no request id: the open question
    assert types(d) == [E.HUMAN_INPUT_RECEIVED] and AnswerHuman("ok", "no") in d.commands


def test_an_unanswered_question_gets_its_default_when_the_timer_fires():
    r = Run(HUMAN)
    r(Start("p1"), now=0.0)
    ask(r, 1.0, timeout=60)
    assert r(TimerFired("human:ok"), 30.0).events == []
    d = r(TimerFired("human:ok"), 61.0)
    assert types(d) == [E.HUMAN_INPUT_RECEIVED] and d.events[0].payload.get("source") == "default"
    assert AnswerHuman("ok", "yes") in d.commands


def test_a_question_asked_again_after_a_takeover_keeps_its_deadline():
    r = Run(HUMAN)
    r(Start("p1"), now=0.0)
    ask(r, 1.0, timeout=60)
    other = r.replay()
    d = decide(other, Resume("p2"), 50.0)
    assert StartTimer("human:ok", 61.0) in d.commands
    d = decide(other, HumanAsked("ok", "", 2, "ok", "Ship it?", "confirm", None, "yes", 60), 51.0)
    assert d.events[0].payload.get("timeout_at") == 61.0


def test_an_answer_before_its_question_is_kept():
    r = Run(HUMAN)
    r(Start("p1"), now=0.0)
    assert r(HumanAnswered(None, "early"), 0.5).events == []
    d = ask(r, 1.0)
    assert types(d) == [E.HUMAN_INPUT_REQUESTED, E.HUMAN_INPUT_RECEIVED]
    assert AnswerHuman("ok", "early") in d.commands


def test_a_run_waiting_only_for_a_person_is_parked_and_an_answer_requeues_it():
    r = Run(HUMAN)
    r(Start("p1"), now=0.0)
    d = ask(r, 1.0, timeout=600, park_after=30)
    assert StartTimer("park", 31.0) in d.commands
    d = r(TimerFired("park"), 31.0)
    assert types(d) == [E.ATTEMPT_INTERRUPTED, E.RUN_PARKED]
    assert d.events[1].payload.get("wake_at") == 601.0  # a worker picks it up for the timeout
    assert Cancel("ok", "", "parked", silent=True) in d.commands and any(
        isinstance(c, Stop) for c in d.commands
    )
    assert r.st.status is RunStatus.WAITING
    idle = r.replay()  # nobody executes it now
    d = decide(idle, HumanAnswered(None, "no"), 40.0)
    assert types(d) == [E.HUMAN_INPUT_RECEIVED, E.RUN_QUEUED]
    r.log += d.events
    st = r.replay()
    (again,) = execs(decide(st, Resume("worker"), 41.0))  # a worker takes it: the step runs again ...
    assert (again.node_id, again.attempt) == ("ok", 2)
    d = decide(st, HumanAsked("ok", "", 2, "ok", "Ship it?", "confirm", None, "yes", 600), 42.0)
    assert d.commands == [AnswerHuman("ok", "no")] and d.events == []  # ... and finds its answer


def test_a_run_with_other_work_in_flight_is_not_parked():
    r = Run(
        "name: h\nsteps:\n  - id: g\n    parallel:\n      - id: ok\n        human: {prompt: 'x?'}\n      - id: work\n        llm: w\n"
    )
    r(Start("p1"), now=0.0)
    r(HumanAsked("ok", "", 1, "ok", "x?", park_after=5), 1.0)
    assert r(TimerFired("park"), 6.0).events == []


# -- budgets ----------------------------------------------------------------------------------

FAN = "name: f\noptions: {max_tokens: 60, max_concurrency: 16}\nsteps:\n  - id: each\n    for_each: \"{{ range(30) | list }}\"\n    llm: 'item {{ item }}'\n"


def usage(c: Execute, tokens: int) -> Emitted:
    return Emitted(
        NewEvent(
            E.LLM_DONE,
            "",
            c.node_id,
            c.unit or None,
            c.attempt,
            {"usage": {"input_tokens": 0, "output_tokens": tokens}},
        )
    )


def test_budgeted_units_reserve_before_they_start_and_the_run_fails_naming_the_budget():
    r = Run(FAN)
    d = r(Start("p1"), now=0.0)
    assert len(execs(d)) == 1  # nothing measured yet: one call alone, reserving what is left
    first = execs(d)[0]
    r(usage(first, 8))
    d = r(StepSucceeded("each", first.unit, 1, "x"))
    running = execs(d)
    assert len(running) == 7  # 52 tokens left, 8 expected per call: 7 start
    for c in running:
        r(usage(c, 8))
        d = r(StepSucceeded("each", c.unit, 1, "x"))
    used = r.st.tokens_in + r.st.tokens_out
    assert used <= 60 + 8  # at most one call's worth over
    assert r.st.status is RunStatus.FAILED and "token budget" in r.st.error
    failed = next(e for e in r.log if e.type == E.STEP_FAILED)
    assert len(failed.payload.get("units")) == 22  # every unit that never started failed
    assert next(e for e in r.log if e.type == E.RUN_FAILED).payload.get("budget") == "max_tokens"
    assert all(
        u.status in (UnitStatus.COMPLETED, UnitStatus.FAILED) for u in r.st.nodes["each"].units.values()
    )


def test_on_budget_skip_skips_the_units_that_never_started():
    r = Run(FAN.replace("max_concurrency: 16", "max_concurrency: 16, on_budget: skip"))
    (first,) = execs(r(Start("p1"), now=0.0))
    r(usage(first, 61))
    r(StepSucceeded("each", first.unit, 1, "x"))
    assert r.st.status is RunStatus.FAILED
    skipped = next(e for e in r.log if e.type == E.STEP_SKIPPED)
    assert len(skipped.payload.get("units")) == 29
    assert {u.status for k, u in r.st.nodes["each"].units.items() if k != first.unit} == {UnitStatus.SKIPPED}


# -- the unit cap -----------------------------------------------------------------------------


def test_units_past_the_cap_fail_the_step_before_any_unit_is_built():
    r = Run(
        'name: big\noptions: {max_units: 50}\nsteps:\n  - id: each\n    for_each: "{{ range(1000) | list }}"\n    llm: x\n'
    )
    d = r(Start("p1"), now=0.0)
    failed = next(e for e in d.events if e.type == E.STEP_FAILED)
    assert "1000 units" in failed.message and "cap of 50" in failed.message
    assert not execs(d) and r.st.nodes["each"].units == {}
    assert r.st.status is RunStatus.FAILED


def test_the_setting_caps_what_a_flow_may_ask_for():
    r = Run(
        'name: big\noptions: {max_units: 5000}\nsteps:\n  - id: each\n    for_each: "{{ range(200) | list }}"\n    llm: x\n',
        max_units=100,
    )
    d = r(Start("p1"), now=0.0)
    assert "cap of 100" in next(e for e in d.events if e.type == E.STEP_FAILED).message


# -- the fold ---------------------------------------------------------------------------------


def test_an_illegal_transition_fails_loudly_when_folding():
    r = Run(ONE)
    r(Start("p1"), now=0.0)
    r.log.append(NewEvent(E.ATTEMPT_COMPLETED, "", "a", None, 1, {"output": 1}))
    r.log.append(NewEvent(E.ATTEMPT_COMPLETED, "", "a", None, 1, {"output": 2}))  # ended twice
    with pytest.raises(IllegalTransition):
        r.replay()


def test_an_event_naming_an_attempt_that_never_started_fails_loudly_when_folding():
    r = Run(ONE)
    r(Start("p1"), now=0.0)
    # attempt #1 of step a is running; an end for #7 used to land silently on #1
    r.log.append(NewEvent(E.ATTEMPT_COMPLETED, "", "a", None, 7, {"output": 1}))
    with pytest.raises(IllegalTransition, match=r"attempt #7 of step 'a'.*never started.*#1"):
        r.replay()


def test_an_event_naming_no_attempt_lands_on_the_latest_one():
    r = Run(ONE)
    r(Start("p1"), now=0.0)
    r.log.append(NewEvent(E.ATTEMPT_COMPLETED, "", "a", None, None, {"output": 5}))
    st = r.replay()
    assert st.nodes["a"].units[""].attempts[-1].status is AttemptStatus.COMPLETED
    assert st.nodes["a"].units[""].output == 5


def test_a_run_nobody_executes_that_cannot_go_on_winds_down_as_failed():
    r = Run(PIPE)
    r(Start("p1"), now=0.0)  # step a's attempt #1 is running; then its process went away
    st = r.replay()  # the state a worker folds: nobody executes it
    d = decide(st, FailRequested("flow 'p' changed since the run started"), 5.0)
    assert types(d) == [E.ATTEMPT_CANCELED, E.STEP_CANCELED, E.STEP_CANCELED, E.WORKFLOW_FAILED, E.RUN_FAILED]
    assert d.commands == []
    assert d.events[-1].payload.error == "flow 'p' changed since the run started"
    assert st.status is RunStatus.FAILED
    assert st.nodes["a"].units[""].attempts[-1].status is AttemptStatus.CANCELED
    assert {n.status for n in st.nodes.values()} == {StepStatus.CANCELED}
    # the log folds again without an illegal transition, and a second request adds nothing
    r.log += d.events
    assert r.replay().status is RunStatus.FAILED
    assert decide(st, FailRequested("again"), 6.0).events == []


def test_an_output_that_fails_to_render_fails_the_run_through_the_wind_down():
    r = Run("name: o\noutputs: {x: '{{ steps.a.output.missing.deeper }}'}\nsteps:\n  - id: a\n    llm: a\n")
    (a,) = execs(r(Start("p1"), now=0.0))
    d = r(StepSucceeded("a", "", a.attempt, "text"))
    assert types(d)[-2:] == [E.WORKFLOW_FAILED, E.RUN_FAILED]
    assert r.st.status is RunStatus.FAILED and r.replay().status is RunStatus.FAILED


def test_the_timers_of_a_log_are_what_a_takeover_rearms():
    r = Run(SLOW)
    r(Start("p1"), now=100.0)
    assert durable_timers(r.replay(), 101.0) == [StartTimer("run", 110.0)]


def test_informational_events_are_recorded_but_not_folded():
    r = Run(ONE)
    (a,) = execs(r(Start("p1"), now=0.0))
    before = (r.st.running, r.st.tokens_out)
    d = r(Emitted(NewEvent(E.LLM_TOKENS, "", "a", None, 1, {"text": "hi"})))
    assert types(d) == [E.LLM_TOKENS] and d.commands == []
    assert (r.st.running, r.st.tokens_out) == before
