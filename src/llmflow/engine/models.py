"""Model choice precedence, everywhere:
per-run option > environment > step/agent default > flow default > the embedded default.
Pure: the environment is passed in as a mapping by the composition root."""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache

from llmflow.model.spec import AgentSpec, Flow, StepSpec

DEFAULT_MODEL = "local:gemma3-270m"
# Agent Runner's per-step env vars (steps named planner / coder run on Ollama)
AGENT_RUNNER_ENV = {"planner": "OLLAMA_PLANNER_MODEL", "coder": "OLLAMA_CODER_MODEL"}


@lru_cache(maxsize=4096)  # asked on every model call; a flow has few step ids
def env_key(step_id: str) -> str:
    return "LLMFLOW_MODEL_" + "".join(c if c.isalnum() else "_" for c in step_id).upper()


def resolve_model(
    step: StepSpec,
    flow: Flow,
    *,
    agent: AgentSpec | None = None,
    run_models: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
    unit_model: str | None = None,
) -> tuple[str, str]:
    """Returns (model, where it came from)."""
    run_models = run_models or {}
    env = env or {}
    if step.id in run_models:
        return run_models[step.id], f"run option --model {step.id}=..."
    if "*" in run_models:
        return run_models["*"], "run option --model"
    k = env_key(step.id)
    if env.get(k):
        return env[k], f"environment {k}"
    if env.get("LLMFLOW_MODEL"):
        return env["LLMFLOW_MODEL"], "environment LLMFLOW_MODEL"
    ar = AGENT_RUNNER_ENV.get(step.id)
    if ar and env.get(ar):
        v = env[ar]
        return (v if v.startswith("ollama:") else f"ollama:{v}"), f"environment {ar}"
    if unit_model:
        return unit_model, "matrix variant"
    own = getattr(step, "model", None)
    if own:
        return own, f"step {step.id}"
    if agent is not None and agent.model:
        return agent.model, "agent"
    if flow.model:
        return flow.model, f"flow {flow.name}"
    return DEFAULT_MODEL, "default (embedded local model)"
