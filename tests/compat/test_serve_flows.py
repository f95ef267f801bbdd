"""`llmflow serve --flows trans,tox` serves exactly those flows (Buttermilk's
`+flows=[trans,tox]`); /api/flows/{flow}/info reports criteria and every model (issue 15,
item 10). Through `llmflow serve` as a subprocess."""

from __future__ import annotations

from pathlib import Path

import httpx

from server.helpers import ServeProcess, base_env, free_port, wait_http

# Buttermilk-shaped: criteria in parameters, a judge with model x criteria variants
TRANS = """\
name: trans
parameters:
  criteria: [trans_simplified, cte]
inputs:
  prompt: {type: string, default: x}
agents:
  judge: {role: judge, model: "fake:", variants: {model: ["fake:?seed=1", "fake:?seed=2"], criteria: [tja]}}
steps:
  - id: judging
    llm: {agent: judge, prompt: "{{ inputs.prompt }} {{ matrix }}"}
    matrix: {model: ["fake:?seed=3"], criteria: [glaad]}
"""
TOX = "name: tox\nsteps:\n  - {id: a, llm: {prompt: hi, model: 'fake:?seed=9'}}\n"
OTHER = "name: other\nsteps:\n  - {id: a, llm: hi}\n"


def serve(tmp_path: Path, *flags: str) -> tuple[ServeProcess, str]:
    conf = tmp_path / "conf" / "flows"
    conf.mkdir(parents=True, exist_ok=True)
    for name, text in (("trans", TRANS), ("tox", TOX), ("other", OTHER)):
        (conf / f"{name}.yaml").write_text(text)
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    port = free_port()
    proc = ServeProcess(
        ["serve", "--port", str(port), "--config-dir", str(tmp_path / "conf"), *flags],
        base_env(home),
        tmp_path,
        tmp_path / f"serve-{port}.log",
    ).start()
    url = f"http://127.0.0.1:{port}"
    wait_http(url, 60, proc)
    return proc, url


def test_flows_limits_what_the_server_serves(tmp_path: Path) -> None:
    proc, url = serve(tmp_path, "--flows", "trans,tox")
    try:
        assert httpx.get(f"{url}/api/flows").json() == {"flow_choices": ["tox", "trans"]}
        assert httpx.get(f"{url}/api/flows/other/info").status_code == 404
        assert (
            httpx.get(f"{url}/api/flows/quarkus-bootstrap-v1/info").status_code == 404
        )  # built-ins only when asked for
        info = httpx.get(f"{url}/api/flows/trans/info").json()
        assert info["criteria"] == ["trans_simplified", "cte", "tja", "glaad"]
        assert info["models"] == ["fake:", "fake:?seed=1", "fake:?seed=2", "fake:?seed=3"]
    finally:
        proc.stop()
    proc, url = serve(tmp_path, "--flows", "trans,quarkus-bootstrap-v1")
    try:
        assert httpx.get(f"{url}/api/flows").json() == {"flow_choices": ["quarkus-bootstrap-v1", "trans"]}
    finally:
        proc.stop()
    proc, url = serve(tmp_path)  # no --flows: the config dir's flows and the built-in ones
    try:
        assert httpx.get(f"{url}/api/flows").json() == {
            "flow_choices": ["agent", "other", "quarkus-bootstrap-v1", "tox", "trans"]
        }
    finally:
        proc.stop()
