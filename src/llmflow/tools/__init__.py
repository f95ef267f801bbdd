"""Tool calling: Python tools, built-ins, flows as tools, MCP servers, retrieval indexes."""
