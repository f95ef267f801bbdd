"""SuperOptiX playbooks as flows (pure conversion) and through the loader."""

from __future__ import annotations

from pathlib import Path

from llmflow.model.loader import load_flow, parse_flow_text
from llmflow.model.playbook import is_playbook, playbook_to_flow

EXAMPLE = (
    Path(__file__).resolve().parents[2] / "examples" / "eval-sentiment" / "sentiment_analyzer_playbook.yaml"
)

GENIE = """
apiVersion: agent/v1
kind: AgentSpec
metadata: {name: Math Helper, version: 2}
spec:
  language_model: {provider: ollama, model: "llama3.1:8b", temperature: 0.3}
  persona: {role: a patient tutor, goal: Explain arithmetic, traits: [kind, precise]}
  tools: {enabled: true, specific_tools: [calculator]}
  input_fields: [{name: question, type: str}]
  output_fields: [{name: answer, type: str}]
  tasks:
    - {name: solve, instruction: Solve the problem step by step.}
  feature_specifications:
    scenarios:
      - {name: add, input: "What is 2+2?", expected_output: {answer: "4"}}
"""


def test_the_example_playbook_loads_as_a_flow_with_its_scenarios_as_data() -> None:
    f = load_flow(EXAMPLE).flow
    assert f.name == "sentiment_analyzer" and f.version == "1.0.0" and list(f.inputs) == ["text"]
    agent = f.agents["sentiment_analyzer"]
    assert agent.model == "local:gemma3-270m" and agent.params == {"temperature": 0.1, "max_tokens": 64}
    assert agent.system.startswith("You are a careful sentiment analyst.")
    (step,) = f.steps
    assert (
        step.id == "classify_sentiment"
        and step.agent == "sentiment_analyzer"
        and "{{ inputs.text }}" in step.prompt
    )
    assert step.output["required"] == ["sentiment", "confidence"] and step.output["properties"][
        "confidence"
    ] == {"type": "number"}
    assert f.outputs == {
        "sentiment": "{{ steps.classify_sentiment.output.sentiment }}",
        "confidence": "{{ steps.classify_sentiment.output.confidence }}",
    }
    assert [r["record_id"] for r in f.data] == [
        "positive_sentiment_clear",
        "negative_sentiment_clear",
        "neutral_statement",
    ]
    assert f.data[0]["expected_output"] == {"sentiment": "positive"} and f.data[0]["text"].startswith(
        "This product is amazing"
    )


def test_a_genie_playbook_brings_persona_tools_and_a_text_output() -> None:
    f = parse_flow_text(GENIE)
    a = f.agents["Math_Helper"]
    assert a.model == "ollama:llama3.1:8b" and [t.tool for t in a.tools] == ["calculator"]
    assert a.system == "You are a patient tutor.\nGoal: Explain arithmetic\nTraits: kind, precise"
    assert (
        f.steps[0].id == "solve"
        and f.steps[0].output is None
        and f.outputs == {"answer": "{{ steps.solve.output }}"}
    )
    assert f.data == [{"record_id": "add", "question": "What is 2+2?", "expected_output": {"answer": "4"}}]


def test_stages_run_in_order_and_each_sees_the_previous_output() -> None:
    doc = {
        "apiVersion": "agent/v1",
        "kind": "AgentSpec",
        "metadata": {"id": "two"},
        "spec": {"tasks": [{"name": "a", "instruction": "First."}, {"name": "b", "instruction": "Second."}]},
    }
    f = playbook_to_flow(doc)
    assert [s["id"] for s in f["steps"]] == ["a", "b"] and "{{ steps.a.output }}" in f["steps"][1]["prompt"]
    assert f["inputs"] == {"query": {"type": "string", "description": "The request"}} and "data" not in f
    assert (
        is_playbook(doc) and not is_playbook({"kind": "AgentSpec"}) and not is_playbook({**doc, "steps": []})
    )
