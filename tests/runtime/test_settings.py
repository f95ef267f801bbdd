"""Settings typed once (pydantic-settings), read from one environment mapping."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmflow.errors import LlmflowError, SettingsError
from llmflow.model.limits import DEFAULT
from llmflow.runtime import build_runtime
from llmflow.server.config import ServerConfig
from llmflow.settings import Settings


def test_every_llmflow_setting_is_read_typed_from_the_given_environment(tmp_path: Path) -> None:
    s = Settings.from_env(
        {
            "LLMFLOW_MAX_UNITS": "5",
            "LLMFLOW_DISABLE_SHELL": "yes",
            "LLMFLOW_HUMAN_PARK_AFTER": "0.5",
            "LLMFLOW_LOG_LEVEL": "debug",
            "LLMFLOW_LEASE_SECONDS": "2",
            "LLMFLOW_FAKE_SCRIPTS": "demo.yaml",
            "LLMFLOW_MODEL": "fake:",
            "OPENAI_API_KEY": "sk-test",
        },
        home=tmp_path,
    )
    assert (s.max_units, s.allow_shell, s.park_after, s.log_level, s.lease_seconds) == (
        5,
        False,
        0.5,
        "DEBUG",
        2.0,
    )
    assert s.fake_scripts == "demo.yaml" and s.env_models == {"LLMFLOW_MODEL": "fake:"}
    assert s.env["OPENAI_API_KEY"] == "sk-test"  # what llmflow does not own stays in env
    assert s.home == tmp_path.resolve() and s.home_source == "argument"


def test_settings_built_in_code_read_no_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LLMFLOW_MAX_UNITS", "3")
    assert Settings(home=tmp_path).max_units == 10_000
    assert Settings.from_env({}, home=tmp_path).max_units == 10_000


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("LLMFLOW_MAX_UNITS", "0"),
        ("LLMFLOW_HUMAN_TIMEOUT", "-1"),
        ("LLMFLOW_HUMAN_PARK_AFTER", "soon"),
        ("LLMFLOW_DISABLE_SHELL", "maybe"),
    ],
)
def test_a_bad_setting_is_refused_naming_the_variable_and_the_fix(
    key: str, value: str, tmp_path: Path
) -> None:
    with pytest.raises(LlmflowError) as err:
        Settings.from_env({key: value}, home=tmp_path)
    assert (
        str(err.value).startswith(f"{key}={value!r}: ")
        and err.value.hint == f"unset {key} or give it a valid value"
    )


# -- the settings of components: typed here, handed to them typed ------------------------------


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("LLMFLOW_TEMPLATE_TIMEOUT", "0"),
        ("LLMFLOW_TEMPLATE_TIMEOUT", "nan"),
        ("LLMFLOW_TEMPLATE_MAX_OUTPUT", "lots"),
        ("LLMFLOW_TEMPLATE_MAX_RANGE", "-3"),
        ("LLMFLOW_MAX_STEPS", "many"),
        ("LLMFLOW_MAX_STEP_DEPTH", "1.5"),
        ("LLMFLOW_MAX_DOCUMENT_DEPTH", "0"),
        ("LLMFLOW_MAX_FLOW_BYTES", "-1"),
        ("DISABLE_WORKER", "maybe"),
        ("WORKER_CHECK_INTERVAL", "soon"),
        ("WORKER_CHECK_INTERVAL", "-1"),
        ("LLMFLOW_MAX_BODY_BYTES", "big"),
        ("LLMFLOW_MAX_FRAME_BYTES", "0"),
        ("LLMFLOW_SSE_KEEPALIVE", "0"),
        ("LLMFLOW_SERVER_ALLOW_SHELL", "perhaps"),
        ("LLMFLOW_METRICS_PUBLIC", "sometimes"),
        ("LLMFLOW_THREAD_TOKENS", "-1"),
        ("LLMFLOW_THREAD_TOKENS", "plenty"),
        ("LLMFLOW_OTEL", "ture"),
        ("LLMFLOW_OTEL_CAPTURE_CONTENT", "all"),
        ("LLMFLOW_OLLAMA_PULL", "please"),
    ],
)
def test_a_bad_component_setting_is_refused_naming_the_variable_and_the_fix(
    key: str, value: str, tmp_path: Path
) -> None:
    with pytest.raises(SettingsError) as err:
        Settings.from_env({key: value}, home=tmp_path)
    assert str(err.value).startswith(f"{key}={value!r}: ")
    assert err.value.hint == f"unset {key} or give it a valid value"


def test_the_ollama_and_tracing_switches_reach_their_components(tmp_path: Path) -> None:
    from llmflow.providers.ollama import OllamaProvider
    from llmflow.runtime import build_runtime

    for value, pull in (("1", True), ("off", False), (" ", False)):
        rt = build_runtime(env={"LLMFLOW_OLLAMA_PULL": value, "LLMFLOW_OTEL": "0"}, home=tmp_path)
        try:
            provider = rt.gateway.registry.resolve("ollama:llama3.1")[0]
            assert isinstance(provider, OllamaProvider) and provider.allow_pull is pull
            assert rt.settings.otel is False and rt.settings.otel_capture_content is False
        finally:
            rt.close()


def test_limits_come_from_the_settings(tmp_path: Path) -> None:
    s = Settings.from_env(
        {"LLMFLOW_TEMPLATE_TIMEOUT": "0.5", "LLMFLOW_MAX_STEPS": "10", "LLMFLOW_TEMPLATE_MAX_RANGE": " "},
        home=tmp_path,
    )
    lim = s.limits()
    assert (lim.template_seconds, lim.flow_steps) == (0.5, 10)
    assert lim.template_range == DEFAULT.template_range  # blank: unset
    assert Settings.from_env({}, home=tmp_path).limits() == DEFAULT


def test_the_runtime_runs_with_the_settings_limits_and_default_model(tmp_path: Path) -> None:
    rt = build_runtime(
        env={"LLMFLOW_MAX_STEPS": "7", "LLMFLOW_MODEL": "fake:critic", "LLMFLOW_BLOCK_REAL_MODELS": "1"},
        home=tmp_path,
    )
    try:
        assert rt.limits.flow_steps == 7
        provider, model = rt.gateway.registry.resolve("")
        assert (provider.name, model) == ("fake", "critic")
    finally:
        rt.close()


def test_server_config_comes_from_the_settings(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {
            "LLMFLOW_API_TOKEN": " t ",
            "CORS_ORIGINS": "http://a/, http://b",
            "LLMFLOW_SSE_KEEPALIVE": "2.5",
            "LLMFLOW_SERVER_ALLOW_SHELL": "1",
            "DISABLE_WORKER": "yes",
        },
        home=tmp_path,
    )
    cfg = ServerConfig.from_settings(settings, port=9)
    assert (cfg.api_token, cfg.cors_origins, cfg.sse_keepalive, cfg.allow_shell, cfg.worker_enabled) == (
        "t",
        ["http://a", "http://b"],
        2.5,
        True,
        False,
    )
    assert cfg.port == 9 and cfg.max_body_bytes == ServerConfig().max_body_bytes == settings.max_body_bytes
    # set but empty closes CORS (docs/security.md); LLMFLOW_CORS_ORIGINS wins over CORS_ORIGINS
    closed = Settings.from_env({"LLMFLOW_CORS_ORIGINS": "", "CORS_ORIGINS": "http://c"}, home=tmp_path)
    assert ServerConfig.from_settings(closed).cors_origins == []


def test_index_dir_and_thread_budget_reach_the_tool_services(tmp_path: Path) -> None:
    from llmflow.tools.services import ToolServices
    from llmflow.tools.threads import DEFAULT_BUDGET

    s = Settings.from_env(
        {"LLMFLOW_INDEX_DIR": str(tmp_path / "ix"), "LLMFLOW_THREAD_TOKENS": "50"}, home=tmp_path
    )
    assert (ToolServices(s).index_dir, ToolServices(s).thread_tokens) == (tmp_path / "ix", 50)
    unset = ToolServices(Settings(home=tmp_path))
    assert unset.index_dir == tmp_path / ".llmflow" / "indexes"
    assert unset.thread_tokens == DEFAULT_BUDGET == 2000  # docs/threads.md's default
