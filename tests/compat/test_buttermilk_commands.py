"""Buttermilk's command forms through the `buttermilk` entry point: mapped to llmflow's with
a one-line note naming the native form (issue 15, item 12)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx

from server.helpers import ServeProcess, base_env, free_port, wait_http

BUTTERMILK = str(Path(sys.executable).parent / "buttermilk")
TRANS = "name: trans\ninputs:\n  prompt: {type: string}\nsteps:\n  - {id: judge, llm: 'Judge: {{ inputs.prompt }}'}\noutputs:\n  verdict: '{{ steps.judge.output }}'\n"
TOX = "name: tox\ninputs:\n  text: {type: string, default: x}\nsteps:\n  - {id: a, llm: 'Is it toxic? {{ inputs.text }}'}\n"


def setup(tmp_path: Path) -> dict[str, str]:
    flows = tmp_path / "conf" / "flows"
    flows.mkdir(parents=True)
    (flows / "trans.yaml").write_text(TRANS)
    (flows / "tox.yaml").write_text(TOX)
    (flows / "other.yaml").write_text(TOX.replace("name: tox", "name: other"))
    (tmp_path / "home").mkdir()
    return base_env(tmp_path / "home")


def bm(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BUTTERMILK, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )


def test_console_and_config_forms(tmp_path: Path) -> None:
    env = setup(tmp_path)
    p = bm(tmp_path, env, "run=console", "+flow=trans", "+prompt=some text", "run.human_in_loop=false")
    assert p.returncode == 0, p.stderr
    assert (
        "note: buttermilk run=console +flow=trans '+prompt=some text' run.human_in_loop=false is `llmflow run trans --prompt 'some text' --no-human`"
        in p.stderr
    )
    assert "fake answer to: Judge: some text" in p.stdout
    (tmp_path / "conf" / "llms").mkdir()
    (tmp_path / "conf" / "llms" / "full.yaml").write_text("judgers: ['fake:a', 'fake:b']\n")
    p = bm(tmp_path, env, "-c", "job", "+flow=trans", "llms=full")
    assert p.returncode == 0, p.stderr
    assert (
        "`llmflow config trans +llms=full`" in p.stderr and "name: trans" in p.stdout
    )  # composed with the group option
    p = bm(tmp_path, env, "-c", "job", "+flow=trans")
    assert p.returncode == 0 and "name: trans" in p.stdout and "`llmflow config trans`" in p.stderr


def test_batch_form(tmp_path: Path) -> None:
    env = setup(tmp_path)
    (tmp_path / "records.jsonl").write_text(
        "".join(json.dumps({"record_id": str(i), "text": f"t{i}"}) + "\n" for i in range(5))
    )
    # the flow's own data source, as Buttermilk's flows carry their storage
    (tmp_path / "conf" / "flows" / "tox.yaml").write_text(
        TOX.replace("name: tox\n", "name: tox\ndata: {type: file, path: records.jsonl}\n")
    )
    p = bm(tmp_path, env, "run=batch", "+flow=tox", "+max_records=3")
    assert p.returncode == 0, p.stderr
    assert "is `llmflow batch tox --max-records 3`" in p.stderr
    assert "3/3 jobs done (3 completed, 0 failed)" in p.stdout + p.stderr  # max_records=3 is 3 records


def test_api_form_serves_exactly_the_flows(tmp_path: Path) -> None:
    env = setup(tmp_path)
    port = free_port()
    proc = ServeProcess([], env, tmp_path, tmp_path / "serve.log")
    proc.proc = subprocess.Popen(
        [BUTTERMILK, "run=api", "+flows=[trans,tox]", f"port={port}"],
        cwd=tmp_path,
        env=env,
        stdout=(fh := (tmp_path / "serve.log").open("ab")),
        stderr=subprocess.STDOUT,
    )
    proc._fh = fh
    try:
        wait_http(f"http://127.0.0.1:{port}", 60, proc)
        assert httpx.get(f"http://127.0.0.1:{port}/api/flows").json() == {"flow_choices": ["tox", "trans"]}
    finally:
        proc.stop()
    assert "is `llmflow serve --flows trans,tox --port" in proc.output()


def test_forms_without_an_llmflow_form_are_clear_errors(tmp_path: Path) -> None:
    env = setup(tmp_path)
    for args, says in (
        (["run=notebook", "+flow=trans"], "run=notebook has no llmflow form"),
        (["run=console"], "needs +flow=NAME"),
        (["-c", "hydra"], "only '-c job'"),
    ):
        p = bm(tmp_path, env, *args)
        assert p.returncode == 2 and says in p.stderr and "Traceback" not in p.stderr, p.stderr
