"""A small MCP server for the tests, written with the official SDK: stdio by default,
streamable HTTP with ``--http PORT``. Every call is appended to $MCP_CALLS_FILE (if set)."""

from __future__ import annotations

import os
import sys

from mcp.server.mcpserver import MCPServer

server = MCPServer("notes", log_level="WARNING")
NOTES = {
    "mcp": "The Model Context Protocol lets tools be shared between agents.",
    "llmflow": "llmflow runs flows of agents.",
}


def _log(line: str) -> None:
    path = os.environ.get("MCP_CALLS_FILE")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(line + "\n")


@server.tool()
def lookup(topic: str) -> str:
    """Look up a note by topic."""
    _log(f"lookup:{topic}")
    return NOTES.get(topic.lower(), f"no note about {topic}")


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    _log(f"add:{a}+{b}")
    return a + b


@server.tool()
def fail(reason: str) -> str:
    """Always fails."""
    raise ValueError(reason)


if __name__ == "__main__":
    print("notes MCP server starting", file=sys.stderr)
    if len(sys.argv) == 3 and sys.argv[1] == "--http":
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run()
