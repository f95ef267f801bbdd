"""Loading flows: provenance rows, the run record, the public load_flow / validate_flow API."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import llmflow
from llmflow.errors import FlowValidationError
from llmflow.model.loader import interpolation_target, load_flow, parse_flow_text, validate_flow
from llmflow.model.orchestra import orchestra_to_flow
from llmflow.model.spec import Flow

ROOT = Path(__file__).resolve().parents[2]
JUDGES = ROOT / "examples" / "judges"


def rows_by_path(loaded) -> dict[str, dict]:
    return {r["path"]: r for r in loaded.provenance()}


@pytest.fixture(autouse=True)
def _run_from_the_repo_root(monkeypatch):
    monkeypatch.chdir(ROOT)  # locations are shown relative to the working directory


def test_provenance_gives_file_line_and_column_of_each_value(write, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(
        "f.yaml",
        """\
        name: demo
        inputs:
          text: {type: string, description: The text}
        steps:
          - id: a
            llm: {prompt: "Say {{ inputs.text }}"}
        """,
    )
    rows = rows_by_path(load_flow("f.yaml"))
    assert rows["name"] == {"path": "name", "value": "demo", "source": "f.yaml:1:1", "origin": None}
    assert rows["inputs.text.description"]["source"] == "f.yaml:3:24"
    assert rows["steps[0].prompt"]["source"] == "f.yaml:6:11"  # the shorthand's own key
    assert rows["steps[0].kind"]["source"] == "f.yaml:5:5"  # the step
    assert list(rows) == [
        "name",
        "inputs.text.type",
        "inputs.text.description",
        "steps[0].id",
        "steps[0].kind",
        "steps[0].prompt",
    ]


def test_provenance_names_the_group_option_that_set_a_value():
    rows = rows_by_path(load_flow(JUDGES))
    assert rows["agents.judge.role"] == {
        "path": "agents.judge.role",
        "value": "judge",
        "source": "examples/judges/conf/agents/judge.yaml:2:3",
        "origin": "group option agents=judge",
    }
    assert rows["parameters.criteria[1]"]["source"] == "examples/judges/conf/flows/criteria/ordinary.yaml:2:3"
    assert rows["parameters.criteria[1]"]["origin"] == "group option flows/criteria=ordinary"
    assert rows["name"]["origin"] == "default: the key 'flows.judges'"


def test_provenance_follows_interpolations_to_where_the_value_was_set():
    rows = rows_by_path(load_flow(JUDGES, ["llms=fake"]))
    r = rows["steps[0].matrix.model[1]"]
    assert r["value"] == "fake:judge-b"
    assert r["source"] == "examples/judges/conf/flows/judges.yaml:20:9"
    assert r["interpolated_from"] == "${llms.judgers}"
    assert (
        r["interpolation_source"]
        == "examples/judges/conf/llms/fake.yaml:5:25 (group option llms=fake, set on the command line)"
    )
    r = rows["steps[0].matrix.criteria[0]"]
    assert r["interpolated_from"] == "${....parameters.criteria}"
    assert r["interpolation_source"].startswith("examples/judges/conf/flows/criteria/ordinary.yaml:1:3")


def test_provenance_of_command_line_overrides():
    rows = rows_by_path(
        load_flow(JUDGES, ["+model=fake:m", "flows.judges.description=D", "agents.judge.role=boss"])
    )
    assert rows["model"]["source"] == "command-line override '+model=fake:m'"
    assert rows["model"]["origin"] == "command-line override '+model=fake:m'"
    assert rows["description"]["source"] == "command-line override 'flows.judges.description=D'"
    assert rows["agents.judge.role"]["source"] == "command-line override 'agents.judge.role=boss'"


def test_provenance_of_an_all_in_one_flow_and_oc_env(monkeypatch):
    monkeypatch.delenv("LLMFLOW_DATA_PATH", raising=False)
    rows = rows_by_path(load_flow("examples/allinone/flow.yaml", ["parameters.judgers=[fake:a]"]))
    assert rows["name"]["origin"] == "default: the key 'tox'"
    assert rows["parameters.criteria[2]"]["source"] == "examples/allinone/flow.yaml:15:52"
    assert (
        rows["steps[0].matrix.model[0]"]["interpolation_source"]
        == "command-line override 'parameters.judgers=[fake:a]'"
    )
    path = rows["storage.tox_train.path"]
    assert path["value"] == "./data/tox_train.jsonl"
    assert path["interpolated_from"] == "${oc.env:LLMFLOW_DATA_PATH,./data}/tox_train.jsonl"
    assert "interpolation_source" not in path  # a resolver, not a key


def test_the_run_record_holds_the_spec_files_overrides_and_provenance():
    rec = load_flow(JUDGES, ["llms=fake"]).record()
    assert rec["flow"]["name"] == "judges"
    assert rec["source"] == "examples/judges/conf/flows/judges.yaml"
    assert rec["overrides"] == ["llms=fake"]
    assert "examples/judges/conf/llms/fake.yaml" in rec["files"]
    assert any(r["path"] == "steps[0].matrix.model[0]" for r in rec["provenance"])


def test_resolved_yaml_loads_back_as_the_same_flow():
    loaded = load_flow(JUDGES, ["llms=fake"])
    assert Flow.from_yaml(loaded.resolved_yaml()) == loaded.flow


@pytest.mark.parametrize(
    ("raw", "at", "target"),
    [
        ("${llms.judgers}", ("flows", "j", "steps", 0, "matrix", "model"), ("llms", "judgers")),
        ("${a.b[1].c}", ("x",), ("a", "b", 1, "c")),
        ("${.sibling}", ("a", "b", "c"), ("a", "b", "sibling")),
        (
            "${....parameters.criteria}",
            ("flows", "j", "steps", 0, "matrix", "criteria"),
            ("flows", "j", "parameters", "criteria"),
        ),
        ("${oc.env:X,y}", ("a",), None),
        ("pre ${a} post", ("a",), None),
        ("${.......too.far}", ("a",), None),
    ],
)
def test_interpolation_targets(raw, at, target):
    assert interpolation_target(raw, at) == target


def test_public_load_flow_and_validate_flow():
    loaded = llmflow.load_flow("judges", overrides=["llms=fake"], config_dir=JUDGES / "conf")
    assert loaded.flow.name == "judges"
    assert llmflow.validate_flow(JUDGES) == []
    ds = validate_flow(JUDGES, ["~flows.judges.agents.synth"])
    assert [(d.code, d.message) for d in ds] == [("unknown-agent", "step 'synth' uses unknown agent 'synth'")]
    assert ds[0].location.file == "examples/judges/conf/flows/judges.yaml"


def test_validate_flow_accepts_a_python_flow():
    from llmflow.model.spec import LlmStep

    assert validate_flow(Flow(name="f", steps=[LlmStep(id="a", prompt="hi")])) == []
    ds = validate_flow(Flow(name="f", steps=[LlmStep(id="a", prompt="{{ inputs.x }}")]))
    assert [d.code for d in ds] == ["unknown-input"]


def test_validation_errors_from_composed_flows_point_into_the_right_file(write, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write("conf/agents/a.yaml", "a:\n  modle: fake:x\n")
    write(
        "conf/flows/f.yaml",
        "defaults:\n  - _self_\n  - /agents@f.agents: [a]\nf:\n  steps: [{id: s, llm: {prompt: hi, agent: a}}]\n",
    )
    with pytest.raises(FlowValidationError) as e:
        load_flow("f")
    (d,) = e.value.diagnostics
    assert d.format() == (
        "conf/agents/a.yaml:2:3: agents.a.modle: unknown key 'modle' in agents.a "
        "(hint: did you mean 'model'?)"
    )
    assert d.location.origin == "group option agents=a"


def test_an_override_that_breaks_the_flow_is_reported_at_the_override():
    with pytest.raises(FlowValidationError) as e:
        load_flow(JUDGES, ["flows.judges.steps=5"])
    (d,) = e.value.diagnostics
    assert d.format() == (
        "command-line override 'flows.judges.steps=5': steps: steps must be a list of steps, got int "
        "(hint: write steps as a YAML list: '- id: ...')"
    )


def test_orchestra_files_become_flows():
    doc = {
        "orchestra": {"id": "research", "execution": {"strategy": "sequential"}, "workspace": {"path": "ws"}},
        "agents": [{"name": "writer", "model": "fake:w"}],
        "tasks": [
            {"name": "plan", "agent": "writer", "description": "Plan {goal}"},
            {"name": "write", "agent": "writer", "description": "Write", "context": ["plan"]},
        ],
    }
    f = parse_flow_text(Flow.model_validate(orchestra_to_flow(doc)).to_yaml())
    assert f.name == "research"
    assert [s.id for s in f.steps] == ["plan", "plan_result", "write", "write_result", "orchestra_result"]
    assert f.step("write").needs == ["plan"]
    assert "{{ steps.plan.output }}" in f.step("write").prompt
    assert f.options.workspace == os.path.abspath("ws")  # from where the command runs, as SuperOptiX
