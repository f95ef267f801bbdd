"""``HumanDeclined`` in the reducer, with no event loop: nobody can answer a question (the
console's standard input is at end of file). The reducer records nothing and hands the
waiting executor an error (``AnswerHuman(error=...)``); the executor raises it
(``HumanTimeoutError``, kind "human"), and the runner reports that as ``StepFailed``: the step
fails once and for all - no retry, no default - and the run fails with it. A decline that
matches no open question (unknown, already answered, not asked yet) changes nothing."""

from __future__ import annotations

from typing import Any

from llmflow.engine.events import EventType as E
from llmflow.engine.events import NewEvent
from llmflow.engine.inputs import (
    AnswerHuman,
    AskHuman,
    Decision,
    HumanAnswered,
    HumanAsked,
    HumanDeclined,
    Input,
    Start,
    StepFailed,
    TimerFired,
)
from llmflow.engine.runner import error_payload
from llmflow.engine.scheduler import decide
from llmflow.engine.state import RunState, fold, new_state
from llmflow.engine.states import RunStatus, StepStatus
from llmflow.errors import HumanTimeoutError
from llmflow.model.loader import parse_flow_text

# a question with a default, retried on failure, and a step after it
WITH_DEFAULT = """\
name: h
steps:
  - id: ok
    human: {prompt: 'Ship it?', input: confirm, default: 'yes', timeout: 60}
    retry: {attempts: 3}
  - id: after
    llm: a
"""
NO_DEFAULT = "name: h\nsteps:\n  - id: ok\n    human: {prompt: 'Ship it?', input: confirm}\n  - id: after\n    llm: a\n"


class Run:
    """A run driven by hand: every decision's events are kept as the log."""

    def __init__(self, yaml_text: str) -> None:
        self.flow = parse_flow_text(yaml_text)
        self.st = new_state("r1", self.flow, {}, {})
        self.log: list[NewEvent] = []

    def __call__(self, inp: Input, now: float) -> Decision:
        d = decide(self.st, inp, now)
        self.log += d.events
        return d

    def replay(self) -> RunState:
        """The state another process rebuilds from the log."""
        return fold(new_state("r1", self.flow, {}, {}), list(self.log))


def statuses(st: RunState) -> tuple[RunStatus, dict[str, StepStatus], dict[str, Any], dict[str, Any]]:
    return (
        st.status,
        {k: n.status for k, n in st.nodes.items()},
        dict(st.open_requests),
        dict(st.human_answers),
    )


def asked(yaml_text: str, default: Any = "yes", timeout: float | None = 60) -> Run:
    """A run whose step ``ok`` (attempt 1) waits for the answer to request ``ok``."""
    r = Run(yaml_text)
    r(Start("p1"), 0.0)
    d = r(HumanAsked("ok", "", 1, "ok", "Ship it?", "confirm", None, default, timeout), 1.0)
    assert [e.type for e in d.events] == [E.HUMAN_INPUT_REQUESTED]
    assert any(isinstance(c, AskHuman) for c in d.commands)
    assert r.st.nodes["ok"].units[""].asking == "ok"
    return r


def executor_fails(r: Run, c: AnswerHuman, now: float) -> Decision:
    """What the runner does with ``AnswerHuman(error=...)``: the waiting executor raises
    ``HumanTimeoutError`` and its failure comes back as ``StepFailed`` (runner._result)."""
    assert c.error is not None
    p = error_payload(HumanTimeoutError(c.error, hint=c.hint))
    return r(
        StepFailed("ok", "", 1, p["error"], p["kind"], p["retryable"], p.get("retry_after"), p.get("hint")),
        now,
    )


def test_a_declined_question_records_nothing_and_hands_the_executor_the_reason() -> None:
    r = asked(NO_DEFAULT, default=None, timeout=None)
    before = statuses(r.st)
    d = r(HumanDeclined("ok", "stdin is at end of file", "run it in a terminal"), 2.0)
    assert d.events == []  # nothing is recorded as an answer
    assert d.commands == [
        AnswerHuman("ok", None, error="stdin is at end of file", hint="run it in a terminal")
    ]
    assert statuses(r.st) == before
    assert r.st.status is RunStatus.RUNNING and r.st.nodes["ok"].status is StepStatus.RUNNING
    assert r.st.open_requests == {"ok": ("ok", "")} and r.st.human_answers == {}
    assert statuses(r.replay()) == before


