"""OLLAMA_HOST (Ollama's own variable) is honoured beside OLLAMA_BASE_URL (Agent Runner's),
read the way Ollama's clients read it; a flow runs against it end to end from the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from llmflow.errors import ProviderUnavailableError
from llmflow.providers.ollama import OllamaProvider, base_url_from_env

from .conftest import ThreadedServer
from .test_ollama import FakeOllama


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("127.0.0.1", "http://127.0.0.1:11434"),
        ("127.0.0.1:9999", "http://127.0.0.1:9999"),
        ("0.0.0.0", "http://0.0.0.0:11434"),
        ("ollama.internal", "http://ollama.internal:11434"),
        ("http://box:8080", "http://box:8080"),
        ("https://ollama.example.com", "https://ollama.example.com:443"),
        ("http://box:8080/prefix/", "http://box:8080/prefix"),
        ("[::1]:7000", "http://[::1]:7000"),
    ],
)
def test_ollama_host_forms(host, url):
    assert base_url_from_env({"OLLAMA_HOST": host}) == url


def test_base_url_wins_and_the_default_stays():
    assert base_url_from_env({"OLLAMA_HOST": "a:1", "OLLAMA_BASE_URL": "http://b:2"}) == "http://b:2"
    assert base_url_from_env({}) == "http://127.0.0.1:11434"
    assert OllamaProvider.from_env({"OLLAMA_HOST": "127.0.0.1:5"}).base_url == "http://127.0.0.1:5"
    with pytest.raises(ProviderUnavailableError, match="OLLAMA_HOST"):
        base_url_from_env({"OLLAMA_HOST": "host:port"})


def test_a_flow_runs_on_the_ollama_that_ollama_host_names(tmp_path: Path):
    state = FakeOllama()
    with ThreadedServer(state.app()) as server:
        (tmp_path / "f.yaml").write_text("name: f\nsteps:\n  - id: a\n    llm: hi\n")
        hostport = server.url.removeprefix("http://")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LLMFLOW_", "OLLAMA_"))}
        env.update(LLMFLOW_HOME=str(tmp_path), OLLAMA_HOST=hostport, LLMFLOW_MODEL="ollama:llama3.1")
        p = subprocess.run(
            [sys.executable, "-m", "llmflow", "run", "f.yaml", "--json"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["steps"][0]["output"] == "Hello from Ollama"
    assert ("chat", state.calls[-1][1]) == state.calls[-1] and state.calls[-1][1]["model"] == "llama3.1"
