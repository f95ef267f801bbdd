"""`llmflow ws ...`: a non-interactive WebSocket debug client for a running `llmflow serve`
(Buttermilk's ``ws_debug_cli``): start a flow in a session, send answers, wait for frames.

The last session is remembered in ``$TMPDIR/llmflow_ws_session.json`` (with the number of
the last frame seen), so ``send`` and ``wait`` may omit ``--session`` and only show what is
new. ``--json-output`` prints Buttermilk's shapes: ``{"session_id", "flow", "query",
"messages": [{"timestamp", "type", "content", "agent_role", "data"}]}``; ``send`` adds
``message_sent`` and ``wait`` adds ``filter``; errors are ``{"error": "..."}`` with exit 1.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

WS_HINT = "pip install 'llmflow[server]'"


class ClientError(Exception):
    pass


def session_file() -> Path:
    return Path(tempfile.gettempdir()) / "llmflow_ws_session.json"


class DebugClient:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.base = f"http://{host}:{port}"
        token = os.environ.get("LLMFLOW_API_TOKEN")
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    # -- plumbing -------------------------------------------------------------------------------
    def http(self, method: str, path: str, **kw: Any) -> Any:
        import httpx

        try:
            r = httpx.request(method, self.base + path, headers=self.headers, timeout=10, **kw)
        except httpx.HTTPError as exc:
            raise ClientError(
                f"cannot reach the server at {self.base}: {exc}; is `llmflow serve` running (--host/--port)?"
            ) from None
        if r.status_code >= 400:
            raise ClientError(f"{method} {path} answered {r.status_code}: {r.text[:300]}")
        return r.json()

    @contextmanager
    def connect(self, path: str) -> Iterator[Any]:
        try:
            from websockets.exceptions import InvalidStatus, WebSocketException
            from websockets.sync.client import connect
        except ImportError:
            raise ClientError(
                f"the WebSocket client needs the 'websockets' package; install it with: {WS_HINT}"
            ) from None
        url = f"ws://{self.host}:{self.port}{path}"
        try:
            cm = connect(url, additional_headers=self.headers, open_timeout=5, max_size=16 * 2**20)
            conn = cm.__enter__()
        except (OSError, TimeoutError) as exc:
            raise ClientError(
                f"cannot connect to {url}: {exc}; is `llmflow serve` running (--host/--port)?"
            ) from None
        except (InvalidStatus, WebSocketException) as exc:
            raise ClientError(f"the server refused the WebSocket {url}: {exc}") from None
        try:
            yield conn
        finally:
            cm.__exit__(None, None, None)

    def collect(self, conn: Any, wait: float, stop: Any = None) -> list[dict[str, Any]]:
        """Frames until ``stop(frame)`` is true or ``wait`` seconds pass."""
        from websockets.exceptions import ConnectionClosed

        frames: list[dict[str, Any]] = []
        deadline = time.monotonic() + wait
        while (left := deadline - time.monotonic()) > 0:
            try:
                raw = conn.recv(timeout=left)
            except TimeoutError:
                break
            except ConnectionClosed:
                break
            try:
                frame = json.loads(raw)
            except ValueError:
                continue
            frames.append(frame)
            if stop is not None and stop(frame):
                break
        return frames

    # -- session file ---------------------------------------------------------------------------
    def save(self, session_id: str, last_seq: int, flow: str | None = None) -> None:
        old = self.load_raw() or {}
        data = {
            "session_id": session_id,
            "host": self.host,
            "port": self.port,
            "last_seq": last_seq,
            "flow": flow or (old.get("flow") if old.get("session_id") == session_id else None),
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        session_file().write_text(json.dumps(data, indent=2))

    def load_raw(self) -> dict[str, Any] | None:
        try:
            return json.loads(session_file().read_text())
        except (OSError, ValueError):
            return None

    def existing(self, sid: str) -> None:
        """ClientError unless the server has session ``sid`` (connecting to an unknown id
        would start a new, empty session: `wait` would print nothing)."""
        import httpx

        try:
            r = httpx.get(f"{self.base}/api/session/{sid}/status", headers=self.headers, timeout=10)
        except httpx.HTTPError as exc:
            raise ClientError(
                f"cannot reach the server at {self.base}: {exc}; is `llmflow serve` running (--host/--port)?"
            ) from None
        if r.status_code == 404:
            raise ClientError(
                f"no session {sid!r} on the server at {self.base}; start a flow first (`llmflow ws start FLOW`), or list sessions with `llmflow ws session`"
            )

    def session(self, given: str | None) -> tuple[str, int]:
        """(session id, frames already seen)."""
        data = self.load_raw() or {}
        same = data.get("host") == self.host and data.get("port") == self.port
        if given:
            return given, int(data.get("last_seq", 0)) if same and data.get("session_id") == given else 0
        if not data.get("session_id") or not same:
            raise ClientError(
                "no session given and no saved session for this server; start a flow first (`llmflow ws start FLOW`)"
            )
        return str(data["session_id"]), int(data.get("last_seq", 0))


def message(frame: dict[str, Any]) -> dict[str, Any]:
    content = frame.get("content")
    if content is not None and not isinstance(content, str):
        content = json.dumps(content, ensure_ascii=False, default=str)
    agent = frame.get("agent_info") or {}
    return {
        "timestamp": frame.get("timestamp"),
        "type": frame.get("type"),
        "content": content,
        "agent_role": agent.get("role"),
        "data": frame,
    }


def finished(frame: dict[str, Any]) -> bool:
    return frame.get("type") == "system_message" and frame.get("content") == "flow_completed"


def needs_user(frame: dict[str, Any]) -> bool:
    return finished(frame) or frame.get("type") == "ui_message"


def _last_seq(frames: list[dict[str, Any]], seen: int) -> int:
    return max([seen, *[int(f.get("seq", 0)) for f in frames]])


def _emit(obj: dict[str, Any], json_output: bool) -> int:
    if "error" in obj:
        if json_output:
            print(json.dumps(obj, indent=2))
        else:
            print(f"error: {obj['error']}", file=sys.stderr)
        return 1
    if json_output:
        print(json.dumps(obj, indent=2, ensure_ascii=False, default=str))
        return 0
    for k in ("session_id", "flow", "query", "message_sent", "filter", "log_file", "status"):
        if obj.get(k) not in (None, ""):
            print(f"{k}: {obj[k] if not isinstance(obj[k], dict) else json.dumps(obj[k])}")
    for m in obj.get("messages", []):
        ts = (m["timestamp"] or "")[11:19]
        print(f"{ts} [{m['type']}] {m['agent_role'] or 'system'}: {(m['content'] or '(no content)')[:300]}")
    for line in obj.get("lines", []):
        print(line)
    for k in ("health", "flows", "sessions"):
        if k in obj:
            print(f"{k}: {json.dumps(obj[k], default=str)}")
    return 0


def register(app: typer.Typer) -> None:
    if any(g.name == "ws" for g in app.registered_groups):
        return
    ws = typer.Typer(
        help="Debug a running server over its WebSocket (Buttermilk's ws_debug_cli).", no_args_is_help=True
    )
    app.add_typer(ws, name="ws")

    @ws.callback()
    def options(
        ctx: typer.Context,
        host: Annotated[str, typer.Option("--host", help="Server host")] = "localhost",
        port: Annotated[int, typer.Option("--port", help="Server port")] = 8000,
        json_output: Annotated[
            bool,
            typer.Option(
                "--json-output", "--json", help="Print JSON (Buttermilk's shapes); --json is the same"
            ),
        ] = False,
    ) -> None:
        ctx.obj = {"client": DebugClient(host, port), "json": json_output}

    def run(ctx: typer.Context, fn: Any) -> int:
        try:
            out = fn(ctx.obj["client"])
        except ClientError as exc:
            out = {"error": str(exc)}
        return _emit(out, ctx.obj["json"])

    @ws.command("test-connection")
    def test_connection(ctx: typer.Context) -> int:
        """Check that the server answers over HTTP and WebSocket."""

        def go(c: DebugClient) -> dict[str, Any]:
            health = c.http("GET", "/health")
            with c.connect("/ws") as conn:
                first = c.collect(conn, 5, stop=lambda f: True)
            sid = first[0].get("session_id") if first else None
            if sid:
                try:
                    c.http("DELETE", f"/api/session/{sid}")
                except ClientError:
                    pass
            return {"status": "ok", "health": health, "websocket": bool(first)}

        return run(ctx, go)

    @ws.command("start")
    def start(
        ctx: typer.Context,
        flow: Annotated[str, typer.Argument(metavar="FLOW", help="Flow name")],
        query: Annotated[str, typer.Argument(metavar="QUERY", help="The prompt")] = "",
        wait: Annotated[
            float,
            typer.Option(
                "--wait",
                metavar="SECONDS",
                help="Seconds to wait for frames (stops early at a question or the end)",
            ),
        ] = 5,
        record: Annotated[str, typer.Option("--record", metavar="ID", help="Record id")] = "",
    ) -> int:
        """Start FLOW in a new session and print the frames that follow."""

        def go(c: DebugClient) -> dict[str, Any]:
            sid = c.http("GET", "/api/session")["session_id"]
            msg: dict[str, Any] = {"type": "run_flow", "flow": flow}
            if query:
                msg["prompt"] = query
            if record:
                msg["record_id"] = record
            with c.connect(f"/ws/{sid}") as conn:
                conn.send(json.dumps(msg))
                frames = c.collect(conn, wait, stop=needs_user)
            c.save(sid, _last_seq(frames, 0), flow)
            return {
                "session_id": sid,
                "flow": flow,
                "query": query,
                "completed": any(finished(f) for f in frames),
                "messages": [message(f) for f in frames],
            }

        return run(ctx, go)

    @ws.command("send")
    def send(
        ctx: typer.Context,
        content: Annotated[str, typer.Argument(metavar="CONTENT", help="What to send (an answer)")],
        type_: Annotated[
            str,
            typer.Option(
                "--type", help="'response' sends a manager_response; other types are sent as {type, content}"
            ),
        ] = "response",
        session: Annotated[
            str | None, typer.Option("--session", metavar="ID", help="Session id (default: the last one)")
        ] = None,
        wait: Annotated[
            float,
            typer.Option(
                "--wait",
                metavar="SECONDS",
                help="Seconds to wait for frames (stops early at a question or the end)",
            ),
        ] = 5,
    ) -> int:
        """Send a message to a session and print the frames that follow."""

        def go(c: DebugClient) -> dict[str, Any]:
            sid, seen = c.session(session)
            c.existing(sid)
            sent: dict[str, Any] = {
                "type": "manager_response" if type_ == "response" else type_,
                "content": content,
            }
            with c.connect(f"/ws/{sid}?since={seen}") as conn:
                conn.send(json.dumps(sent))
                frames = c.collect(conn, wait, stop=needs_user)
            c.save(sid, _last_seq(frames, seen))
            return {
                "session_id": sid,
                "message_sent": {"type": type_, "content": content},
                "messages": [message(f) for f in frames],
            }

        return run(ctx, go)

    @ws.command("wait")
    def wait_cmd(
        ctx: typer.Context,
        session: Annotated[
            str | None, typer.Option("--session", metavar="ID", help="Session id (default: the last one)")
        ] = None,
        pattern: Annotated[
            str | None,
            typer.Option("--pattern", metavar="REGEX", help="Regular expression the content must match"),
        ] = None,
        type_: Annotated[
            str | None, typer.Option("--type", help="Frame type, e.g. ui_message, chat_message")
        ] = None,
        wait: Annotated[float, typer.Option("--wait", metavar="SECONDS", help="Seconds to wait")] = 5,
    ) -> int:
        """Wait for new frames of a session (matching --type / --pattern); stops at the first match."""
        try:
            rx = re.compile(pattern, re.IGNORECASE) if pattern else None
        except re.error as exc:
            raise typer.BadParameter(f"--pattern: {exc}") from None

        def match(f: dict[str, Any]) -> bool:
            m = message(f)
            return (type_ is None or m["type"] == type_) and (
                rx is None or bool(rx.search(m["content"] or ""))
            )

        def go(c: DebugClient) -> dict[str, Any]:
            sid, seen = c.session(session)
            c.existing(sid)
            with c.connect(f"/ws/{sid}?since={seen}") as conn:
                frames = c.collect(conn, wait, stop=match if (type_ or rx) else None)
            c.save(sid, _last_seq(frames, seen))
            return {
                "session_id": sid,
                "filter": {"pattern": pattern, "message_type": type_},
                "messages": [message(f) for f in frames if match(f)],
            }

        return run(ctx, go)

    @ws.command("session")
    def session_cmd(ctx: typer.Context) -> int:
        """Show the saved session and what the server says about it."""

        def go(c: DebugClient) -> dict[str, Any]:
            data = c.load_raw()
            if not data:
                raise ClientError(f"no saved session ({session_file()})")
            out = dict(data)
            try:
                out["status"] = c.http("GET", f"/api/session/{data['session_id']}/status")
            except ClientError as exc:
                out["status"] = {"error": str(exc)}
            return out

        return run(ctx, go)

    @ws.command("clear-session")
    def clear_session(ctx: typer.Context) -> int:
        """Forget the saved session."""
        f = session_file()
        existed = f.exists()
        f.unlink(missing_ok=True)
        return _emit({"status": "Session cleared" if existed else "No session to clear"}, ctx.obj["json"])

    @ws.command("list-flows")
    def list_flows(ctx: typer.Context) -> int:
        """The flows the server offers."""
        return run(ctx, lambda c: {"flows": c.http("GET", "/api/flows")["flow_choices"]})

    @ws.command("logs")
    def logs(
        ctx: typer.Context,
        n: Annotated[int, typer.Option("-n", "--lines", metavar="N", min=1, help="Lines to show")] = 50,
        file: Annotated[
            str | None,
            typer.Option(
                "--file", metavar="FILE", help="Log file (default: $LLMFLOW_HOME/.llmflow/logs/llmflow.log)"
            ),
        ] = None,
    ) -> int:
        """The server's newest log lines (same machine)."""

        def go(c: DebugClient) -> dict[str, Any]:
            if file:
                path = Path(file)
            else:
                home = Path(os.environ.get("LLMFLOW_HOME") or Path.cwd())
                path = home / ".llmflow" / "logs" / "llmflow.log"
            try:
                lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
            except OSError as exc:
                raise ClientError(
                    f"cannot read the log {path}: {exc.strerror or exc}; give --file or set LLMFLOW_HOME"
                ) from None
            return {"log_file": str(path), "lines": lines[-n:]}

        return run(ctx, go)
