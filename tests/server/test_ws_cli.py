"""`llmflow ws ...` (Buttermilk's ws_debug_cli) against a real server, and without one."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llmflow.cli.main import main

from .helpers import HUMAN_FLOW, LiveServer, free_port, write_flow

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _own_tmpdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = tmp_path / "tmpdir"
    d.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(d))
    monkeypatch.delenv("LLMFLOW_API_TOKEN", raising=False)


@pytest.fixture
def srv(make_app: Any, home: Path) -> Iterator[LiveServer]:
    write_flow(home, "ask", HUMAN_FLOW)
    with LiveServer(make_app()) as s:
        yield s


def ws(capsys: pytest.CaptureFixture[str], port: int, *argv: str) -> tuple[int, Any, str]:
    with pytest.raises(SystemExit) as e:
        main(["ws", "--host", "127.0.0.1", "--port", str(port), "--json-output", *argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return int(e.value.code or 0), json.loads(out) if out.strip() else None, err


def test_without_a_server_every_command_fails_clearly(capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    for argv in (["test-connection"], ["start", "hello", "hi"], ["list-flows"]):
        code, out, _ = ws(capsys, port, *argv)
        assert code == 1 and "cannot reach" in out["error"] or "cannot connect" in out["error"]
    with pytest.raises(SystemExit) as e:
        main(["ws", "--port", str(port), "test-connection"])
    assert e.value.code == 1
    assert "is `llmflow serve` running" in capsys.readouterr().err
    code, out, _ = ws(capsys, port, "send", "yes")
    assert code == 1 and "no session" in out["error"]


def test_a_human_in_the_loop_session_from_the_command_line(
    srv: LiveServer, capsys: pytest.CaptureFixture[str], home: Path
) -> None:
    port = srv.port
    code, out, _ = ws(capsys, port, "test-connection")
    assert code == 0 and out["status"] == "ok" and out["websocket"] is True
    code, out, _ = ws(capsys, port, "list-flows")
    assert "ask" in out["flows"]

    code, started, _ = ws(capsys, port, "start", "ask", "coffee", "--wait", "30")
    assert code == 0 and started["flow"] == "ask" and started["query"] == "coffee"
    assert started["messages"][-1]["type"] == "ui_message"  # stops at the first question
    m = started["messages"][-1]
    assert set(m) == {"timestamp", "type", "content", "agent_role", "data"} and "Publish" in m["content"]
    saved = json.loads((Path(tempfile.gettempdir()) / "llmflow_ws_session.json").read_text())
    assert saved["session_id"] == started["session_id"] and saved["last_seq"] == m["data"]["seq"]

    code, sent, _ = ws(capsys, port, "send", "yes", "--wait", "0")  # read nothing: `wait` shows what follows
    assert code == 0 and sent["message_sent"] == {"type": "response", "content": "yes"}
    code, waited, _ = ws(capsys, port, "wait", "--type", "ui_message", "--pattern", "name", "--wait", "30")
    assert code == 0 and waited["filter"] == {"pattern": "name", "message_type": "ui_message"}
    assert [x["type"] for x in waited["messages"]] == ["ui_message"]

    code, sent, _ = ws(capsys, port, "send", "Ada", "--session", started["session_id"], "--wait", "30")
    last = sent["messages"][-1]
    assert last["type"] == "system_message" and last["content"] == "flow_completed"
    assert last["data"]["outputs"]["outputs"] == {"approved": True, "name": "Ada"}
    seqs = [x["data"]["seq"] for x in sent["messages"]]
    assert seqs == sorted(set(seqs)) and seqs[0] > waited["messages"][-1]["data"]["seq"]  # only what is new

    code, sess, _ = ws(capsys, port, "session")
    assert sess["session_id"] == started["session_id"] and sess["status"]["status"] == "completed"
    code, unknown, _ = ws(capsys, port, "send", "hi", "--type", "bogus", "--wait", "2")
    assert not any(x["type"] == "system_error" for x in unknown["messages"])  # ignored, as Buttermilk does

    log = home / "server.log"
    log.write_text("\n".join(f'{{"level": "INFO", "msg": "line {i}"}}' for i in range(100)))
    code, logs, _ = ws(capsys, port, "logs", "-n", "3", "--file", str(log))
    assert code == 0 and logs["lines"] == [f'{{"level": "INFO", "msg": "line {i}"}}' for i in (97, 98, 99)]
    code, out, _ = ws(capsys, port, "clear-session")
    assert out == {"status": "Session cleared"}
    code, out, _ = ws(capsys, port, "wait")
    assert code == 1 and "no session" in out["error"]


def test_plain_output(srv: LiveServer, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["ws", "--port", str(srv.port), "--host", "127.0.0.1", "start", "hello", "why", "--wait", "30"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert (
        "session_id:" in out
        and "[chat_message] answer: fake answer to: why" in out
        and "flow_completed" in out
    )
