"""The trust policy (steps/trust.py) on its own: where runs may write, where projects may
live, what counts as code in a posted flow; and the write_file step enforcing it in a run."""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from llmflow.errors import WorkspaceError
from llmflow.model.spec import Flow
from llmflow.steps.trust import TrustPolicy, is_importable_reference, posted_flow_problems


@pytest.fixture
def policy(tmp_path: Path) -> TrustPolicy:
    home = tmp_path / "home"
    (home / "conf" / "flows").mkdir(parents=True)
    (home / ".llmflow" / "runs").mkdir(parents=True)
    return TrustPolicy.build(
        home, config_dirs=[tmp_path / "served"], database_path=tmp_path / "db" / "llmflow.db"
    )


def test_a_run_writes_in_its_own_workspace_and_a_sub_flow_in_its_parents(policy: TrustPolicy) -> None:
    ws = policy.state_dir / "runs" / "r1" / "workspace"
    assert policy.check_write(ws / "a.txt", ws, "r1") == (ws / "a.txt").resolve()
    assert policy.check_write(ws / "b.txt", ws, "r1.sub.0")  # child run ids extend the parent's
    with pytest.raises(WorkspaceError, match="belongs to another run"):
        policy.check_write(ws / "a.txt", ws, "r2")
    with pytest.raises(WorkspaceError, match="belongs to another run"):
        policy.check_write(ws / "a.txt", ws, "r10")  # a prefix is not a parent


@pytest.mark.parametrize("where", ["conf", "conf/flows", ".llmflow", "served", "served/x"])
def test_config_dirs_and_the_state_dir_are_read_only_to_runs(policy: TrustPolicy, where: str) -> None:
    base = policy.home if not where.startswith("served") else policy.home.parent
    ws = base / where
    with pytest.raises(WorkspaceError, match="runs may not write to"):
        policy.check_write(ws / "pwn.yaml", ws, "r1")
    # and a workspace around them (the home itself) may not write into them either
    with pytest.raises(WorkspaceError):
        policy.check_write(policy.home / "conf" / "flows" / "pwn.yaml", policy.home, "r1")


def test_the_database_file_is_protected_wherever_it_is(policy: TrustPolicy) -> None:
    ws = policy.protected_files[0].parent
    for name in ("llmflow.db", "llmflow.db-wal"):
        with pytest.raises(WorkspaceError, match="store's database"):
            policy.check_write(ws / name, ws, "r1")
    assert policy.check_write(ws / "other.txt", ws, "r1")


def test_without_code_a_run_writes_no_hidden_or_pth_files(policy: TrustPolicy, tmp_path: Path) -> None:
    ws = tmp_path / "proj"
    for rel in (".bashrc", ".git/hooks/post-checkout", "pkg/x.pth"):
        assert policy.check_write(ws / rel, ws, "r1")  # trusted flows may
        with pytest.raises(WorkspaceError, match="files other programs execute"):
            policy.check_write(ws / rel, ws, "r1", allow_code=False)


def test_projects_stay_out_of_the_home_its_config_store_and_system_dirs(
    policy: TrustPolicy, tmp_path: Path
) -> None:
    refused = [
        policy.home,
        policy.home.parent,
        Path("/"),
        policy.home / "conf",
        policy.home / ".llmflow" / "runs" / "x",
        tmp_path / "served",
        tmp_path / "db",
        Path("/etc"),
        Path(sysconfig.get_paths()["purelib"]) / "pkg",
    ]
    for p in refused:
        assert policy.project_problem(p.resolve()) is not None, p
    for p in (policy.home / "work", tmp_path / "elsewhere", policy.home / "conf-not"):
        assert policy.project_problem(p) is None, p


def test_importable_references() -> None:
    assert (
        is_importable_reference("os:system")
        and is_importable_reference("a.b:c.d")
        and is_importable_reference("a.b.c")
    )
    assert (
        not is_importable_reference("summarise")
        and not is_importable_reference("http://x")
        and not is_importable_reference("fake:")
    )


