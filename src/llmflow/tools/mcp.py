"""MCP servers as tool sources, through the official ``mcp`` SDK (``llmflow[mcp]``).

A server is declared once, in the flow (``mcp_servers:``) or for the project
(``<config dir>/mcp_servers.yaml``), and referenced as ``name`` (all its tools) or
``name.tool``. A ``command`` server is started over stdio for the step attempt that uses it
and stopped after it (its stderr goes to ``<artifacts>/mcp/<name>.log``); a ``url`` server is
reached over streamable HTTP. ``command: python`` means the Python running llmflow.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from pathlib import Path
from typing import Any

from llmflow.errors import ProviderUnavailableError, StepError
from llmflow.model.spec import McpServerSpec
from llmflow.tools.base import CallContext, Tool, tool_error

INSTALL_LINE = "pip install 'llmflow[mcp]'"


def _import_mcp() -> Any:
    try:
        import mcp
    except ImportError:
        raise ProviderUnavailableError(
            f"MCP servers need the mcp package, which is not installed: {INSTALL_LINE}", hint=INSTALL_LINE
        ) from None
    return mcp


def stdio_parameters(spec: McpServerSpec, base_dir: Path) -> Any:
    from mcp.client.stdio import StdioServerParameters

    command = spec.command or ""
    if command in ("python", "python3"):
        command = sys.executable
    cwd = Path(spec.cwd).expanduser() if spec.cwd else base_dir
    if not cwd.is_absolute():
        cwd = base_dir / cwd
    return StdioServerParameters(
        command=command, args=list(spec.args), env=dict(spec.env) or None, cwd=str(cwd)
    )


def _leaf(exc: BaseException) -> BaseException:
    """The first real error inside (nested) exception groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


class McpConnection:
    """One open connection to one server, for the duration of a tool loop."""

    def __init__(self, name: str, spec: McpServerSpec, *, base_dir: Path, log_dir: Path) -> None:
        self.name = name
        self.spec = spec
        self.base_dir = base_dir
        self.log_path = log_dir / f"{name}.log"
        self._stack = contextlib.AsyncExitStack()
        self.client: Any = None

    def _where(self) -> str:
        return self.spec.url or " ".join([self.spec.command or "", *self.spec.args])

    def _stderr_tail(self) -> str:
        try:
            lines = self.log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
        except OSError:
            return ""
        return (" | " + " | ".join(lines[-3:])) if lines else ""

    async def __aenter__(self) -> McpConnection:
        mcp = _import_mcp()
        try:
            async with asyncio.timeout(self.spec.timeout):
                if self.spec.url:
                    from mcp.client.streamable_http import streamable_http_client

                    http: Any = None
                    if self.spec.headers:
                        import httpx2

                        http = await self._stack.enter_async_context(
                            httpx2.AsyncClient(headers=dict(self.spec.headers), timeout=self.spec.timeout)
                        )
                    transport = streamable_http_client(self.spec.url, http_client=http)
                else:
                    from mcp.client.stdio import stdio_client

                    self.log_path.parent.mkdir(parents=True, exist_ok=True)
                    errlog = self._stack.enter_context(self.log_path.open("a", encoding="utf-8"))
                    transport = stdio_client(stdio_parameters(self.spec, self.base_dir), errlog=errlog)
                self.client = await self._stack.enter_async_context(
                    mcp.Client(transport, read_timeout_seconds=None)
                )
        except TimeoutError:
            await self._close_quietly()
            raise StepError(
                f"MCP server {self.name!r} ({self._where()}) did not answer within {self.spec.timeout:g}s{self._stderr_tail()}",
                retryable=True,
                hint=f"check that it starts; its log: {self.log_path}",
            ) from None
        except (asyncio.CancelledError, StepError):
            await self._close_quietly()
            raise
        except Exception as exc:  # noqa: BLE001 - spawn errors, HTTP errors, protocol errors
            await self._close_quietly()
            leaf = _leaf(exc)
            raise StepError(
                f"could not connect to MCP server {self.name!r} ({self._where()}): {type(leaf).__name__}: {leaf}{self._stderr_tail()}",
                retryable=True,
                hint="check the command or URL under mcp_servers",
            ) from None
        return self

    async def _close_quietly(self) -> None:
        with contextlib.suppress(Exception):
            await self._stack.aclose()

    async def __aexit__(self, *exc: Any) -> None:
        await self._close_quietly()

    async def tools(self) -> list[Tool]:
        try:
            async with asyncio.timeout(self.spec.timeout):
                listed = await self.client.list_tools()
        except TimeoutError:
            raise StepError(
                f"MCP server {self.name!r} did not list its tools within {self.spec.timeout:g}s",
                retryable=True,
            ) from None
        out = []
        for t in listed.tools:
            schema = dict(
                getattr(t, "input_schema", None)
                or getattr(t, "inputSchema", None)
                or {"type": "object", "properties": {}}
            )
            schema.pop("title", None)
            out.append(
                Tool(
                    name=t.name,
                    description=t.description or f"{t.name} (MCP server {self.name})",
                    parameters=schema,
                    fn=self._caller(t.name),
                    source=f"mcp {self.name}",
                    runs_code=self.spec.command is not None,
                    meta={"server": self.name},
                )
            )
        return out

    def _caller(self, tool_name: str) -> Any:
        async def call(arguments: dict[str, Any], cc: CallContext) -> Any:
            result = await self.client.call_tool(tool_name, arguments)
            texts = [getattr(c, "text", None) for c in (result.content or [])]
            text = "\n".join(t for t in texts if t)
            if result.is_error:
                raise tool_error(
                    f"MCP tool {self.name}.{tool_name} failed: {text or 'no detail'}", retryable=True
                )
            structured = getattr(result, "structured_content", None)
            if structured is not None:
                return structured["result"] if set(structured) == {"result"} else structured
            return text

        return call
