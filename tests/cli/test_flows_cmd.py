"""`llmflow validate`, `llmflow config`, `llmflow flows list|show`, called in-process."""

from __future__ import annotations

import contextlib
import json
import textwrap
from pathlib import Path

import pytest

from llmflow.cli.main import main

ROOT = Path(__file__).resolve().parents[2]
JUDGES = "examples/judges"
ALLINONE = "examples/allinone/flow.yaml"


@pytest.fixture(autouse=True)
def _in_repo_root(monkeypatch, tmp_path):
    monkeypatch.chdir(ROOT)
    # the examples' results files (storage:) go to a temporary directory, not into the repository
    monkeypatch.setenv("LLMFLOW_RESULTS_PATH", str(tmp_path / "results"))
    monkeypatch.delenv("LLMFLOW_CONFIG_DIR", raising=False)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    with _registrations_restored(), pytest.raises(SystemExit) as e:
        main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return e.value.code, out, err


def write(tmp_path: Path, name: str, text: str) -> str:
    p = tmp_path / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(textwrap.dedent(text))
    return str(p)


@contextlib.contextmanager
def _registrations_restored():
    """main() registers the subcommands once per process; nothing to undo."""
    yield


BAD = """\
name: bad
inputs: {text: string}
stepz: 1
steps:
  - {id: a, llm: "{{ inputs.txt }}"}
  - {id: b, lmm: hi}
"""


# -- validate --------------------------------------------------------------------------------


def test_validate_exits_0_for_valid_flows(capsys):
    code, out, err = run(capsys, "validate", JUDGES, ALLINONE)
    assert code == 0
    assert out == f"ok: {JUDGES}\nok: {ALLINONE}\n"
    assert err == ""


def test_validate_every_example(capsys):
    examples = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "examples").iterdir() if p.is_dir())
    code, out, err = run(capsys, "validate", *examples)
    assert (code, err) == (0, "")


def test_validate_reports_every_problem_and_exits_2(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "bad.yaml", BAD)
    code, out, err = run(capsys, "validate", "bad.yaml")
    assert code == 2
    assert out == ""
    assert err == (
        "error: bad.yaml:3:1: stepz: unknown key 'stepz' in the flow (hint: did you mean 'steps'?)\n"
        "error: bad.yaml:5:13: steps[0].llm: unknown input 'txt' in template '{{ inputs.txt }}' (hint: did you mean 'text'?)\n"
        "error: bad.yaml:6:5: steps[1]: step 'b' has no kind (hint: did you mean 'llm'?)\n"
        "3 problems in 1 of 1 flow\n"
    )


def test_validate_json(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "bad.yaml", BAD)
    write(tmp_path, "good.yaml", "name: good\nsteps: [{id: a, llm: hi}]\n")
    code, out, err = run(capsys, "validate", "--json", "good.yaml", "bad.yaml")
    assert code == 2
    data = json.loads(out)
    assert data["good.yaml"] == {"valid": True, "diagnostics": []}
    assert data["bad.yaml"]["valid"] is False
    first = data["bad.yaml"]["diagnostics"][0]
    assert first == {
        "code": "unknown-key",
        "message": "unknown key 'stepz' in the flow",
        "path": "stepz",
        "hint": "did you mean 'steps'?",
        "location": {"file": "bad.yaml", "line": 3, "column": 1, "origin": None},
        "severity": "error",
    }


def test_validate_a_missing_flow_and_a_bad_override_exit_2(capsys):
    code, out, err = run(capsys, "validate", "nope.yaml")
    assert code == 2
    assert err.startswith("error: nope.yaml: nope.yaml: no such flow file (hint: check the path)\n")
    code, out, err = run(capsys, "validate", JUDGES, "-o", "llms=huge")
    assert code == 2
    assert "Could not find 'llms/huge'" in err
    assert "(hint: available options in 'llms': fake, full, lite)" in err


def test_validate_with_overrides(capsys):
    code, out, err = run(capsys, "validate", JUDGES, "-o", "~flows.judges.agents.synth")
    assert code == 2
    assert err.splitlines()[0] == (
        "error: examples/judges/conf/flows/judges.yaml:31:9: steps[1].llm.agent: step 'synth' uses unknown agent "
        "'synth' (hint: known agents: judge)"
    )


