"""The research agent's MCP server: a few research notes, over stdio. Written with the
official MCP Python SDK (`pip install 'llmflow[mcp]'`); llmflow starts it for the step that
uses it (see `mcp_servers:` in flow.yaml)."""

from mcp.server.mcpserver import MCPServer

server = MCPServer("notes", log_level="WARNING")

NOTES = {
    "mcp": "The Model Context Protocol (MCP) is an open protocol that lets applications offer tools and data to LLM agents through one interface, over stdio or HTTP.",
    "durable execution": "Durable execution records every step of a program so that, after a crash, it resumes where it stopped instead of starting over.",
    "bm25": "BM25 ranks documents by how often the query words occur in them, discounted by how common the words are and by document length.",
}


@server.tool()
def list_topics() -> list[str]:
    """The topics there are notes about."""
    return sorted(NOTES)


@server.tool()
def lookup(topic: str) -> str:
    """The research note about a topic (see list_topics)."""
    return NOTES.get(topic.strip().lower(), f"No note about {topic!r}. Topics: {', '.join(sorted(NOTES))}")


if __name__ == "__main__":
    server.run()
