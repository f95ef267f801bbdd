"""Composition with Hydra: config dirs, defaults lists, packages, interpolation, overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

import llmflow
from llmflow.errors import CompositionError, FlowNotFoundError, FlowValidationError
from llmflow.model.compose import compose
from llmflow.model.loader import list_flows, load_flow, validate_flow
from llmflow.model.targets import find_target

ROOT = Path(__file__).resolve().parents[2]
JUDGES = ROOT / "examples" / "judges"
ALLINONE = ROOT / "examples" / "allinone" / "flow.yaml"


@pytest.fixture
def conf(write, tmp_path) -> Path:
    """A small project config dir with two flows, agents and llm buckets."""
    write("conf/config.yaml", "defaults:\n  - _self_\n  - llms: lite\nrun: {human_in_loop: true}\n")
    write("conf/llms/lite.yaml", "general: [fake:lite]\n")
    write("conf/llms/big.yaml", "general: [fake:big]\n")
    write("conf/agents/critic.yaml", "critic:\n  model: ${llms.general[0]}\n  system: Be critical.\n")
    write("conf/agents/fan.yaml", "fan:\n  system: Be kind.\n")
    write(
        "conf/flows/review.yaml",
        """\
        defaults:
          - _self_
          - /agents@review.agents: [critic, fan]
        review:
          description: Review a text.
          inputs: {text: string}
          model: ${oc.env:REVIEW_MODEL,fake:default}
          parameters:
            human: ${run.human_in_loop}
          steps:
            - {id: crit, broadcast: {agents: [critic, fan]}}
            - {id: sum, llm: "Sum up {{ steps.crit.outputs | tojson }}"}
        """,
    )
    write("conf/flows/other.yaml", "other:\n  steps: [{id: a, llm: hi}]\n")
    return tmp_path / "conf"


def test_a_hierarchical_flow_composes_from_groups(conf):
    f = load_flow("review", config_dir=conf).flow
    assert f.name == "review"
    assert set(f.agents) == {"critic", "fan"}
    assert f.agents["critic"].model == "fake:lite"
    assert f.model == "fake:default"
    assert f.parameters == {"human": True}


def test_group_option_override(conf):
    f = load_flow("review", ["llms=big"], config_dir=conf).flow
    assert f.agents["critic"].model == "fake:big"


def test_key_value_override_with_the_full_key(conf):
    f = load_flow("review", ["flows.review.description=Changed"], config_dir=conf).flow
    assert f.description == "Changed"


def test_overrides_relative_to_the_flow(conf):
    c = conf
    assert load_flow("review", ["description=Short"], c).flow.description == "Short"
    assert load_flow("review", ["+agents.fan.model=fake:fan"], c).flow.agents["fan"].model == "fake:fan"
    assert load_flow("review", ["model=fake:m"], c).flow.model == "fake:m"
    assert load_flow("review", ["+options.max_concurrency=2"], c).flow.options.max_concurrency == 2
    assert load_flow("review", ["++version=7"], c).flow.version == "7"
    assert (
        "fan" not in load_flow("review", ["~agents.fan", "steps.0.broadcast.agents=[critic]"], c).flow.agents
    )


def test_root_keys_and_groups_are_not_made_relative(conf):
    c = conf
    f = load_flow("review", ["run.human_in_loop=false"], c).flow
    assert f.parameters == {"human": False}


def test_add_and_delete_overrides(conf):
    c = conf
    loaded = load_flow("review", ["+flows.review.outputs={summary: '{{ steps.sum.output }}'}"], c)
    assert loaded.flow.outputs == {"summary": "{{ steps.sum.output }}"}
    with pytest.raises(FlowValidationError) as e:
        load_flow("review", ["~flows.review.agents.fan"], c)
    assert [d.message for d in e.value.diagnostics] == ["step 'crit' uses unknown agent 'fan'"]


def test_several_flows_can_be_composed_together(conf):
    loaded = load_flow("review", ["+flows=[review,other]"], conf)
    assert loaded.flow.name == "review"
    assert set(loaded.composed.root["flows"]) == {"review", "other"}


def test_oc_env_interpolation(conf, monkeypatch):
    monkeypatch.setenv("REVIEW_MODEL", "fake:from-env")
    assert load_flow("review", [], conf).flow.model == "fake:from-env"


def test_a_single_file_works_without_a_config_dir(write, tmp_path):
    p = write(
        "alone/hello.yaml", "name: hello\nmodel: ${oc.env:NOPE_NOT_SET,fake:x}\nsteps: [{id: a, llm: hi}]\n"
    )
    loaded = load_flow(p, ["+description=hi"])
    assert (loaded.flow.name, loaded.flow.model, loaded.flow.description) == ("hello", "fake:x", "hi")
    assert loaded.composed.target.mode == "file"


def test_a_file_named_after_nothing_gets_its_name_from_the_file(write):
    p = write("x/greet.yaml", "steps: [{id: a, llm: hi}]\n")
    assert load_flow(p).flow.name == "greet"


def test_the_hierarchical_example():
    loaded = llmflow.load_flow(JUDGES, overrides=["llms=fake"])
    f = loaded.flow
    assert f.name == "judges"
    assert set(f.agents) == {"judge", "synth"}
    judge = f.step("judge")
    assert judge.matrix == {
        "model": ["fake:judge-a", "fake:judge-b"],
        "criteria": ["criteria_ordinary", "criteria_gelber"],
    }
    assert f.agents["synth"].model == "fake:synth"
    assert "steps.judge.outputs" in f.step("synth").prompt
    hate = load_flow(JUDGES, ["flows/criteria@flows.judges.parameters.criteria=hate"]).flow
    assert hate.parameters["criteria"][-1] == "criteria_hatefb_factorised"
    assert hate.step("judge").matrix["criteria"] == hate.parameters["criteria"]
    full = load_flow(JUDGES, ["llms=full"]).flow
    assert len(full.step("judge").matrix["model"]) == 3


def test_the_hierarchical_example_by_name_and_by_file():
    conf = JUDGES / "conf"
    assert load_flow("judges", config_dir=conf).flow == load_flow(JUDGES).flow
    assert load_flow(conf / "flows" / "judges.yaml").flow == load_flow(JUDGES).flow
    assert list_flows(conf) == ["judges"]


def test_the_all_in_one_example():
    f = load_flow(ALLINONE, ["parameters.judgers=[fake:a,fake:b]"]).flow
    assert f.name == "tox"
    assert f.step("judge").matrix["model"] == ["fake:a", "fake:b"]
    assert f.step("judge").matrix["criteria"] == f.parameters["criteria"]
    assert f.storage["tox_train"]["path"].endswith("/tox_train.jsonl")
    assert [s.kind for s in f.steps] == ["llm", "human", "llm", "write_file"]


def test_every_example_validates():
    examples = sorted(p for p in (ROOT / "examples").iterdir() if p.is_dir())
    assert {"allinone", "judges"} <= {p.name for p in examples}
    for p in examples:
        assert validate_flow(p) == [], p
        assert (p / "README.md").is_file(), p


# -- errors ----------------------------------------------------------------------------------


def test_a_bad_override_is_a_composition_error(conf):
    c = conf
    with pytest.raises(CompositionError) as e:
        load_flow("review", ["llms=huge"], c)
    assert (
        e.value.message
        == "cannot compose flow 'review' (override 'llms=huge'): In 'config': Could not find 'llms/huge'"
    )
    assert e.value.hint == "available options in 'llms': big, lite"
    with pytest.raises(CompositionError) as e:
        load_flow("review", ["nothing_here=1"], c)
    assert e.value.message.startswith(
        "cannot compose flow 'review' (override 'nothing_here=1'): Could not override 'nothing_here'"
    )
    assert e.value.hint == "To append to your config use +nothing_here=1"
    with pytest.raises(CompositionError) as e:
        load_flow("review", ["agents.fan.model=fake:x"], c)
    assert e.value.message == (
        "cannot compose flow 'review' (override 'agents.fan.model=fake:x'): "
        "Could not override 'agents.fan.model': Key 'model' is not in struct"
    )
    assert e.value.hint == "To append to your config use +agents.fan.model=fake:x"
    with pytest.raises(CompositionError) as e:
        load_flow("review", ["a.b=[1,"], c)
    assert "no viable alternative at input" in e.value.message
    with pytest.raises(CompositionError):
        load_flow("review", ["~nope"], c)
    assert isinstance(e.value, ValueError)


def test_a_missing_interpolation_is_a_located_composition_error(write):
    p = write("x/f.yaml", "name: f\nmodel: ${llms.nope}\nsteps: [{id: a, llm: hi}]\n")
    with pytest.raises(CompositionError) as e:
        load_flow(p)
    assert e.value.message.startswith(
        "x/f.yaml:2:1: cannot resolve model: Interpolation key 'llms.nope' not found"
    ) or (
        e.value.message.endswith("cannot resolve model: Interpolation key 'llms.nope' not found")
        and ":2:1: " in e.value.message
    )


def test_broken_yaml_in_a_group_file_is_a_located_yaml_diagnostic(conf, write):
    write("conf/agents/fan.yaml", "fan:\n  system: [oops\n  x: 1\n")
    with pytest.raises(FlowValidationError) as e:
        load_flow("review", [], conf)
    (d,) = e.value.diagnostics
    assert d.code == "yaml-syntax"
    assert d.location.file.endswith("conf/agents/fan.yaml") and d.location.line == 3


def test_a_flow_file_must_hold_a_mapping(write):
    for text, got in (("- a\n", "a list"), ("false\n", "the value 'false'")):
        p = write("x/f.yaml", text)
        with pytest.raises(FlowValidationError) as e:
            load_flow(p)
        (d,) = e.value.diagnostics
        assert (d.code, d.message, d.location.line) == (
            "invalid-value",
            f"a flow file must hold a mapping, got {got}",
            1,
        )


def test_a_group_file_that_is_not_a_mapping_is_a_composition_error(conf, write):
    write("conf/agents/fan.yaml", "true\n")
    with pytest.raises(CompositionError) as e:
        load_flow("review", [], conf)
    assert e.value.message == "cannot compose flow 'review': OSError: Invalid loaded object type: bool"


def test_an_override_without_a_key(conf):
    with pytest.raises(CompositionError, match=r"override '\+=x' has no key"):
        load_flow("review", ["+=x"], conf)


def test_duplicate_keys_in_the_flow_file_are_reported(write):
    p = write("x/f.yaml", "name: f\nsteps: [{id: a, llm: hi}]\nname: g\n")
    with pytest.raises(FlowValidationError) as e:
        load_flow(p)
    assert e.value.diagnostics[0].message == "duplicate key 'name' (first at line 1)"


def test_flow_not_found(conf, tmp_path):
    with pytest.raises(FlowNotFoundError) as e:
        load_flow("reveiw", [], conf)
    assert (e.value.message, e.value.hint) == ("no flow named 'reveiw'", "did you mean 'review'?")
    with pytest.raises(FlowNotFoundError) as e:
        load_flow("nothing/here.yaml")
    assert e.value.message == "nothing/here.yaml: no such flow file"
    with pytest.raises(FlowNotFoundError):
        load_flow(tmp_path)  # a directory without flow.yaml or conf/
    assert validate_flow("reveiw", [], conf)[0].code == "not-found"
    assert validate_flow("review", ["llms=huge"], conf)[0].code == "composition"


def test_find_target_modes(conf):
    t = find_target("review", conf)
    assert (t.mode, t.flow_name, t.config_name) == ("group", "review", "config")
    t = find_target(str(ALLINONE))
    assert (t.mode, t.flow_name, t.config_name) == ("file", None, "flow")
    t = find_target(str(JUDGES))
    assert (t.mode, t.flow_name) == ("group", "judges")


def test_compose_keeps_what_hydra_was_given(conf):
    c = compose(find_target("review", conf), ["description=x"])
    assert c.overrides == ["description=x"]
    assert c.applied == ["+flows=review", "flows.review.description=x"]
    assert c.flow_path == ("flows", "review")
