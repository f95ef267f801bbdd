"""Problems with a run's models are found before the run starts: an unknown provider, a
model without a provider, a missing API key or a bad fake option is exit 2 with the fix, and
nothing is recorded. `--model provider:model?opt=v` is a model for every step."""

from __future__ import annotations

import json

import pytest

from llmflow.errors import FlowValidationError
from llmflow.providers.preflight import check_flow_models, model_problem
from llmflow.providers.registry import ProviderRegistry
from llmflow.runtime import build_runtime

from .terminal import env_for, in_terminal, piped

FLOW = """\
name: two
agents:
  critic: {model: "antropic:claude-3-5-haiku"}
steps:
  - id: draft
    llm: "Write a line"
  - id: review
    llm: {prompt: "Review {{ steps.draft.output }}", agent: critic}
"""


def registry(**env: str) -> ProviderRegistry:
    return ProviderRegistry(env)


@pytest.mark.parametrize(
    ("model", "message", "fix"),
    [
        ("gpt-4o", "does not name a provider", "e.g. ollama:gpt-4o or openai:gpt-4o"),
        ("opnai:gpt-4o", "unknown provider 'opnai'", "did you mean 'openai'?"),
        ("openai:gpt-4o", "OPENAI_API_KEY is not set", "export OPENAI_API_KEY=..."),
        ("anthropic:claude", "ANTHROPIC_API_KEY is not set", "export ANTHROPIC_API_KEY=..."),
        (
            "gemini:gemini-2.5-flash",
            "GEMINI_API_KEY or GOOGLE_API_KEY is not set",
            "export GEMINI_API_KEY=...",
        ),
        ("fake:?colour=red", "unknown fake model option(s): colour", "known options:"),
        ("openai:", "names no model", "openai:gpt-4o-mini"),
    ],
)
def test_a_model_that_cannot_work_is_named_with_its_fix(model, message, fix):
    problem = model_problem(registry(), model)
    assert problem is not None
    assert message in problem[0] and fix in problem[1]


@pytest.mark.parametrize(
    "model", ["fake:", "fake:?latency=0.2&answer=x", "ollama:llama3.1:8b", "local:gemma3-270m"]
)
def test_models_that_can_work_pass(model):
    assert model_problem(registry(), model) is None


def test_keys_base_urls_and_custom_hosts_make_hosted_models_pass():
    assert model_problem(registry(OPENAI_API_KEY="sk-test"), "openai:gpt-4o") is None
    assert (
        model_problem(registry(OPENAI_BASE_URL="http://127.0.0.1:9/v1"), "openai:local") is None
    )  # a proxy may need no key
    assert model_problem(registry(GOOGLE_API_KEY="k"), "google:gemini-2.5-flash") is None
    assert (
        model_problem(registry(LLMFLOW_PROVIDER_VLLM_BASE_URL="http://127.0.0.1:9/v1"), "vllm:qwen") is None
    )


def test_every_step_and_agent_is_checked_with_the_model_it_will_use(tmp_path):
    f = tmp_path / "two.yaml"
    f.write_text(FLOW)
    rt = build_runtime(env={"LLMFLOW_HOME": str(tmp_path)})
    loaded = rt.load(str(f))
    diags = check_flow_models(loaded.flow, rt.gateway.registry, {}, {}, loaded=loaded)
    assert len(diags) == 1
    d = diags[0]
    assert d.path == "agents.critic.model" and (d.location.file, d.location.line) == (str(f), 3)
    assert "used by step review" in d.message and "did you mean 'anthropic'?" in d.hint
    # a per-run choice for every step replaces both models; one per step only that step's
    assert check_flow_models(loaded.flow, rt.gateway.registry, {"*": "fake:"}, {}) == []
    assert len(check_flow_models(loaded.flow, rt.gateway.registry, {"draft": "fake:"}, {})) == 1
    # nothing is recorded for a refused run
    with pytest.raises(FlowValidationError):
        rt.create_run(loaded, {})
    assert rt.store.list_runs() == []
    rt.close()


