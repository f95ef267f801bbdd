"""Threads: a run in a thread continues the earlier runs' conversation for the same agent,
within a token budget (newest exchanges kept whole); listed and shown from CLI and API."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import pytest

import llmflow
from llmflow.engine.events import EventType as E
from llmflow.errors import FlowValidationError
from llmflow.model.spec import Flow
from llmflow.runtime import RunRequest, build_runtime
from llmflow.tools.threads import history

FLOW = Flow.model_validate(
    {
        "name": "chat",
        "model": "fake:",
        "inputs": {"say": {"type": "string"}},
        "agents": {"buddy": {"system": "Be kind."}},
        "steps": [
            {"id": "reply", "kind": "llm", "agent": "buddy", "prompt": "{{ inputs.say }}"},
            {"id": "other", "kind": "llm", "prompt": "unrelated {{ inputs.say }}"},
        ],
    }
)


def sent_messages(rt, run_id: str, step: str) -> list[dict]:
    return next(
        e for e in rt.store.events(run_id) if e.type == E.LLM_GENERATING and e.step_id == step
    ).payload["messages"]


def test_a_thread_continues_the_agents_conversation(tmp_path):
    rt = build_runtime(home=tmp_path)
    ids = []
    for say in ("My name is Ada.", "I like tea.", "What is my name?"):
        st = asyncio.run(rt.run(FLOW, {"say": say}, RunRequest(thread="ada")))
        ids.append(st.run_id)
    msgs = sent_messages(rt, ids[2], "reply")
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert msgs[1]["content"] == "My name is Ada." and msgs[3]["content"] == "I like tea."
    assert msgs[2]["content"].startswith("fake answer to: My name is Ada.")
    assert msgs[5]["content"] == "What is my name?"
    other = sent_messages(rt, ids[2], "other")  # another step keeps its own history
    assert [m["content"] for m in other if m["role"] == "user"] == [
        "unrelated My name is Ada.",
        "unrelated I like tea.",
        "unrelated What is my name?",
    ]
    outside = asyncio.run(rt.run(FLOW, {"say": "hi"}))
    assert len(sent_messages(rt, outside.run_id, "reply")) == 2  # no thread: no history
    threads = rt.store.list_threads()
    assert [(t["name"], t["runs"]) for t in threads] == [("ada", 3)]


def test_the_budget_keeps_the_newest_exchanges_whole(tmp_path):
    rt = build_runtime(home=tmp_path)
    runs = [
        asyncio.run(
            rt.run(FLOW, {"say": f"message number {i} " + "x" * 200}, RunRequest(thread="long"))
        ).run_id
        for i in range(4)
    ]
    full = history(rt.store, "long", "buddy", before_run=runs[3], budget=10_000)
    assert [ex.user[:16] for ex in full] == ["message number 0", "message number 1", "message number 2"]
    one = full[-1].tokens()
    cut = history(rt.store, "long", "buddy", before_run=runs[3], budget=2 * one + one // 2)
    assert [ex.user[:16] for ex in cut] == [
        "message number 1",
        "message number 2",
    ]  # oldest dropped, none cut
    assert history(rt.store, "long", "buddy", before_run=runs[3], budget=one - 1) == []


def test_thread_names_are_checked(tmp_path):
    rt = build_runtime(home=tmp_path)
    with pytest.raises(FlowValidationError, match="thread name"):
        rt.create_run(FLOW, {"say": "x"}, RunRequest(thread="no spaces please"))


def test_python_api_and_cli(tmp_path):
    r1 = llmflow.run_sync(FLOW, {"say": "first"}, thread="py", home=tmp_path)
    r2 = llmflow.run_sync(FLOW, {"say": "second"}, thread="py", home=tmp_path)
    assert r1.ok and r2.ok
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMFLOW_")}
    env.update(LLMFLOW_HOME=str(tmp_path), LLMFLOW_MODEL="fake:", LLMFLOW_BLOCK_REAL_MODELS="1")
    f = tmp_path / "hello.yaml"
    f.write_text(
        "name: hello\nsteps:\n  - id: answer\n    llm: '{{ inputs.prompt }}'\ninputs: {prompt: string}\n"
    )

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "llmflow", *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=120,
        )

    assert cli("run", str(f), "--prompt", "remember 42", "--thread", "cli").returncode == 0
    p = cli("run", str(f), "--prompt", "what number?", "--thread", "cli", "--json")
    assert p.returncode == 0, p.stderr
    listed = json.loads(cli("threads", "list", "--json").stdout)
    assert {t["name"]: t["runs"] for t in listed} == {"cli": 2, "py": 2}
    shown = json.loads(cli("threads", "show", "cli", "--json").stdout)
    assert [m["user"] for m in shown["messages"]] == ["remember 42", "what number?"]
    text = cli("threads", "show", "cli").stdout
    assert "user: remember 42" in text
    p = cli("threads", "show", "nope")
    assert p.returncode != 0 and "no thread 'nope'" in p.stderr


def test_threads_on_postgres(tmp_path):
    pytest.importorskip("psycopg")
    from tests.server.helpers import pg_schema

    try:
        ctx = pg_schema()
        url = ctx.__enter__()
    except Exception as exc:  # noqa: BLE001 - no server here
        pytest.skip(f"no PostgreSQL: {exc}")
    try:
        rt = build_runtime(
            env={"LLMFLOW_DATABASE_URL": url, "LLMFLOW_HOME": str(tmp_path), "LLMFLOW_BLOCK_REAL_MODELS": "1"}
        )
        a = asyncio.run(rt.run(FLOW, {"say": "one"}, RunRequest(thread="pg")))
        b = asyncio.run(rt.run(FLOW, {"say": "two"}, RunRequest(thread="pg")))
        assert [r[0] for r in rt.store.thread_runs("pg")] == [a.run_id, b.run_id]
        assert rt.store.list_threads()[0]["runs"] == 2
        assert [m["content"] for m in sent_messages(rt, b.run_id, "reply") if m["role"] == "user"] == [
            "one",
            "two",
        ]
        rt.close()
    finally:
        ctx.__exit__(None, None, None)