def test_validate_a_config_dir_validates_each_of_its_flows(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "conf/flows/a.yaml", "a:\n  steps: [{id: x, llm: hi}]\n")
    write(tmp_path, "conf/flows/b.yaml", "b:\n  steps: [{id: x, lmm: hi}]\n")
    code, out, err = run(capsys, "validate", ".")
    assert code == 2
    assert out == "ok: conf/flows/a.yaml\n"
    assert err == (
        "error: conf/flows/b.yaml:2:11: steps[0]: step 'x' has no kind (hint: did you mean 'llm'?)\n"
        "1 problem in 1 of 2 flows\n"
    )


def test_validate_needs_a_path(capsys):
    code, out, err = run(capsys, "validate")
    assert code == 2


# -- config ----------------------------------------------------------------------------------


def test_config_prints_the_resolved_flow(capsys):
    code, out, err = run(capsys, "config", JUDGES, "llms=fake")
    assert code == 0
    assert out.startswith("name: judges\ndescription: Judges (every model x every criteria set)")
    assert "    model:\n    - fake:judge-a\n    - fake:judge-b\n" in out
    assert "  prompt: |\n    Criteria: {{ matrix.criteria }}\n" in out


def test_config_output_loads_back_as_the_same_flow(capsys, tmp_path):
    from llmflow.model.loader import load_flow

    code, out, _ = run(capsys, "config", ALLINONE)
    p = write(tmp_path, "resolved.yaml", out)
    assert load_flow(p).flow == load_flow(ALLINONE).flow


def test_config_provenance(capsys):
    code, out, err = run(capsys, "config", JUDGES, "llms=fake", "+model=fake:m", "--provenance")
    assert code == 0
    lines = {line.split()[0]: line for line in out.splitlines()}
    assert lines["model"].endswith("command-line override '+model=fake:m'")
    assert lines["agents.judge.role"].endswith(
        "examples/judges/conf/agents/judge.yaml:2:3 (group option agents=judge)"
    )
    assert lines["steps[0].matrix.model[0]"].endswith(
        "examples/judges/conf/flows/judges.yaml:20:9 (group option flows=judges) via ${llms.judgers} = "
        "examples/judges/conf/llms/fake.yaml:5:11 (group option llms=fake, set on the command line)"
    )
    assert '"fake:judge-a"' in lines["steps[0].matrix.model[0]"]


def test_config_provenance_json(capsys):
    code, out, err = run(capsys, "config", ALLINONE, "--provenance", "--json")
    data = json.loads(out)
    assert data["flow"]["name"] == "tox"
    assert data["source"] == ALLINONE
    assert {
        "path": "parameters.criteria[0]",
        "value": "criteria_ordinary",
        "source": f"{ALLINONE}:15:16",
        "origin": None,
    } in data["provenance"]


@pytest.mark.parametrize(
    ("override", "check"),
    [
        ("parameters.judgers=[fake:a,fake:b]", "- fake:a\n    - fake:b\n"),
        ("tox.description=D", "description: D\n"),
        ("+version=2", "version: '2'\n"),
        ("++options.max_concurrency=3", "  max_concurrency: 3\n"),
        ("~storage", None),
    ],
)
def test_config_accepts_every_override_form(capsys, override, check):
    code, out, err = run(capsys, "config", ALLINONE, override)
    assert (code, err) == (0, "")
    if check:
        assert check in out
    else:
        assert "storage" not in out


def test_config_group_option_override(capsys):
    code, out, _ = run(capsys, "config", JUDGES, "llms=full")
    assert code == 0 and "anthropic:" in out


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "llms=huge",
            "error: cannot compose flow 'judges' (override 'llms=huge'): In 'config': Could not find 'llms/huge'\n",
        ),
        ("nope=1", "error: cannot compose flow 'judges' (override 'nope=1'): Could not override 'nope'"),
        (
            "a.b=[1,",
            "error: cannot compose flow 'judges' (override 'a.b=[1,'): no viable alternative at input '[1,'\n",
        ),
        (
            "~zzz",
            "error: cannot compose flow 'judges' (override '~zzz'): Could not delete from config. 'zzz' does not exist.\n",
        ),
    ],
)
def test_a_bad_override_exits_2_with_the_message(capsys, override, message):
    code, out, err = run(capsys, "config", JUDGES, override)
    assert code == 2
    assert out == ""
    assert err.startswith(message)
    assert "\nhint: " in err


