"""llmflow.store."""