def test_posted_flow_problems_walk_nested_steps_and_served_sub_flows() -> None:
    served = {
        "inner": Flow.model_validate(
            {"name": "inner", "steps": [{"id": "p", "kind": "python", "function": "os:getcwd"}]}
        ),
        "outer": Flow.model_validate(
            {"name": "outer", "steps": [{"id": "f", "kind": "flow", "flow": "inner"}]}
        ),
        "safe": Flow.model_validate({"name": "safe", "steps": [{"id": "l", "kind": "llm", "prompt": "x"}]}),
    }

    def load(name: str) -> Flow:
        if name not in served:
            raise LookupError(name)
        return served[name]

    doc = Flow.model_validate(
        {
            "name": "d",
            "steps": [
                {
                    "id": "loop1",
                    "kind": "loop",
                    "until": "true",
                    "steps": [{"id": "f", "kind": "flow", "flow": "outer"}],
                },
                {"id": "s", "kind": "flow", "flow": "safe"},
                {"id": "m", "kind": "flow", "flow": "missing"},
            ],
        }
    )
    problems = posted_flow_problems(doc, allow_code=False, served_flow=load)
    assert [(p.code, p.path) for p in problems] == [
        ("not-allowed", "document.steps[0].steps[0].flow"),
        ("unknown-flow", "document.steps[2].flow"),
    ]
    assert "python step" in problems[0].message
    assert posted_flow_problems(doc, allow_code=True, served_flow=load) == []


def test_a_flow_cannot_write_into_the_config_dir_it_was_loaded_from(tmp_path: Path) -> None:
    home = tmp_path / "home"
    flows = home / "conf" / "flows"
    flows.mkdir(parents=True)
    (flows / "selfwrite.yaml").write_text(
        "name: selfwrite\noptions: {workspace: .}\nsteps:\n  - id: w\n    write_file: {path: evil.yaml, content: 'name: evil'}\n"
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "LLMFLOW_HOME": str(home),
        "LLMFLOW_MODEL": "fake:",
        "LLMFLOW_BLOCK_REAL_MODELS": "1",
    }
    out = subprocess.run(
        [sys.executable, "-m", "llmflow", "run", "selfwrite", "--json"],
        env=env,
        cwd=home,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode != 0
    assert not (flows / "evil.yaml").exists()
    view = json.loads(out.stdout)
    assert view["status"] == "FAILED" and "runs may not write to" in view["steps"][0]["error"], view["steps"][
        0
    ]["error"]


def test_the_write_file_tool_keeps_to_the_same_boundaries(tmp_path, monkeypatch):
    # an LLM-driven write goes through the same policy as the write_file step
    import asyncio

    from llmflow.runtime import RunRequest, build_runtime

    monkeypatch.setenv("LLMFLOW_DISABLE_SHELL", "1")  # a run without code, as a posted one
    home = tmp_path / "home"
    (home / "conf" / "flows").mkdir(parents=True)
    proj = tmp_path / "proj"
    calls = {
        "tool_calls": [
            {"name": "write_file", "arguments": {"path": p, "content": "x"}}
            for p in (".git/hooks/pre-commit", "src/ok.py")
        ]
    }
    rt = build_runtime(home=home, fake_scripts={"agent": {"answers": [calls, "{tool_results}"]}})
    flow = Flow.model_validate(
        {
            "name": "t",
            "model": "fake:agent",
            "steps": [{"id": "ask", "kind": "llm", "prompt": "go", "tools": ["write_file"]}],
        }
    )
    st = asyncio.run(rt.run(flow, options=RunRequest(workspace=str(proj))))
    lines = st.outputs["result"].splitlines()
    assert lines[0].startswith("Error:") and "files other programs execute" in lines[0], lines
    assert (proj / "src" / "ok.py").read_text() == "x" and not (proj / ".git").exists()
    # a workspace around a config dir: the tool may not write into it
    rt2 = build_runtime(
        home=home,
        fake_scripts={
            "agent": {
                "answers": [
                    {
                        "tool_calls": [
                            {
                                "name": "write_file",
                                "arguments": {"path": "conf/flows/pwn.yaml", "content": "x"},
                            }
                        ]
                    },
                    "{tool_results}",
                ]
            }
        },
    )
    st = asyncio.run(rt2.run(flow, options=RunRequest(workspace=str(home))))
    assert (
        "runs may not write to" in st.outputs["result"]
        and not (home / "conf" / "flows" / "pwn.yaml").exists()
    )
    rt.close()
    rt2.close()
