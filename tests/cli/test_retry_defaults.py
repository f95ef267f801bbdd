"""Transient provider errors are retried by default: 3 attempts, backoff honouring
Retry-After; `retry: 1` turns it off; a step's own timeout and non-transient errors are not
retried. The policy is pure (first tests); the rest run flows on the fake model with injected
429s and 500s, through the CLI."""

from __future__ import annotations

import json

import pytest

from llmflow.engine.retry import backoff_delay, should_retry
from llmflow.model.spec import DEFAULT_RETRY, LlmStep, RetrySpec, ShellStep

from .test_run_cmd import llmflow, write


def test_a_step_without_retry_gets_three_attempts_on_transient_errors():
    step = LlmStep(id="a", prompt="hi")
    policy = step.effective_retry()
    assert policy == DEFAULT_RETRY and policy.attempts == 3
    assert should_retry(policy, 1, "rate_limit", True)
    assert should_retry(policy, 2, "provider", True)
    assert should_retry(policy, 1, "timeout", True)
    assert not should_retry(policy, 3, "rate_limit", True)  # the third failure is the last


def test_the_default_does_not_retry_what_a_retry_cannot_fix():
    policy = LlmStep(id="a", prompt="hi").effective_retry()
    assert not should_retry(policy, 1, "provider", False)  # 4xx, bad credentials
    assert not should_retry(policy, 1, "timeout", False)  # the step's own `timeout:` ran out
    assert not should_retry(policy, 1, "error", False)  # a shell command failing
    assert not should_retry(policy, 1, "unavailable", False)
    assert not should_retry(ShellStep(id="s", command="exit 1").effective_retry(), 1, "error", False)


def test_retry_1_and_retry_false_turn_retries_off():
    for value in (1, False):
        policy = LlmStep(id="a", prompt="hi", retry=value).effective_retry()
        assert policy.attempts == 1
        assert not should_retry(policy, 1, "rate_limit", True)


def test_explicit_policies_keep_their_meaning():
    assert LlmStep(id="a", prompt="hi", retry=3).effective_retry().on == ["any"]
    assert LlmStep(id="a", prompt="hi", on_error="retry").effective_retry() == RetrySpec(attempts=3)
    on_timeout = RetrySpec(attempts=2, on=["timeout"])
    assert should_retry(on_timeout, 1, "timeout", False)  # asked for by name: retried


def test_the_backoff_honours_retry_after():
    assert backoff_delay(DEFAULT_RETRY, 1, 0.5) == pytest.approx(1.0)
    assert backoff_delay(DEFAULT_RETRY, 2, 0.5) == pytest.approx(2.0)
    assert backoff_delay(DEFAULT_RETRY, 1, 0.5, retry_after=7.5) == 7.5


FLOW = "name: flaky\nsteps:\n  - id: ask\n    llm: 'Hello'\n{extra}"


def _attempts(run: dict) -> list[dict]:
    return run["steps"][0]["attempts"]


@pytest.mark.parametrize("failure", ["429", "500"])
def test_a_run_survives_two_injected_failures_by_default(tmp_path, failure):
    f = write(tmp_path, "f.yaml", FLOW.format(extra=""))
    model = f"fake:flaky?fail={failure}&fail_times=2&answer=fine&retry_after=0.01"
    p = llmflow(tmp_path, "run", str(f), "--model", model, "--json")
    assert p.returncode == 0, p.stderr
    run = json.loads(p.stdout)
    assert run["status"] == "COMPLETED" and run["steps"][0]["output"] == "fine"
    attempts = _attempts(run)
    assert [a["status"] for a in attempts] == ["FAILED", "FAILED", "COMPLETED"]
    assert f"injected {failure}" in attempts[0]["error"]
    events = llmflow(tmp_path, "runs", "events", run["id"], "--json").stdout.splitlines()
    retrying = [json.loads(e) for e in events if '"STEP_RETRYING"' in e]
    assert len(retrying) == 2
    # exponential backoff: about 1 s, then about 2 s (10% jitter), Retry-After shorter
    assert 0.85 <= retrying[0]["payload"]["delay"] <= 1.15
    assert 1.75 <= retrying[1]["payload"]["delay"] <= 2.25


def test_a_long_retry_after_wins_over_the_backoff(tmp_path):
    f = write(tmp_path, "f.yaml", FLOW.format(extra=""))
    p = llmflow(
        tmp_path, "run", str(f), "--model", "fake:busy?fail=429&fail_times=1&retry_after=1.5", "--json"
    )
    assert p.returncode == 0, p.stderr
    run_id = json.loads(p.stdout)["id"]
    events = [
        json.loads(e) for e in llmflow(tmp_path, "runs", "events", run_id, "--json").stdout.splitlines()
    ]
    assert [e["payload"]["delay"] for e in events if e["type"] == "STEP_RETRYING"] == [1.5]


def test_three_failures_fail_the_step_after_three_attempts(tmp_path):
    f = write(tmp_path, "f.yaml", FLOW.format(extra=""))
    p = llmflow(tmp_path, "run", str(f), "--model", "fake:down?fail=500&fail_times=5&retry_after=0", "--json")
    assert p.returncode == 1
    run = json.loads(p.stdout)
    assert run["status"] == "FAILED"
    assert len(_attempts(run)) == 3


def test_retry_1_fails_at_the_first_transient_error(tmp_path):
    f = write(tmp_path, "f.yaml", FLOW.format(extra="    retry: 1\n"))
    p = llmflow(tmp_path, "run", str(f), "--model", "fake:once?fail=429&fail_times=1", "--json")
    assert p.returncode == 1
    run = json.loads(p.stdout)
    assert len(_attempts(run)) == 1 and "injected 429" in run["steps"][0]["error"]


def test_a_step_timeout_is_not_retried_by_default(tmp_path):
    f = write(tmp_path, "f.yaml", FLOW.format(extra="    timeout: 0.2\n"))
    p = llmflow(tmp_path, "run", str(f), "--model", "fake:slow?latency=5", "--json")
    assert p.returncode == 1
    run = json.loads(p.stdout)
    assert len(_attempts(run)) == 1 and "timed out" in run["steps"][0]["error"]


def test_a_step_naming_a_missing_function_is_not_retried_even_on_any(tmp_path):
    f = write(
        tmp_path,
        "f.yaml",
        "name: f\nsteps:\n  - id: call\n    python: {function: 'no_such_module_xyz:handler'}\n"
        "    retry: {attempts: 4, on: [any], backoff: 0}\n",
    )
    p = llmflow(tmp_path, "run", str(f), "--json")
    assert p.returncode == 1
    run = json.loads(p.stdout)
    assert len(_attempts(run)) == 1 and "cannot import 'no_such_module_xyz'" in run["steps"][0]["error"]
    events = [
        json.loads(e) for e in llmflow(tmp_path, "runs", "events", run["id"], "--json").stdout.splitlines()
    ]
    failed = [e["payload"] for e in events if e["type"] == "ATTEMPT_FAILED"]
    assert [(x["kind"], x["retryable"]) for x in failed] == [("validation", False)]
    assert not [e for e in events if e["type"] == "STEP_RETRYING"]