def test_the_cli_refuses_before_running_with_the_file_line_and_the_fix(tmp_path):
    (tmp_path / "two.yaml").write_text(FLOW)
    p = piped(tmp_path, "run", "two.yaml", env=env_for(tmp_path, LLMFLOW_MODEL=""))  # the flow's own models
    assert p.returncode == 2, p.stdout + p.stderr
    assert (
        "two.yaml:3:" in p.stderr
        and "unknown provider 'antropic'" in p.stderr
        and "did you mean 'anthropic'?" in p.stderr
    )
    assert "nothing was run" in p.stderr and "Traceback" not in p.stderr
    assert json.loads(piped(tmp_path, "runs", "list", "--json").stdout) == []


def test_a_missing_key_from_the_command_line_names_the_option_and_the_variable(tmp_path):
    (tmp_path / "two.yaml").write_text(FLOW)
    p = piped(tmp_path, "run", "two.yaml", "--model", "openai:gpt-4o-mini")
    assert p.returncode == 2
    assert (
        "--model: openai:gpt-4o-mini needs an API key: OPENAI_API_KEY is not set (used by steps draft, review)"
        in p.stderr
    )
    assert "export OPENAI_API_KEY=..." in p.stderr


def test_a_model_value_with_options_is_a_model_for_every_step(tmp_path):
    (tmp_path / "two.yaml").write_text(FLOW)
    p = piped(tmp_path, "run", "two.yaml", "--model", "fake:?latency=0.01&answer=ok", "--json")
    assert p.returncode == 0, p.stderr
    run = json.loads(p.stdout)
    assert [s["model"] for s in run["steps"]] == ["fake:?latency=0.01&answer=ok"] * 2
    p = piped(
        tmp_path,
        "run",
        "two.yaml",
        "--model",
        "review=fake:?answer=b",
        "--model",
        "draft=fake:?answer=a",
        "--json",
    )
    assert [s["output"] for s in json.loads(p.stdout)["steps"]] == ["a", "b"]
    p = piped(tmp_path, "run", "two.yaml", "--model", "gpt-4o")
    assert p.returncode == 2 and "expected STEP=provider:model, or provider:model for every step" in p.stderr


def test_the_same_refusal_in_a_terminal(tmp_path):
    (tmp_path / "two.yaml").write_text(FLOW)
    r = in_terminal(tmp_path, "run", "two.yaml", "--model", "review=olama:llama3")
    assert r.code == 2
    assert "--model review=...: unknown provider 'olama'" in r.text and "did you mean 'ollama'?" in r.text
    assert "Traceback" not in r.text


def test_a_missing_input_names_the_file_and_the_flag(tmp_path):
    (tmp_path / "f.yaml").write_text(
        "name: f\ninputs:\n  n: {type: integer}\nsteps:\n  - id: a\n    llm: 'hi {{ inputs.n }}'\n"
    )
    p = piped(tmp_path, "run", "f.yaml")
    assert p.returncode == 2
    assert (
        "error: f.yaml: inputs.n: missing required input 'n' (integer) (hint: pass it with --input n=...)"
        in p.stderr
    )
    assert "<flow>" not in p.stderr


def test_a_batch_with_a_model_that_cannot_work_is_refused_and_not_recorded(tmp_path):
    (tmp_path / "f.yaml").write_text(
        "name: f\ninputs:\n  text: {type: string}\nsteps:\n  - id: a\n    llm: '{{ inputs.text }}'\n"
    )
    (tmp_path / "d.jsonl").write_text('{"text": "a"}\n{"text": "b"}\n')
    p = piped(tmp_path, "batch", "f.yaml", "--data", "d.jsonl", "--model", "openai:gpt-4o-mini")
    assert p.returncode == 2 and "OPENAI_API_KEY is not set" in p.stderr
    assert json.loads(piped(tmp_path, "batches", "list", "--json").stdout) == []
