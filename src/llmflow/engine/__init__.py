"""llmflow.engine."""