def test_config_of_an_invalid_flow_exits_2_with_diagnostics(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "bad.yaml", BAD)
    code, out, err = run(capsys, "config", "bad.yaml")
    assert code == 2
    assert err.endswith("3 problems found; nothing was run\n")


def test_an_unsafe_template_fails_validation_with_a_clear_message(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(
        tmp_path,
        "evil.yaml",
        "name: evil\nsteps:\n  - id: a\n    shell: \"echo {{ ''.__class__.__mro__ }}\"\n",
    )
    code, out, err = run(capsys, "validate", "evil.yaml")
    assert code == 2
    assert err.splitlines()[0] == (
        "error: evil.yaml:4:5: steps[0].shell: unsafe attribute '__mro__' in template \"echo {{ ''.__class__.__mro__ }}\" "
        "(hint: templates may only read values; attributes starting with '_' and methods that change data are not allowed)"
    )


# -- flows list / show ----------------------------------------------------------------------------


def test_flows_list(capsys, tmp_path):
    code, out, err = run(capsys, "flows", "list", "-C", f"{JUDGES}/conf")
    assert code == 0
    assert out.startswith("judges                   Judges (every model x every criteria set)")
    write(tmp_path, "conf/flows/broken.yaml", "broken:\n  steps: 5\n")
    write(tmp_path, "conf/flows/fine.yaml", "fine:\n  description: Fine.\n  steps: [{id: a, llm: hi}]\n")
    code, out, err = run(capsys, "flows", "list", "-C", str(tmp_path / "conf"), "--json")
    rows = json.loads(out)
    assert [(r["name"], r["valid"]) for r in rows] == [("broken", False), ("fine", True)]
    assert "steps must be a list of steps" in rows[0]["description"]
    code, out, err = run(capsys, "flows", "list", "-C", str(tmp_path / "empty"))
    assert (code, out) == (0, f"no flows in {tmp_path / 'empty'}/flows\n")


def test_flows_list_uses_the_config_dir_from_the_environment(capsys, monkeypatch):
    monkeypatch.setenv("LLMFLOW_CONFIG_DIR", f"{JUDGES}/conf")
    code, out, _ = run(capsys, "flows", "list")
    assert out.startswith("judges ")


def test_flows_show(capsys):
    code, out, err = run(capsys, "flows", "show", "judges", "-C", f"{JUDGES}/conf", "llms=fake")
    assert code == 0
    assert out == (
        "judges (version 1)\n"
        "  Judges (every model x every criteria set) assess a text; a synthesiser combines their verdicts.\n"
        "inputs:\n"
        "  text: string (required) - The text to assess\n"
        "agents:\n"
        "  judge: (default model)\n"
        "  synth: fake:synth\n"
        "steps:\n"
        "  judge [llm]\n"
        "  synth [llm] <- judge\n"
    )


def test_flows_show_graph_prints_mermaid(capsys):
    code, out, err = run(capsys, "flows", "show", ALLINONE, "--graph")
    assert code == 0
    assert out == (
        "flowchart TD\n"
        '    judge["judge<br/><small>llm</small>"]\n'
        '    confirm["confirm<br/><small>human</small>"]\n'
        '    synth["synth<br/><small>llm</small>"]\n'
        '    report["report<br/><small>write_file</small>"]\n'
        "    judge --> confirm\n"
        "    judge --> synth\n"
        "    confirm --> synth\n"
        "    synth --> report\n"
    )


def test_flows_show_json_and_unknown_names(capsys):
    code, out, _ = run(capsys, "flows", "show", ALLINONE, "--json")
    assert json.loads(out)["name"] == "tox"
    code, out, err = run(capsys, "flows", "show", "judgs", "-C", f"{JUDGES}/conf")
    assert code == 2
    assert err == "error: no flow named 'judgs'\nhint: did you mean 'judges'?\n"