def test_the_declined_step_fails_without_retry_and_the_run_fails_with_it() -> None:
    r = asked(WITH_DEFAULT)
    (c,) = r(HumanDeclined("ok", "stdin is at end of file", "pipe the answers in"), 2.0).commands
    assert isinstance(c, AnswerHuman)
    d = executor_fails(r, c, 3.0)
    assert [e.type for e in d.events] == [
        E.ATTEMPT_FAILED,
        E.STEP_FAILED,
        E.STEP_CANCELED,  # the step after it never runs
        E.WORKFLOW_FAILED,
        E.RUN_FAILED,
    ]
    failed = d.events[0].payload
    assert [failed.get(k) for k in ("error", "kind", "retryable", "hint")] == [
        "stdin is at end of file",
        "human",
        False,
        "pipe the answers in",
    ]
    assert "stdin is at end of file" in str(d.events[-1].payload.get("error"))
    assert not any(e.type in (E.STEP_RETRYING, E.HUMAN_INPUT_RECEIVED) for e in r.log)  # attempts: 3 unused
    for st in (r.st, r.replay()):
        assert st.status is RunStatus.FAILED and st.finished
        assert st.nodes["ok"].status is StepStatus.FAILED
        assert st.nodes["after"].status is StepStatus.CANCELED
        assert st.human_answers == {}  # the default was not taken
        assert [a.n for a in st.nodes["ok"].units[""].attempts] == [1]


def test_a_decline_does_not_take_the_default_that_a_timeout_would() -> None:
    declined = asked(WITH_DEFAULT)
    (c,) = declined(HumanDeclined("ok", "nobody there"), 2.0).commands
    assert c == AnswerHuman("ok", None, error="nobody there", hint=None)
    timed_out = asked(WITH_DEFAULT)  # the same question, unanswered until its timer fires
    d = timed_out(TimerFired("human:ok"), 61.0)
    assert [e.type for e in d.events] == [E.HUMAN_INPUT_RECEIVED]
    assert AnswerHuman("ok", "yes") in d.commands and timed_out.st.human_answers == {"ok": "yes"}
    assert declined.st.human_answers == {} and "ok" in declined.st.open_requests


def test_a_decline_of_a_question_already_answered_is_ignored() -> None:
    r = asked(WITH_DEFAULT)
    d = r(HumanAnswered("ok", "no"), 2.0)
    assert [e.type for e in d.events] == [E.HUMAN_INPUT_RECEIVED]
    before = statuses(r.st)
    d = r(HumanDeclined("ok", "too late"), 3.0)
    assert (d.events, d.commands) == ([], [])
    assert statuses(r.st) == before and r.st.human_answers == {"ok": "no"}
    assert r.st.status is RunStatus.RUNNING and r.st.nodes["ok"].status is StepStatus.RUNNING


def test_a_decline_of_an_unknown_or_unnamed_request_is_ignored() -> None:
    r = asked(WITH_DEFAULT)
    before = statuses(r.st)
    # the runner turns a "decline" control without a request id into request id ""; unlike
    # an answer without one (HumanAnswered(None, ...)), it does not go to the open question
    for rid in ("nope", ""):
        d = r(HumanDeclined(rid, "no answer"), 2.0)
        assert (d.events, d.commands) == ([], [])
        assert statuses(r.st) == before


def test_a_decline_before_its_question_is_not_kept_for_it() -> None:
    r = Run(WITH_DEFAULT)
    r(Start("p1"), 0.0)
    before = statuses(r.st)
    d = r(HumanDeclined("ok", "no answer"), 0.5)
    assert (d.events, d.commands) == ([], [])
    assert statuses(r.st) == before and r.st.early_answers == []
    # the question, asked afterwards, waits for an answer as usual (an early *answer* would
    # have answered it at once)
    d = r(HumanAsked("ok", "", 1, "ok", "Ship it?", "confirm", None, "yes", 60), 1.0)
    assert [e.type for e in d.events] == [E.HUMAN_INPUT_REQUESTED]
    assert not any(isinstance(c, AnswerHuman) for c in d.commands)
    assert r.st.open_requests == {"ok": ("ok", "")}


def test_a_decline_after_the_step_failed_changes_nothing() -> None:
    r = asked(WITH_DEFAULT)
    (c,) = r(HumanDeclined("ok", "stdin is at end of file"), 2.0).commands
    assert isinstance(c, AnswerHuman)
    executor_fails(r, c, 3.0)
    before = statuses(r.st)
    d = r(HumanDeclined("ok", "stdin is at end of file"), 4.0)
    assert d.events == []
    assert statuses(r.st) == before and r.st.status is RunStatus.FAILED


def test_a_failed_step_closes_its_declined_question() -> None:
    r = asked(WITH_DEFAULT)
    (c,) = r(HumanDeclined("ok", "stdin is at end of file"), 2.0).commands
    assert isinstance(c, AnswerHuman)
    executor_fails(r, c, 3.0)
    assert r.st.status is RunStatus.FAILED
    assert r.st.open_requests == {} and r.replay().open_requests == {}
    assert r(HumanDeclined("ok", "stdin is at end of file"), 4.0).commands == []
