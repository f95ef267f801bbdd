"""Settings typed once (pydantic-settings), read from one environment mapping."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmflow.errors import LlmflowError
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
