"""Buttermilk's agent shapes: `variants:` expand to the step's variants, named from
`name_components`; an orchestrator without steps is a conductor; what llmflow cannot
honour is a validation error naming the llmflow form (issue 15, item 9)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import httpx
from websockets.sync.client import connect

from server.helpers import LLMFLOW, LiveServer, base_env, write_flow

TRANS = """\
name: trans
inputs:
  prompt: {type: string, default: some text}
agents:
  judge:
    role: judge
    system: You judge text.
    name_components: ["⚖️", "role", "model", "criteria", "unique_identifier"]
    variants:
      model: ["fake:?seed=1", "fake:?seed=2"]
      criteria: [trans_simplified, cte]
steps:
  - id: judging
    llm: {agent: judge, prompt: "Criteria {{ matrix.criteria }}: {{ inputs.prompt }}"}
outputs:
  verdicts: "{{ steps.judging.outputs }}"
"""

GROUPCHAT = """\
name: panel
orchestrator: buttermilk.orchestrators.groupchat.AutogenOrchestrator
parameters: {human_in_loop: false}
agents:
  optimist: {description: argues for, system: You are an optimist.}
  skeptic: {description: argues against, system: You are a skeptic.}
observers:
  host/sequence_host: {}
"""


def llmflow(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LLMFLOW, *args],
        cwd=tmp_path,
        env=base_env(tmp_path / "home"),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_variants_expand_to_the_steps_variants(tmp_path: Path) -> None:
    (tmp_path / "trans.yaml").write_text(TRANS)
    p = llmflow(tmp_path, "run", "trans.yaml", "--json")
    assert p.returncode == 0, p.stderr
    run = json.loads(p.stdout)
    verdicts = run["outputs"]["verdicts"]
    assert len(verdicts) == 4  # 2 models x 2 criteria, as Buttermilk's AgentVariants
    assert (
        sum("Criteria cte" in v for v in verdicts) == 2
        and sum("Criteria trans_simplified" in v for v in verdicts) == 2
    )


def test_an_orchestrator_without_steps_runs_as_a_conductor(tmp_path: Path) -> None:
    (tmp_path / "panel.yaml").write_text(GROUPCHAT)
    p = llmflow(tmp_path, "run", "panel.yaml", "--no-human", "-p", "Four-day weeks?", "--json")
    assert p.returncode == 0, p.stderr
    run = json.loads(p.stdout)
    assert run["status"] == "COMPLETED"
    shown = llmflow(tmp_path, "flows", "show", "panel.yaml")
    assert "chat [conductor]" in shown.stdout


def test_what_llmflow_cannot_honour_is_a_validation_error(tmp_path: Path) -> None:
    (tmp_path / "spy.yaml").write_text(
        GROUPCHAT.replace("  host/sequence_host: {}\n", "  spy: {}\n  owl: {}\n")
    )
    p = llmflow(tmp_path, "validate", "spy.yaml")
    assert (
        p.returncode == 2
        and "observers spy, owl are not run by llmflow" in (p.stdout + p.stderr)
        and "Traceback" not in p.stderr
    )
    tasks = TRANS.replace("    role: judge\n", "    role: judge\n    tasks: {step: [a, b]}\n")
    (tmp_path / "tasks.yaml").write_text(tasks)
    p = llmflow(tmp_path, "validate", "tasks.yaml")
    assert (
        p.returncode == 2
        and "'tasks'" in (p.stdout + p.stderr)
        and "write the sub-tasks as steps" in (p.stdout + p.stderr)
    )


def test_frames_name_variant_instances_from_name_components(make_app: Any, home: Path) -> None:
    write_flow(home, "trans", TRANS)
    with LiveServer(make_app()) as srv:
        sid = httpx.get(f"{srv.url}/api/session").json()["session_id"]
        frames = []
        with connect(f"{srv.ws_url}/ws/{sid}") as ws:
            ws.send(json.dumps({"type": "run_flow", "flow": "trans", "prompt": "x"}))
            while (f := json.loads(ws.recv(timeout=30)))["type"] != "flow_complete":
                frames.append(f)
    names = sorted({f["agent_info"]["agent_name"] for f in frames if f["type"] == "chat_message"})
    assert len(names) == 4 and all(n.startswith("⚖️ judge fake:?seed=") for n in names)
    assert any(" cte " in n for n in names) and any(" trans_simplified " in n for n in names)
    assert {f["agent_info"]["role"] for f in frames if f["type"] == "chat_message"} == {"judge"}
