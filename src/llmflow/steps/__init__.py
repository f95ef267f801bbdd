"""llmflow.steps."""
