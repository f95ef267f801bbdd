"""Resolve ``provider:model`` specs to provider instances.

Built by the composition root (``runtime/root.py``) with the process environment, for the
providers' own keys and hosts, and the typed settings (``LLMFLOW_MODEL``...)::

    registry = ProviderRegistry(settings.env, default_model=settings.default_model,
                                fake_scripts={"critic": FakeScript(answers=["yes"])})
    provider, model = registry.resolve("openai:gpt-4o-mini")   # (PydanticAIProvider, "gpt-4o-mini")
    async for item in provider.stream(ModelRequest(model, messages)): ...

Names: ``fake``, ``local``, ``openai``, ``anthropic``, ``gemini`` (alias ``google``),
``ollama``, every OpenAI-compatible host named by ``LLMFLOW_PROVIDER_<NAME>_BASE_URL``, and
providers that plugins add to the one plugin registry (:mod:`llmflow.model.registry`: a
factory called as ``factory(name, env)`` returning a Provider). The built-in names stay
here: ``fake`` takes the scripts given to this registry and the OpenAI-compatible hosts come
from the environment, which a ``factory(name, env)`` plugin hook cannot carry. One instance per provider name is
kept. ``allow_real=False`` (the test suite's setting) refuses everything except ``fake``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from llmflow.errors import ProviderUnavailableError
from llmflow.model.registry import registry as plugins
from llmflow.providers.base import Provider, Usage, split_model

DEFAULT_MODEL = "local:gemma3-270m"
BUILTIN_PROVIDERS = ("fake", "local", "openai", "anthropic", "gemini", "ollama")
ALIASES = {"google": "gemini"}
ENTRY_POINT_GROUP = "llmflow.providers"
BLOCKED_MESSAGE = (
    "real model calls are blocked in tests; opt in with ProviderRegistry(..., allow_real=True) "
    "(in the test suite: @pytest.mark.real_model), or use a fake: model"
)


class ProviderRegistry:
    """Maps provider names to (lazily created, cached) provider instances."""

    def __init__(
        self,
        env: Mapping[str, str],
        *,
        fake_scripts: Mapping[str, Any] | None = None,
        allow_real: bool = True,
        prices: Mapping[str, Any] | None = None,
        default_model: str | None = None,
        local_model_dir: Path | None = None,
        ollama_pull: bool = False,
    ) -> None:
        self.env = dict(env)  # provider keys and hosts, whose names llmflow does not own
        self._default_model = default_model
        self._local_model_dir = local_model_dir
        self._ollama_pull = ollama_pull
        self.allow_real = allow_real
        self._fake_scripts = dict(fake_scripts or {})
        self._prices = prices
        self._price_table: Any = None
        self._instances: dict[str, Provider] = {}
        self._custom: list[str] | None = None

    @property
    def default_model(self) -> str:
        """The one given (the ``LLMFLOW_MODEL`` setting), else :data:`DEFAULT_MODEL`."""
        return self._default_model or DEFAULT_MODEL

    def custom_names(self) -> list[str]:
        """OpenAI-compatible hosts from ``LLMFLOW_PROVIDER_<NAME>_BASE_URL`` (built-in names win)."""
        if self._custom is None:
            from llmflow.providers.pydantic_ai_provider import custom_provider_names

            names = custom_provider_names(self.env)
            self._custom = [n for n in names if n not in BUILTIN_PROVIDERS and n not in ALIASES]
        return self._custom

    def _is_custom(self, name: str) -> bool:
        return name.replace("-", "_") in self.custom_names()

    def plugin_names(self) -> list[str]:
        """Providers registered by plugins under the ``llmflow.providers`` entry-point group."""
        return sorted(_plugin_factories())

    def known_providers(self) -> list[str]:
        return [*BUILTIN_PROVIDERS, *ALIASES, *self.custom_names(), *self.plugin_names()]

    def resolve(self, model_spec: str) -> tuple[Provider, str]:
        """``"openai:gpt-4o-mini"`` -> (the openai provider, ``"gpt-4o-mini"``)."""
        spec = (model_spec or "").strip() or self.default_model
        if ":" not in spec:
            raise ProviderUnavailableError(
                f"model {spec!r} does not name a provider; write it as provider:model",
                hint=f"e.g. openai:{spec} or ollama:{spec}; known providers: {', '.join(self.known_providers())}",
            )
        provider_name, model = split_model(spec)
        provider_name = ALIASES.get(provider_name, provider_name)
        known = provider_name in (*BUILTIN_PROVIDERS, *ALIASES) or self._is_custom(provider_name)
        if not known and provider_name not in _plugin_factories():
            raise self._unknown(provider_name, spec)
        if provider_name != "fake" and not self.allow_real:
            raise ProviderUnavailableError(f"{spec}: {BLOCKED_MESSAGE}", hint="use fake: models in tests")
        instance = self._instances.get(provider_name)
        if instance is None:
            instance = self._instances[provider_name] = self._create(provider_name, spec)
        return instance, model

    def fake(self) -> Any:
        """The fake provider (to register scripts after construction)."""
        return self.resolve("fake:")[0]

    def _create(self, name: str, spec: str) -> Provider:
        if name == "fake":
            from llmflow.providers.fake import FakeProvider

            return FakeProvider(self._fake_scripts)
        if name == "local":
            from llmflow.providers.local import LocalProvider

            return LocalProvider(cache_dir=str(self._local_model_dir) if self._local_model_dir else None)
        if name == "ollama":
            from llmflow.providers.ollama import OllamaProvider

            return OllamaProvider.from_env(self.env, allow_pull=self._ollama_pull)
        if name in ("openai", "anthropic", "gemini") or self._is_custom(name):
            from llmflow.providers.pydantic_ai_provider import PydanticAIProvider

            return PydanticAIProvider.from_env(name, self.env)
        factory = _plugin_factories().get(name)
        if factory is None:
            raise self._unknown(name, spec)
        return factory(name, self.env)

    def _unknown(self, name: str, spec: str) -> ProviderUnavailableError:
        return ProviderUnavailableError(
            f"unknown provider {name!r} in model {spec!r}; known providers: {', '.join(self.known_providers())}",
            hint=f"or point an OpenAI-compatible server at it: LLMFLOW_PROVIDER_{name.upper().replace('-', '_')}_BASE_URL=http://host/v1",
        )

    def cost(self, model_spec: str, usage: Usage) -> float | None:
        """USD for ``usage`` on ``model_spec`` from the price table (``None`` when unpriced)."""
        from llmflow.providers import pricing

        if self._price_table is None:
            self._price_table = pricing.price_table(self._prices)
        return pricing.cost(model_spec, usage, self._price_table)

    async def aclose(self) -> None:
        for instance in self._instances.values():
            await instance.aclose()
        self._instances.clear()


def _plugin_factories() -> dict[str, Callable[[str, Mapping[str, str]], Provider]]:
    """Provider factories plugins added to the one plugin registry (``add_provider`` in a
    ``llmflow.plugins`` hook, or the ``llmflow.providers`` entry-point group)."""
    plugins.load_plugins()
    return {name: factory for name, factory in plugins.providers.items() if name not in BUILTIN_PROVIDERS}
