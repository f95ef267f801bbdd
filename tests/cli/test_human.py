"""Human questions in the CLI: typed in a terminal, piped one line each, and at end of file
never confirmed silently: a question without a default fails its step, one with a default
gets it (and the CLI says so). The hint is shown once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .terminal import in_terminal, piped

ROOT = Path(__file__).resolve().parents[2]
ASK = """\
name: ask
steps:
  - id: approve
    human: {prompt: "Publish the draft?", input: confirm, on_reject: continue}
  - id: name
    human: {prompt: "Your name?", default: anon}
  - id: tone
    human: {prompt: "Which tone?", input: choice, options: [dry, warm]}
outputs:
  approved: "{{ steps.approve.output }}"
  name: "{{ steps.name.output }}"
  tone: "{{ steps.tone.output }}"
"""


@pytest.fixture
def home(tmp_path: Path) -> Path:
    (tmp_path / "ask.yaml").write_text(ASK)
    return tmp_path


def test_at_end_of_file_a_question_without_a_default_fails_its_step(home):
    p = piped(home, "run", "ask.yaml", "--json", input="")
    assert p.returncode == 1
    run = json.loads(p.stdout)
    approve = run["steps"][0]
    assert run["status"] == "FAILED" and approve["status"] == "FAILED"
    assert approve["error"].startswith("no answer to 'Publish the draft?': standard input is at end of file;")
    assert "--no-human" in approve["error"] and "Traceback" not in p.stderr
    assert [s["status"] for s in run["steps"][1:]] == ["CANCELED", "CANCELED"]


def test_at_end_of_file_a_default_answers_and_the_cli_says_so(home):
    p = piped(home, "run", "ask.yaml", "--json", input="y\n")  # approve answered; then end of file
    run = json.loads(p.stdout)
    assert run["steps"][1]["output"] == "anon"
    assert "no answer to 'Your name?': standard input is at end of file; using its default 'anon'" in p.stderr
    assert run["steps"][2]["status"] == "FAILED"  # the choice has no default: it fails, it is not guessed


def test_piped_answers_one_line_per_question(home):
    p = piped(home, "run", "ask.yaml", "--json", input="n\nAda\n2\n")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["outputs"] == {"approved": False, "name": "Ada", "tone": "warm"}


def test_no_human_answers_with_defaults_and_says_which(home):
    p = piped(home, "run", "ask.yaml", "--no-human", "--json")
    assert p.returncode == 0
    assert json.loads(p.stdout)["outputs"] == {"approved": True, "name": "anon", "tone": "dry"}
    assert "--no-human: answering 'Publish the draft?' with yes" in p.stderr
    assert "--no-human: answering 'Your name?' with the default 'anon'" in p.stderr


def test_in_a_terminal_each_question_is_asked_once_with_one_hint(home):
    r = in_terminal(
        home,
        "run",
        "ask.yaml",
        answers=[("Publish the draft?", ""), ("Your name?", "Grace"), ("Which tone?", "1")],
    )
    assert r.code == 0, r.text
    assert r.text.count("?? Publish the draft? [Enter confirms, n rejects]") == 1
    assert "?? Your name? [Enter: anon]" in r.text and "?? Which tone? [1: dry, 2: warm]" in r.text
    assert "name: Grace" in r.text and "tone: dry" in r.text


def test_conductor_confirmations_carry_no_terminal_wording_in_the_question(tmp_path):
    r = in_terminal(
        tmp_path, "run", str(ROOT / "examples" / "panel"), answers=[("Proceed?", ""), ("Proceed?", "n")]
    )
    assert r.code == 0, r.text
    assert "?? Next: optimist. Proceed? [Enter confirms, n rejects]" in r.text
    assert "(Enter confirms" not in r.text  # the hint is the console's, once


def test_a_conductor_at_end_of_file_fails_instead_of_confirming(tmp_path):
    p = piped(tmp_path, "run", str(ROOT / "examples" / "panel"), "--json", input="")
    assert p.returncode == 1
    assert "no answer to 'Next: optimist. Proceed?'" in json.loads(p.stdout)["error"]
