"""llmflow.server."""
