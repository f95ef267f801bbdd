"""llmflow.web."""
